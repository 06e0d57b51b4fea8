"""Check the built documentation site (run by ``make docs`` after Sphinx, and by
``tests/test_docs_site.py``): the pages a user looks for exist and hold what they should.

    python docs/check_site.py [docs/_build/html]

Exit status 0 when every check passes; otherwise each failure is printed, status 1.
"""

from __future__ import annotations

import html
import importlib
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

#: The modules of the API reference (kept equal to ``API_MODULES`` of docs/conf.py).
API_MODULES = (
    "spikelfp",
    "spikelfp.neurons",
    "spikelfp.lfp",
    "spikelfp.datasets",
    "spikelfp.hw_export",
    "spikelfp.training",
    "spikelfp.interop",
    "spikelfp.explain",
)

#: Neuron classes whose page must show their equations as typeset maths.
NEURONS = ("LIF", "IF", "CubaLIF", "ALIF", "RLIF", "LI")

_MATH = re.compile(r'<(span|div) class="math(?: [^"]*)?">(.*?)</\1>', re.S)


def text_of(page: Path) -> str:
    """The HTML of a page ('' when it does not exist)."""
    return page.read_text(encoding="utf-8") if page.is_file() else ""


def math_of(page_html: str) -> list[str]:
    """The TeX sources of the MathJax spans and blocks of a page (``\\(..\\)``, ``\\[..\\]``)."""
    return [html.unescape(m[1]).strip() for m in _MATH.findall(page_html)]


def signature_names(page_html: str, fullname: str) -> list[str]:
    """The parameter names in the signature of ``fullname`` on its page (``[]`` if absent)."""
    start = page_html.find(f'id="{fullname}"')
    if start < 0:
        return []
    end = page_html.find("</dt>", start)
    sig = page_html[start:end]
    return re.findall(r'<em class="sig-param"><span class="n"><span class="pre">(\w+)', sig)


def check(site: Path) -> list[str]:
    """Every failed check, as one line each (an empty list: the site is fine)."""
    problems: list[str] = []
    api = site / "api" / "generated"
    if not (site / "index.html").is_file():
        return [f"{site}/index.html is missing: build the site first (make docs)"]

    # the API page of lfp_step: signature with every parameter
    page = text_of(api / "spikelfp.lfp.lfp_step.html")
    want = ["model", "x", "target", "reward", "optimizer", "composite", "state"]
    got = signature_names(page, "spikelfp.lfp.lfp_step")
    if not page:
        problems.append("no API page for spikelfp.lfp.lfp_step")
    elif got[: len(want)] != want:
        problems.append(f"lfp_step's signature shows {got}, expected it to start with {want}")

    # the neuron classes: their equations rendered as maths (MathJax display blocks)
    for name in NEURONS:
        page = text_of(api / f"spikelfp.neurons.{name}.html")
        blocks = [m for m in math_of(page) if m.startswith("\\[")]
        if not page:
            problems.append(f"no API page for spikelfp.neurons.{name}")
        elif not blocks:
            problems.append(f"spikelfp.neurons.{name}: no displayed equations (.. math::)")
    if "mathjax" not in text_of(api / "spikelfp.neurons.LIF.html").lower():
        problems.append("the LIF page does not load MathJax")

    # every public name of every API module is on its module's page
    for module in API_MODULES:
        page = text_of(api / f"{module}.html")
        if not page:
            problems.append(f"no API page for module {module}")
            continue
        for name in importlib.import_module(module).__all__:
            if f'<span class="pre">{name}</span>' not in page:
                problems.append(f"{module}.{name} is not on the page of {module}")

    # the guides, the tutorials (one page per notebook) and the changelog
    for guide in sorted(DOCS.glob("*.md")):
        if guide.name != "README.md" and not (site / f"{guide.stem}.html").is_file():
            problems.append(f"no page for the guide docs/{guide.name}")
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if not (site / "tutorials" / f"{nb.stem}.html").is_file():
            problems.append(f"no page for the notebook notebooks/{nb.name}")
    if "Unreleased" not in text_of(site / "about" / "changelog.html"):
        problems.append("the changelog page is missing or empty")
    return problems


def main(argv: list[str]) -> int:
    site = Path(argv[1]) if len(argv) > 1 else DOCS / "_build" / "html"
    sys.path.insert(0, str(ROOT))
    problems = check(site)
    for line in problems:
        print(f"check_site: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
