"""Sphinx configuration of the spikelfp documentation site (``make docs``).

Sphinx reads the Markdown guides (myst-parser), the notebooks (myst-nb, not executed) and the
docstrings (autodoc + autosummary + napoleon for the Google-style ``Args:`` sections); the
docstrings' ``:math:`` roles and ``.. math::`` blocks are rendered by MathJax in the browser.
Every warning is an error (``make docs`` passes ``-W --keep-going``) and ``nitpicky`` is on,
so a broken cross-reference in a docstring or a guide fails the build.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS)]

import check_site  # noqa: E402  (docs/check_site.py)

import spikelfp  # noqa: E402  (after the path: the docs document this checkout)

project = "spikelfp"
author = "spikelfp developers"
copyright = "spikelfp developers, BSD-3-Clause"
release = version = spikelfp.__version__

extensions = [
    "myst_nb",  # Markdown (myst-parser) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = f"spikelfp {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# --- Markdown and notebooks ------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4  # `[text](#a-heading)` links in the guides
myst_dmath_double_inline = True
# The notebooks are committed without outputs (tests/test_notebooks_clean.py), and executing
# all of them would cost minutes per build: they are rendered as they are (their code and
# text); CI runs them with `pytest --nbmake notebooks`.
nb_execution_mode = "off"
suppress_warnings = ["mystnb.unknown_mime_type"]

# --- API reference ---------------------------------------------------------------------------
# The public modules; each page lists the module's ``__all__`` (see _write_api_pages).
API_MODULES = list(check_site.API_MODULES)

autosummary_generate = True
autosummary_imported_members = True
autosummary_ignore_module_all = False
autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False  # torch's nn.Module docstrings are not ours to render
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: no duplicate descriptions with autodoc
napoleon_use_rtype = False

python_display_short_literal_types = True
python_maximum_signature_line_length = 88

# A broken reference fails the build; names outside spikelfp (torch, numpy, the standard
# library) have no inventory offline and are let through.
nitpicky = True
_EXTERNAL = (
    r"(torch|numpy|np|nn|typing|typing_extensions|collections|collections\.abc|pathlib|os|io|"
    r"enum|abc|dataclasses|concurrent|multiprocessing|argparse|h5py|nir|tonic|snntorch|norse|"
    r"matplotlib|tqdm|yaml|datetime|contextlib|types|functools|subprocess|logging|sklearn)"
    r"(\..*)?"
)
_BUILTINS = (
    r"(int|float|str|bool|bytes|complex|object|list|dict|tuple|set|frozenset|type|None|"
    r"Ellipsis|callable|Callable|Iterable|Iterator|Sequence|Mapping|Any|Path|Tensor|"
    r"Exception|ValueError|TypeError|RuntimeError|KeyError|OSError|ImportError|"
    r"FileNotFoundError|NotImplementedError|IndexError|AttributeError|NamedTuple|Enum|"
    r"Optional|Union|Literal|Generator|ndarray|dtype|array_like|optional|PathLike|"
    r"StrPath|ModuleType|MappingProxyType|slice|range|memoryview|bytearray)"
)
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (r"py:.*", _BUILTINS),
]


def _home(obj: object, module: str) -> str:
    """The API module that documents ``obj``: the longest of API_MODULES that prefixes the
    module where ``obj`` is defined (``module`` itself for data and modules)."""
    defined = getattr(obj, "__module__", None)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not isinstance(defined, str):
        return module
    homes = [m for m in API_MODULES if defined == m or defined.startswith(m + ".")]
    return max(homes, key=len) if homes else module


def _api() -> dict[str, dict[str, list]]:
    """Each API module's ``__all__`` sorted into what its page documents (classes, exceptions,
    functions, data) and what it only links to: names documented on another module's page
    (re-exports, so that each object is described once) and submodules."""
    api: dict[str, dict[str, list]] = {}
    for module in API_MODULES:
        mod = importlib.import_module(module)
        page: dict[str, list] = {
            k: [] for k in ("classes", "exceptions", "functions", "data", "links")
        }
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj):
                page["links"].append((name, "mod", obj.__name__))
                continue
            home = _home(obj, module)
            if home != module and name in getattr(importlib.import_module(home), "__all__", ()):
                role = "class" if inspect.isclass(obj) else "func"
                page["links"].append((name, role, f"{home}.{name}"))
            elif inspect.isclass(obj) and issubclass(obj, BaseException):
                page["exceptions"].append(name)
            elif inspect.isclass(obj):
                page["classes"].append(name)
            elif callable(obj):
                page["functions"].append(name)
            else:
                page["data"].append(name)
        api[module] = page
    return api


def _module_page(module: str, page: dict[str, list]) -> str:
    """The reST of one module's API page: its docstring, a table per kind of member (one page
    each, generated by autosummary) and links to the members documented elsewhere."""
    lines = [module, "=" * len(module), "", f".. automodule:: {module}", ""]
    for title, key in (
        ("Classes", "classes"),
        ("Functions", "functions"),
        ("Exceptions", "exceptions"),
        ("Data", "data"),
    ):
        if page[key]:
            lines += [title, "-" * len(title), "", ".. autosummary::", "   :toctree:"]
            lines += ["   :nosignatures:", ""] + [f"   {name}" for name in page[key]] + [""]
    if page["links"]:
        lines += ["Documented elsewhere", "-" * 20, "", f"Also importable from ``{module}``:", ""]
        lines += [f"* ``{name}``: :{role}:`{target}`" for name, role, target in page["links"]]
    return "\n".join(lines) + "\n"


def _write_api_pages() -> None:
    """Write ``docs/api/generated/<module>.rst`` for each API module (autosummary then writes
    one page per member, from docs/_templates/autosummary/). Written here rather than by
    autosummary's module template: ``spikelfp.explain`` is both a module and, as an attribute
    of ``spikelfp``, a function, and autosummary would document the function."""
    out = DOCS / "api" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    for module, page in _api().items():
        target = out / f"{module}.rst"
        text = _module_page(module, page)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


_write_api_pages()


def _data_doc(module: str, name: str) -> list[str] | None:
    """The ``#:`` comment of a public constant, read where it is defined (a submodule of
    ``module``): autodoc would otherwise show the docstring of its type (``dict``...)."""
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    obj = getattr(importlib.import_module(module), name)
    for modname in sorted(sys.modules):
        if modname != module and not modname.startswith(module + "."):
            continue
        if getattr(sys.modules[modname], name, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except PycodeError:
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return None


_ORIGINAL: dict[str, list[str]] = {}


def _before_napoleon(app, what, name, obj, options, lines) -> None:
    """Attribute and property docstrings here are prose whose first line may hold a colon
    ("Largest weight magnitude: ..."); napoleon would read what precedes it as a type (the
    types come from the annotations). Keep the docstring as written, for after napoleon."""
    if what in ("attribute", "property"):
        _ORIGINAL[name] = list(lines)


_MULTI_FIELD = re.compile(r"^(\s*):(ivar|vartype|param|type) ([\w*]+(?:, [\w*]+)+):(.*)$")


def _process_docstring(app, what, name, obj, options, lines) -> None:
    """After napoleon: the constants' own comments; ``a, b: text`` entries of "Attributes:"
    sections split into one field per name (napoleon does this for "Args:" only)."""
    module, _, attr = name.rpartition(".")
    original = _ORIGINAL.pop(name, None)
    if original is not None and any(line.startswith(":type: ") for line in lines):
        lines[:] = original  # napoleon took the prose before a colon for a type
        return
    if what == "data" and module in API_MODULES:
        lines[:] = _data_doc(module, attr) or []
        return
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MULTI_FIELD.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, kind, names, text = match.groups()
        body = [text]
        i += 1
        while i < len(lines) and lines[i].startswith(indent + " ") and lines[i].strip():
            body.append(lines[i][len(indent) :])
            i += 1
        for one in names.split(", "):
            out.append(f"{indent}:{kind} {one}:{body[0]}")
            out.extend(indent + rest for rest in body[1:])
    lines[:] = out


def _process_signature(app, what, name, obj, options, signature, return_annotation):
    """Dataclass fields with a ``default_factory`` show ``<factory>``, which is not Python:
    Sphinx would then split the signature on every comma. Show ``list()``, ``dict()``..."""
    if not signature or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return None
    for f in dataclasses.fields(obj):
        if f.default_factory is not dataclasses.MISSING:
            made = getattr(f.default_factory, "__name__", "")
            shown = f"{made}()" if made.isidentifier() else "..."
            signature = signature.replace("<factory>", shown, 1)
    return signature, return_annotation


def _missing_reference(app, env, node, contnode):
    """A reference to an existing spikelfp object that is not part of the public API (a
    private base class in a signature, a submodule) renders as plain code; a reference to a
    name that does not exist stays a warning, hence an error."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    candidates = [target]
    modname, classname = node.get("py:module"), node.get("py:class")
    if modname and not target.startswith("spikelfp"):
        # relative to the page's module, its class, or (as written in the docstring) to the
        # submodule that defines the object
        candidates.append(f"{modname}.{target}")
        if classname:
            candidates.append(f"{modname}.{classname}.{target}")
        candidates += [f"{sub}.{target}" for sub in sys.modules if sub.startswith(modname + ".")]
    for candidate in candidates:
        if candidate.startswith("spikelfp.") and _resolves(candidate):
            return contnode
    return None


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


# --- Notebooks: copied into docs/tutorials/ (ignored by git) ---------------------------------
def _copy_notebooks() -> None:
    """Copy ``notebooks/*.ipynb`` to ``docs/tutorials/`` (a glob: new notebooks appear without
    editing anything), with their links to the guides (``../docs/X.md``) made site-relative."""
    src, dst = ROOT / "notebooks", DOCS / "tutorials"
    wanted = {nb.name: nb for nb in sorted(src.glob("*.ipynb"))}
    for old in dst.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for name, nb in wanted.items():
        data = json.loads(nb.read_text(encoding="utf-8"))
        for cell in data.get("cells", []):
            if cell.get("cell_type") == "markdown":
                text = "".join(cell["source"])
                cell["source"] = re.sub(r"\]\(\.\./docs/", "](../", text)
        text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
        target = dst / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


_copy_notebooks()


def _rewrite_guide_links(app, docname: str, source: list[str]) -> None:
    """The guides link to the notebooks as ``../notebooks/X.ipynb`` (right on GitHub); on the
    site the notebooks are ``tutorials/X.ipynb``."""
    if "/" not in docname and docname != "index":
        source[0] = re.sub(r"\]\(\.\./notebooks/([^)]+\.ipynb)", r"](tutorials/\1", source[0])


def setup(app):
    app.connect("source-read", _rewrite_guide_links)
    app.connect("autodoc-process-docstring", _before_napoleon, priority=400)
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("missing-reference", _missing_reference)
