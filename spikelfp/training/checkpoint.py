"""Checkpoints: written atomically, loaded safely (``weights_only``), validated on load.

A checkpoint is a dict of plain Python values and tensors:

``format``, ``version``: ``"spikelfp-checkpoint"``, :data:`FORMAT_VERSION`
``config``: the resolved :class:`~spikelfp.training.config.TrainConfig` as a dict
``model_spec``: the :class:`~spikelfp.training.models.ModelSpec` as a dict
``model``, ``optimizer``, ``scheduler``: state dicts
``epoch``: number of completed epochs
``history``: one metrics dict per completed epoch
``rng``: torch, numpy and python RNG states after the last completed epoch
``data_order``: how the training order is drawn, the seed and the next epoch's index
``classes``: class names
``pruning`` (``--prune-to`` runs only): ``{"masks": {weight name: bool keep-mask}}``
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "save_atomic",
    "load_checkpoint",
    "resolve_checkpoint",
    "rng_state",
    "set_rng_state",
]

FORMAT = "spikelfp-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
_REQUIRED = ("config", "model_spec", "model", "epoch", "history")


class CheckpointError(ValueError):
    """The file is missing, unreadable or not a spikelfp checkpoint."""


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``.

    A reader (or a resumed run) never sees a half-written file, even if the process is killed
    while saving.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, durable=True) as tmp:
        torch.save(obj, tmp)
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, fsync=False) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def output_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why files cannot be written into ``folder`` (created when missing), or ``None``.

    The folder, or its nearest existing parent, must be a folder that a file can be created
    in (tried with a temporary file, removed at once; nothing else is created).

    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "a-file"
    >>> _ = file.write_text("")
    >>> output_problem(file / "run").endswith("a-file is a file, not a folder")
    True
    """
    probe = Path(folder).expanduser().absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable (permission denied or a read-only file system)"
    try:  # also what access() does not see (root on /proc, full or odd file systems)
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return f"{probe} is not writable ({err.strerror or type(err).__name__})"
    return None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run folder (its ``checkpoint.pt``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.is_file():
            raise CheckpointError(f"{Path(path)} is a folder without a {CHECKPOINT_NAME}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    return p


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a checkpoint (a file or a run folder); raises :class:`CheckpointError`."""
    p = resolve_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not a usable checkpoint"
        raise CheckpointError(
            f"{p} is not a readable spikelfp checkpoint ({_load_reason(err)})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a spikelfp checkpoint")
    if int(ckpt.get("version", -1)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} was written by a newer spikelfp (format {ckpt.get('version')}); upgrade spikelfp"
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{p} is an incomplete checkpoint (missing {', '.join(missing)})")
    ckpt["path"] = str(p)
    return ckpt


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def error_text(err: BaseException, limit: int = 200) -> str:
    """``err``'s message as one short line: no ANSI escape codes, whitespace collapsed, cut
    after its first sentence, or at a word before ``limit`` characters (with ``...``).

    >>> error_text(RuntimeError("\x1b[1mBad\x1b[0m zip archive. This is an internal error."))
    'Bad zip archive'
    >>> error_text(EOFError())
    'EOFError'
    """
    text = " ".join(_ANSI.sub("", str(err)).split())
    if not text:
        return type(err).__name__
    end = re.search(r"[.!?](\s|$)", text)
    if end is not None:
        text = text[: end.start()]
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit // 2 else limit].rstrip(" ,;:") + "..."
    return text


def _load_reason(err: BaseException) -> str:
    """Why ``torch.load`` failed, in words a user can act on."""
    text = " ".join(_ANSI.sub("", str(err)).split())
    if "WeightsUnpickler error:" in text:  # a pickled Python object that is not plain data
        detail = error_text(RuntimeError(text.split("WeightsUnpickler error:", 1)[1]))
        return f"it holds Python objects that a safe (weights-only) load refuses: {detail}"
    if isinstance(err, EOFError) or "zip archive" in text or "central directory" in text:
        return f"the file is truncated or corrupted: {error_text(err)}"
    return error_text(err)


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as plain values and tensors (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the legacy global RNG
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    legacy = (
        n["kind"],
        n["keys"].numpy().astype(np.uint32),
        n["pos"],
        n["has_gauss"],
        n["cached_gaussian"],
    )
    np.random.set_state(legacy)  # noqa: NPY002 - the legacy global RNG
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
