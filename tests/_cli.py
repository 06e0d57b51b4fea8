"""Helpers shared by the command-line tests."""

from __future__ import annotations

from spikelfp.cli import main

#: the smallest training run the command-line tests use (seconds on the built-in data)
TINY = ["--time-bins", "4", "--hidden", "16", "--epochs", "1", "--max-train-samples", "40",
        "--no-progress"]  # fmt: skip


def one_line_error(capsys, argv) -> str:
    """Run ``spikelfp ARGV``; assert it failed with exit 2 and one line ``spikelfp ...: error:
    ...`` on stderr, no traceback; return that line."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("spikelfp") and "error:" in lines[0], err
    assert "Traceback" not in err
    return lines[0]
