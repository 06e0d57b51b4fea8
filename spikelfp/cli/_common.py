"""What the commands share: the one-line-error parser, shared flags, output checks, printing.

Bad input raises :class:`UsageError` (or a library error such as
:class:`~spikelfp.training.ConfigError`); :func:`spikelfp.cli.main` prints it as one
``spikelfp COMMAND: error: ...`` line and exits with :data:`EXIT_USAGE`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

#: Exit code of bad input (argparse's).
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message}")


def echo(text: str = "") -> None:
    """Print a line of the command's output, flushed (progress shows while it runs)."""
    print(text, flush=True)


def bool_flag(parser, name: str, help_text: str) -> None:
    """Add ``--NAME``/``--no-NAME``; its default is SUPPRESSed, so only a given flag overrides
    the config."""
    parser.add_argument(
        f"--{name}",
        dest=name.replace("-", "_"),
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=help_text,
    )


def add_memory_option(p: argparse.ArgumentParser) -> None:
    """Add ``--reuse-memory`` (``train`` and ``demo``)."""
    p.add_argument(
        "--reuse-memory",
        choices=("peak", "all", "off"),
        default="peak",
        help="reuse of the LFP rules' freed large tensors (spikelfp.reuse_freed_memory): "
        "'peak' (default) keeps them only within a step's memory peak; 'all' keeps every one "
        "(fastest for conv nets and long T, more memory); 'off' gives them back at once",
    )


def apply_memory_setting(args: argparse.Namespace) -> None:
    """Apply ``--reuse-memory`` (:func:`spikelfp.reuse_freed_memory`) unless it is the default."""
    mode = getattr(args, "reuse_memory", "peak")
    if mode != "peak":
        from ..allocator import reuse_freed_memory

        reuse_freed_memory(mode)


def add_data_options(p: argparse.ArgumentParser, accuracy: bool = False) -> None:
    """Add the ``data`` flags of ``eval`` and ``export`` (``accuracy``: export's wording and
    its ``--split``)."""
    from ..training.config import DATASETS

    what = "to measure accuracy before/after export" if accuracy else "(default: the run's)"
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=None, help=f"dataset {what}")
    g.add_argument(
        "--data-dir", default=None, metavar="DIR", help="dataset folder (default: the run's)"
    )
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="HDF5 frame cache folder")
    if accuracy:
        g.add_argument(
            "--split",
            choices=("train", "val", "test"),
            default="test",
            help="split for the accuracy (test)",
        )
    g.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    g.add_argument(
        "--max-samples",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on a stratified subset of N recordings",
    )


def eval_config(ckpt: dict[str, Any], args: argparse.Namespace):
    """The run's stored config with the data flags (``--dataset``, ``--data-dir``,
    ``--cache-dir``, ``--batch-size``, ``--max-samples``) applied, on whole splits."""
    from ..training.config import TrainConfig

    cfg = TrainConfig.from_stored(ckpt["config"])
    changes: dict[str, Any] = {"max_train_samples": None, "max_eval_samples": None}
    if args.dataset is not None and args.dataset != cfg.dataset:
        changes["dataset"] = args.dataset
        changes["data_dir"] = None
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.cache_dir is not None:
        changes["cache_dir"] = args.cache_dir
    if getattr(args, "batch_size", None) is not None:
        changes["batch_size"] = args.batch_size
    if getattr(args, "max_samples", None) is not None:
        changes["max_eval_samples"] = args.max_samples
        changes["max_train_samples"] = args.max_samples
    return cfg.replace(**changes)


def format_eval(r: dict[str, Any]) -> str:
    """An evaluation result as text: accuracy and loss, per-class accuracy, spike rates and the
    confusion matrix."""
    lines = [
        f"{r['dataset']} {r['split']}: accuracy {r['accuracy']:.4f} "
        f"({round(r['accuracy'] * r['n_samples'])}/{r['n_samples']}), "
        f"loss {r['loss']:.4f}"
    ]
    lines.append(
        "per class: "
        + "  ".join(
            f"{c}: {'-' if a is None else f'{a:.3f}'}" for c, a in r["per_class_accuracy"].items()
        )
    )
    lines.append(
        "spike rates (spikes per neuron and step): "
        + "  ".join(f"{k} {v:.4f}" for k, v in r["spike_rates"].items())
    )
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    classes = r["classes"]
    width = max(
        4,
        max(len(str(v)) for row in r["confusion_matrix"] for v in row) + 1,
        max(len(c) for c in classes) + 1,
    )
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for c, row in zip(classes, r["confusion_matrix"], strict=True):
        lines.append(f"{c:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def check_output(path: str, flag: str, command: str, folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written (``folder``: a folder to
    create or fill, else a file)."""
    from ..training.checkpoint import output_problem

    p = Path(path).expanduser()
    if not folder and p.is_dir():
        problem = f"{p} is a folder; give a file name"
    else:
        problem = output_problem(p if folder else p.parent)
    if problem is not None:
        raise UsageError(f"spikelfp {command}: cannot write {flag} {path}: {problem}")


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically; a failed write is one :class:`OSError` line."""
    from ..training.checkpoint import write_text_atomic

    try:
        write_text_atomic(Path(path), json.dumps(obj, indent=2) + "\n")
    except OSError as err:  # checked up front, but a disk can fill up meanwhile
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from None


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types that are bad input: one line and exit code 2."""
    from ..training.checkpoint import CheckpointError
    from ..training.config import ConfigError
    from ..training.data import DataError
    from ..training.trainer import RunExistsError

    errors: list[type[BaseException]] = [
        UsageError,
        ConfigError,
        DataError,
        CheckpointError,
        RunExistsError,
    ]
    try:
        from ..datasets import errors as ds_errors

        errors += [
            ds_errors.DatasetNotFoundError,
            ds_errors.DatasetLayoutError,
            ds_errors.CorruptRecordingError,
        ]
    except ImportError:
        pass
    try:
        from ..hw_export.errors import ExportError

        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)


_WORKER_ERROR = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\n")


_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][\w.]*: ")


def worker_error_message(text: str) -> str:
    """The original message of an exception that a DataLoader worker raised (torch re-raises
    it in the main process with the worker's whole traceback as its message); other messages
    unchanged.

    >>> worker_error_message(
    ...     "Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback (most "
    ...     "recent call last):\\n  File \\"x.py\\", line 1, in f\\n    g()\\n"
    ...     "spikelfp.datasets.errors.CorruptRecordingError: 3.bin is bad\\n"
    ... )
    '3.bin is bad'
    """
    if not _WORKER_ERROR.match(text):
        return text
    lines = text.rstrip("\n").splitlines()
    # the traceback's frames are indented; the exception (type: message) follows the last one
    last_frame = max((i for i, line in enumerate(lines) if line.startswith(" ")), default=0)
    tail = "\n".join(lines[last_frame + 1 :]).strip()
    return _EXCEPTION_PREFIX.sub("", tail, count=1) or lines[-1]


def silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again
    (what the Python docs advise for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass
