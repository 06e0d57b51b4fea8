"""The CLI is the top layer: ``spikelfp.training`` holds no command-line code and never imports
``spikelfp.cli``; ``spikelfp/cli/`` has one module per command of the parser."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import spikelfp
from spikelfp.cli import COMMANDS, UsageError, build_parser, main

PACKAGE = Path(spikelfp.__file__).parent
FORBIDDEN = ("argparse", "spikelfp.cli")


def _imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``source``, function-level ones included;
    relative imports are resolved against ``package`` (the importing module's package)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _imports(path: Path) -> list[tuple[int, str]]:
    package = ".".join(("spikelfp", *path.parent.relative_to(PACKAGE).parts))
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _hits(path: Path) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for line, name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    ]


def test_the_import_scan_resolves_relative_imports():
    """The checker itself: relative and function-level imports are seen (so the tests below
    can fail)."""
    source = "import os\ndef f():\n    from ...cli import main\n    import argparse\n"
    names = [name for _, name in _imports_in(source, "spikelfp.training.recipes")]
    assert names == ["os", "spikelfp.cli", "spikelfp.cli.main", "argparse"]
    names = [name for _, name in _imports_in("from .config import X", "spikelfp.training")]
    assert names == ["spikelfp.training.config", "spikelfp.training.config.X"]


def test_training_holds_no_command_line_code():
    files = sorted((PACKAGE / "training").rglob("*.py"))
    assert len(files) > 10, files
    hits = [hit for path in files for hit in _hits(path)]
    assert not hits, "spikelfp.training must not import argparse or spikelfp.cli:\n" + "\n".join(
        hits
    )


def test_the_library_below_the_cli_never_imports_it():
    files = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts[:1]]
    hits = [
        f"{p.relative_to(PACKAGE.parent)}:{line}: {name}"
        for p in files
        for line, name in _imports(p)
        if (name == "spikelfp.cli" or name.startswith("spikelfp.cli."))
        and p.name != "__main__.py"  # `python -m spikelfp` runs the CLI
    ]
    assert not hits, "\n".join(hits)


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_one_module_per_command():
    commands = _subcommands(build_parser())
    assert commands == ["train", "eval", "export", "info", "demo", "explain"]
    assert list(COMMANDS) == commands
    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if not p.stem.startswith("_"))
    assert modules == sorted(commands)
    for name, module in COMMANDS.items():
        assert module.__name__ == f"spikelfp.cli.{name}"
        assert callable(module.add_parser) and callable(module.run)


def test_each_module_adds_exactly_its_command():
    for name, module in COMMANDS.items():
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        module.add_parser(sub)
        assert list(sub.choices) == [name]


def test_parser_errors_are_one_line_usage_errors(capsys):
    with pytest.raises(UsageError, match=r"^spikelfp: argument COMMAND: invalid choice: 'nope'"):
        build_parser().parse_args(["nope"])
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "spikelfp info: error: give a CHECKPOINT (checkpoint.pt or its run folder), or --models\n"
    )
