"""The ``spikelfp`` parser, built from each command module's ``add_parser``, and :func:`main`,
which runs the command and turns expected errors into one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from . import demo, explain, export, info, train
from . import eval as eval_
from ._common import (
    EXIT_USAGE,
    _Parser,
    expected_errors,
    silence_stdout,
    worker_error_message,
)

#: The commands, in the order ``spikelfp --help`` lists them: name -> module with
#: ``add_parser(sub)`` and ``run(args, argv) -> exit code``.
COMMANDS: dict[str, ModuleType] = {
    "train": train,
    "eval": eval_,
    "export": export,
    "info": info,
    "demo": demo,
    "explain": explain,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``spikelfp`` parser: ``--version`` and one sub-parser per command of
    :data:`COMMANDS`. Its ``error`` raises :class:`UsageError` (one line) instead of exiting.

    Returns:
        The parser; ``parse_args(argv).command`` names the command (``None``: none given).
    """
    from .. import __version__

    parser = _Parser(
        prog="spikelfp",
        description="Train spiking neural networks with Layer-wise Feedback Propagation "
        "(no surrogate gradients), evaluate them and export them to hardware.",
    )
    parser.add_argument("--version", action="version", version=f"spikelfp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spikelfp`` command (also ``python -m spikelfp``).

    Args:
        argv: the arguments after ``spikelfp`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for bad input (one ``spikelfp COMMAND: error: ...``
        line on stderr), 1 for a runtime failure (divergence, a failed write, a dead peer),
        130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "spikelfp"  # "spikelfp COMMAND" once the command is known: the errors' prefix
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        prog = f"spikelfp {args.command}"
        rest = argv[argv.index(args.command) + 1 :]
        return COMMANDS[args.command].run(args, rest)
    except KeyboardInterrupt:
        print("spikelfp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `spikelfp info RUN | head -3`: the reader left, stop quietly
        silence_stdout()
        return 1
    except Exception as err:  # noqa: BLE001 - sorted below
        text = " ".join(worker_error_message(str(err)).split())
        if type(err).__name__ == "DistributedError":  # a peer died: not bad input
            print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
            return 1
        from ..training.trainer import TrainingDivergedError

        if isinstance(err, TrainingDivergedError):  # a runtime failure, not bad input
            print(f"{prog}: error: {text}", file=sys.stderr, flush=True)
            return 1
        if isinstance(err, expected_errors()) or isinstance(err, ImportError):
            msg = text or type(err).__name__
            if not msg.startswith("spikelfp"):
                msg = f"{prog}: error: {msg}"
            elif ": error:" not in msg:
                head, _, rest = msg.partition(": ")
                msg = f"{head}: error: {rest}"
            print(msg, file=sys.stderr, flush=True)
            return EXIT_USAGE
        if isinstance(err, OSError):  # a write failed (disk full, permissions): runtime
            print(f"{prog}: error: {text or type(err).__name__}", file=sys.stderr, flush=True)
            return 1
        raise
