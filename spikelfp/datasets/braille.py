r"""Tactile Braille letters: an artificial fingertip (12 taxels) sliding over embossed letters.

Müller-Cleve et al., "Braille letter reading: a benchmark for spatio-temporal pattern
recognition on neuromorphic hardware", Front. Neurosci. 16:951164 (2022); 27 classes
(``Space``, ``A``–``Z``). :class:`Braille` reads

* the npz layout (``<root>/train.npz``, optional ``<root>/test.npz``) with the keys
  ``taxel (N, T, 12)`` (NaN past each recording's end), ``length (N,)``, ``label (N,)``,
  ``letter (N,)``, ``repetition (N,)``, ``letters (27,)`` — read with
  ``np.load(allow_pickle=False)``;
* the original pickle release (the SpyTorch tutorial's ``*.pkl`` / ``*.pkl.gz``: a list of
  ``{"taxel_data": (T, 12), "letter": str}`` records, or a dict of such columns), through
  :func:`load_restricted_pickle`, which builds numpy arrays and plain values only and refuses
  anything else (a pickle can run code; ``pickle.load`` on a downloaded file is never used).

Each sample is one repetition of one letter; the signal is encoded by a sensor encoder
(:mod:`spikelfp.datasets.sensor_encoders`, default: sigma-delta events with ``θ = 1``, ON and
OFF channels) into ``(T, C)`` float32 frames.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import CorruptRecordingError, DatasetLayoutError, DatasetNotFoundError
from .sensor_encoders import SensorPipeline, SigmaDelta, as_pipeline
from .splits import SplitIndices, validation_split

__all__ = [
    "BRAILLE_LETTERS",
    "NIR_LETTERS",
    "TAXELS",
    "Braille",
    "UnsafePickleError",
    "load_restricted_pickle",
    "parse_letters",
]

#: All classes, in the dataset's label order.
BRAILLE_LETTERS = ("Space", *(chr(c) for c in range(ord("A"), ord("Z") + 1)))
#: The 7 letters of the NIR paper's recurrent-SNN benchmark.
NIR_LETTERS = ("Space", "A", "E", "I", "O", "U", "Y")
#: Taxels (channels) of the fingertip.
TAXELS = 12
_KEYS = ("taxel", "length", "label", "letter", "repetition", "letters")


class UnsafePickleError(ValueError):
    """A pickle file asks for something other than numpy arrays and plain values (nothing of
    it was run)."""


# numpy arrays and scalars (numpy 1.x and 2.x module names), and the latin-1 byte strings
# protocol-2 array pickles are made of; nothing else is ever imported.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self.where}: refused to load {module}.{name}; only numpy arrays and plain "
            "values (lists, dicts, strings, numbers) are read from a pickle file. Convert the "
            "file yourself from a source you trust (e.g. to the npz layout of "
            "spikelfp.datasets.Braille)."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.where}: refused a persistent id in the pickle.")


def load_restricted_pickle(path: str | os.PathLike[str]) -> Any:
    """Read a pickle (``.gz`` compressed or not) that holds only numpy arrays and plain values.

    Args:
        path: the file.

    Returns:
        The unpickled object (dicts, lists, tuples, strings, numbers, numpy arrays).

    Raises:
        UnsafePickleError: the file needs any other class or function (it could run code);
            nothing of it is executed.
        CorruptRecordingError: the file is not a readable pickle.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "ok.pkl"
    >>> _ = f.write_bytes(pickle.dumps({"a": np.arange(3), "b": [1, "x"]}))
    >>> load_restricted_pickle(f)["a"].tolist()
    [0, 1, 2]
    >>> _ = f.write_bytes(pickle.dumps(Path("x")))
    >>> load_restricted_pickle(f)
    Traceback (most recent call last):
    ...
    spikelfp.datasets.braille.UnsafePickleError: ...ok.pkl: refused to load pathlib...
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise CorruptRecordingError(f"{path}: not a readable gzip file ({err}).") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # noqa: BLE001 (any decoding failure of untrusted bytes)
        raise CorruptRecordingError(
            f"{path}: not a readable pickle of arrays ({type(err).__name__}: {err})."
        ) from None


def parse_letters(letters: str | Sequence[str] | None) -> tuple[str, ...]:
    """The letters to keep, in the dataset's label order.

    Args:
        letters: ``"all"`` / ``None`` (all 27), a comma-separated string
            (``"Space,A,E,I,O,U,Y"``) or a sequence of names; case-insensitive.

    Returns:
        The canonical names, in the order of :data:`BRAILLE_LETTERS`, without repeats.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or an empty list.

    >>> parse_letters("y, space, a")
    ('Space', 'A', 'Y')
    >>> parse_letters("A,Ä")
    Traceback (most recent call last):
    ...
    ValueError: unknown Braille letter(s) 'Ä'; valid: Space, A, B, C, D, E, F, G, H, I, J, K, \
L, M, N, O, P, Q, R, S, T, U, V, W, X, Y, Z (or 'all').
    """
    if letters is None or (isinstance(letters, str) and letters.strip().lower() == "all"):
        return BRAILLE_LETTERS
    names = letters.split(",") if isinstance(letters, str) else list(letters)
    names = [str(n).strip() for n in names if str(n).strip()]
    canonical = {n.lower(): n for n in BRAILLE_LETTERS}
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        raise ValueError(
            f"unknown Braille letter(s) {', '.join(repr(n) for n in unknown)}; valid: "
            f"{', '.join(BRAILLE_LETTERS)} (or 'all')."
        )
    if not names:
        raise ValueError(
            f"no Braille letters given; choose from {', '.join(BRAILLE_LETTERS)} (or 'all')."
        )
    wanted = {canonical[n.lower()] for n in names}
    return tuple(n for n in BRAILLE_LETTERS if n in wanted)


def _check_taxels(taxel: np.ndarray, length: np.ndarray, where: str) -> None:
    """Shape ``(N, T, 12)``, lengths in ``[1, T]``, finite values inside each valid length."""
    if taxel.ndim != 3 or taxel.shape[2] != TAXELS:
        raise CorruptRecordingError(
            f"{where}: taxel data must be (samples, steps, {TAXELS}), got {tuple(taxel.shape)}."
        )
    if length.shape != (taxel.shape[0],):
        raise CorruptRecordingError(
            f"{where}: 'length' has shape {tuple(length.shape)}, expected ({taxel.shape[0]},)."
        )
    bad = np.flatnonzero((length < 1) | (length > taxel.shape[1]))
    if bad.size:
        i = int(bad[0])
        raise CorruptRecordingError(
            f"{where}: sample {i} has length {int(length[i])}, outside 1..{taxel.shape[1]}."
        )
    valid = np.arange(taxel.shape[1])[None, :] < length[:, None]
    finite = np.isfinite(taxel).all(axis=2)
    bad = np.flatnonzero((valid & ~finite).any(axis=1))
    if bad.size:
        i = int(bad[0])
        t = int(np.flatnonzero(valid[i] & ~finite[i])[0])
        raise CorruptRecordingError(
            f"{where}: sample {i} has a NaN or infinite taxel value at step {t}, inside its "
            f"valid length {int(length[i])}; fix or drop that recording."
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise DatasetLayoutError(
                    f"{path}: lacks the key(s) {', '.join(missing)}; a Braille npz holds "
                    f"{', '.join(_KEYS)}."
                )
            data = {k: f[k] for k in _KEYS}
    except ValueError as err:
        if isinstance(err, DatasetLayoutError):
            raise
        raise CorruptRecordingError(
            f"{path}: cannot be read without unpickling ({err}); store plain arrays "
            "(strings as unicode arrays, not objects)."
        ) from None
    except (OSError, EOFError) as err:
        raise CorruptRecordingError(f"{path}: not a readable npz file ({err}).") from None
    data["taxel"] = np.asarray(data["taxel"], dtype=np.float32)
    for k in ("length", "label", "repetition"):
        data[k] = np.asarray(data[k]).astype(np.int64)
    data["letter"] = np.asarray(data["letter"]).astype(str)
    data["letters"] = np.asarray(data["letters"]).astype(str)
    return data


def _records(obj: Any, where: str) -> list[tuple[np.ndarray, str]]:
    """``(taxel (T, C), letter)`` records from the pickle's list-of-dicts or dict-of-columns."""
    if isinstance(obj, dict) and "taxel_data" in obj and "letter" in obj:
        taxels, letters = list(obj["taxel_data"]), list(obj["letter"])
        if len(taxels) != len(letters):
            raise DatasetLayoutError(
                f"{where}: {len(taxels)} taxel recordings but {len(letters)} letters."
            )
        return list(zip(taxels, letters, strict=True))
    if isinstance(obj, (list, tuple)) and all(
        isinstance(r, dict) and "taxel_data" in r and "letter" in r for r in obj
    ):
        return [(r["taxel_data"], r["letter"]) for r in obj]
    raise DatasetLayoutError(
        f"{where}: expected a list of {{'taxel_data', 'letter'}} records or a dict of those "
        f"columns (the Braille release's pickle), got {type(obj).__name__}."
    )


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    where = str(path)
    records = _records(load_restricted_pickle(path), where)
    if not records:
        raise DatasetLayoutError(f"{where}: holds no recordings.")
    arrays, names = [], []
    for i, (taxel, letter) in enumerate(records):
        arr = np.asarray(taxel)
        if arr.dtype == object or arr.ndim != 2 or arr.shape[1] != TAXELS or len(arr) < 1:
            raise CorruptRecordingError(
                f"{where}: sample {i} has taxel data of shape {tuple(arr.shape)}, expected "
                f"(steps, {TAXELS})."
            )
        arrays.append(arr.astype(np.float32))
        name = str(letter).strip()
        canonical = {n.lower(): n for n in BRAILLE_LETTERS}
        if name.lower() not in canonical:
            raise DatasetLayoutError(
                f"{where}: sample {i} has the unknown letter {name!r}; valid: "
                f"{', '.join(BRAILLE_LETTERS)}."
            )
        names.append(canonical[name.lower()])
    length = np.array([len(a) for a in arrays], dtype=np.int64)
    taxel = np.full((len(arrays), int(length.max()), TAXELS), np.nan, dtype=np.float32)
    for i, a in enumerate(arrays):
        taxel[i, : len(a)] = a
    letter = np.array(names)
    repetition = np.zeros(len(names), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        repetition[i] = seen.get(n, 0)
        seen[n] = repetition[i] + 1
    letters = np.array(BRAILLE_LETTERS)
    label = np.array([BRAILLE_LETTERS.index(n) for n in names], dtype=np.int64)
    return {
        "taxel": taxel,
        "length": length,
        "label": label,
        "letter": letter,
        "repetition": repetition,
        "letters": letters,
    }


_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pkl.gz", ".pickle.gz")


def _locate(root: Path, split: str) -> Path:
    if root.is_file():
        if split != "train":
            raise DatasetNotFoundError(
                f"{root} is a single file, read as the training split; a '{split}' split needs "
                f"a folder with {split}.npz."
            )
        return root
    if not root.is_dir():
        raise DatasetNotFoundError(f"Braille data folder {root} does not exist.")
    npz = root / f"{split}.npz"
    if npz.is_file():
        return npz
    if split == "train":
        pickles = sorted(p for p in root.iterdir() if p.name.endswith(_PICKLE_SUFFIXES))
        if len(pickles) == 1:
            return pickles[0]
        if len(pickles) > 1:
            raise DatasetLayoutError(
                f"{root} holds several pickle files ({', '.join(p.name for p in pickles)}) and "
                "no train.npz; pass the one to read as root."
            )
    raise DatasetNotFoundError(
        f"no {split}.npz in {root}"
        + (" (nor a Braille release pickle *.pkl[.gz])" if split == "train" else "")
        + "; point root at the folder holding the Braille recordings."
    )


def _check_taxel_indices(taxels: Sequence[int] | None) -> tuple[int, ...]:
    if taxels is None:
        return tuple(range(TAXELS))
    out = tuple(taxels)
    if not out or not all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < TAXELS
        for t in out
    ):
        raise ValueError(f"taxels must be indices in 0..{TAXELS - 1}, got {list(out)!r}.")
    if len(set(out)) != len(out):
        raise ValueError(f"taxels must not repeat, got {list(out)!r}.")
    return tuple(int(t) for t in out)


def _check_npz_rows(data: dict[str, np.ndarray], where: str) -> None:
    n = data["taxel"].shape[0]
    for k in ("label", "letter", "repetition"):
        if data[k].shape != (n,):
            raise DatasetLayoutError(f"{where}: '{k}' has shape {data[k].shape}, expected ({n},).")
    names = tuple(str(v) for v in data["letters"])
    if not names or not set(names) <= set(BRAILLE_LETTERS):
        raise DatasetLayoutError(
            f"{where}: 'letters' must name Braille letters ({', '.join(BRAILLE_LETTERS)}), got "
            f"{', '.join(names)}."
        )
    bad = np.flatnonzero((data["label"] < 0) | (data["label"] >= len(names)))
    if bad.size:
        raise DatasetLayoutError(
            f"{where}: sample {int(bad[0])} has label {int(data['label'][bad[0]])}, outside "
            f"0..{len(names) - 1}."
        )
    named = np.array(names)[data["label"]]
    bad = np.flatnonzero(named != data["letter"])
    if bad.size:
        i = int(bad[0])
        raise DatasetLayoutError(
            f"{where}: sample {i} has label {int(data['label'][i])} ({named[i]}) but letter "
            f"{data['letter'][i]!r}."
        )


class Braille(Dataset):
    """Tactile Braille letters as a torch ``Dataset`` of ``(frames (T, C) float32, label)``.

    Args:
        root: a folder with ``train.npz`` (and optionally ``test.npz``), or with exactly one
            release pickle ``*.pkl[.gz]`` (read as ``train``); or the file itself.
        split: ``"train"`` or ``"test"``.
        letters: ``"all"`` (27 classes), a comma-separated list such as
            ``"Space,A,E,I,O,U,Y"`` (:data:`NIR_LETTERS`) or a sequence of names. Labels are
            ``0..k-1`` in the order of :data:`BRAILLE_LETTERS`.
        encoding: a sensor encoder, a sequence of them (applied in order) or ``None`` (the raw
            taxel values); default ``SigmaDelta(1.0)``: ON and OFF event counts, 24 channels
            (lossless: the readings are integers). The NIR paper's 12-channel input is
            ``SigmaDelta(1.0, merge=True, binary=True)``. Each recording is cropped to its
            valid length before encoding.
        taxels: keep only these taxels (indices 0–11), in this order, before encoding; ``None``:
            all 12. In the shared recordings only taxels 1, 2, 6 and 10 ever change, so
            ``taxels=(1, 2, 6, 10)`` with ON/OFF events gives 8 inputs (Xylo takes 16).
        transform, target_transform: applied to the encoded frames / the label.

    Attributes:
        classes: the kept letters; ``targets``: labels; ``repetitions``: repetition numbers;
        ``lengths``: valid steps; ``frame_shape``: ``(C,)``; ``source``: the file read.

    Raises:
        DatasetNotFoundError: no data for the split.
        DatasetLayoutError: missing keys, inconsistent labels or an unknown letter in the file.
        CorruptRecordingError: taxel data of the wrong shape, or a NaN inside a recording's
            valid length (the message names the file and the sample).
        UnsafePickleError: a pickle that asks for anything but arrays and plain values.
        ValueError: unknown names in ``letters`` or bad ``taxels``.

    Example (needs the data)::

        ds = Braille("data/braille", letters="Space,A,E,I,O,U,Y")
        frames, label = ds[0]                    # frames (77, 24): ON/OFF sigma-delta events
        split = ds.repetition_split(0.2, seed=0)  # 8 of 40 repetitions of each letter
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        letters: str | Sequence[str] | None = "all",
        encoding: Any = "default",
        *,
        taxels: Sequence[int] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"Braille: split must be 'train' or 'test', got {split!r}.")
        self.split = split
        self.classes = parse_letters(letters)
        path = _locate(Path(root).expanduser(), split)
        self.source = path
        where = str(path)
        if path.name.endswith(".npz"):
            data = _read_npz(path)
            _check_npz_rows(data, where)
        else:
            data = _read_pickle(path)
        _check_taxels(data["taxel"], data["length"], where)
        file_letters = tuple(str(v) for v in data["letters"])
        names = np.array(file_letters)[data["label"]]
        keep = np.flatnonzero(np.isin(names, self.classes))
        if keep.size == 0:
            raise DatasetLayoutError(
                f"{where}: no recordings of the letters {', '.join(self.classes)}."
            )
        self.taxels = _check_taxel_indices(taxels)
        self._taxel = data["taxel"][keep][:, :, list(self.taxels)]
        self.lengths = data["length"][keep]
        self.repetitions = data["repetition"][keep]
        self.letter_names = names[keep]
        index = {n: i for i, n in enumerate(self.classes)}
        self.targets = [index[str(n)] for n in self.letter_names]
        if isinstance(encoding, str) and encoding == "default":
            encoding = SigmaDelta(1.0)
        self.encoding: SensorPipeline = as_pipeline(encoding)
        self.transform = transform
        self.target_transform = target_transform
        self.frame_shape = tuple(self._encode(0).shape[1:])

    def __len__(self) -> int:
        return len(self.targets)

    def signal(self, index: int) -> np.ndarray:
        """The raw readings of a sample's kept taxels, ``(length, len(taxels))`` float32
        (0–255, lower = more pressure)."""
        return self._taxel[index, : int(self.lengths[index])]

    def _encode(self, index: int) -> torch.Tensor:
        return self.encoding(self.signal(index))

    def __getitem__(self, index: int):
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"Braille: index {index} out of range for {len(self)} samples.")
        frames = self._encode(index % len(self))
        label = self.targets[index]
        if self.transform is not None:
            frames = self.transform(frames)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return frames, label

    def repetition_split(self, fraction: float = 0.2, seed: int = 0) -> SplitIndices:
        """Hold out ``round(fraction * n)`` of the ``n`` repetitions of every letter.

        Each sample is one repetition of one letter, so this is the stratified split of
        :func:`~spikelfp.datasets.validation_split` (the trainer's ``--val-fraction``): the same
        ``seed`` always holds out the same repetitions; no repetition is in both parts.

        Args:
            fraction: share of each letter's repetitions held out, in ``(0, 1)``.
            seed: the split's seed.

        Returns:
            :class:`SplitIndices` ``(train, val)`` of sample indices.
        """
        return validation_split(self.targets, fraction=fraction, seed=seed)

    def __repr__(self) -> str:
        return (
            f"Braille({str(self.source)!r}, split={self.split!r}, {len(self)} samples, "
            f"{len(self.classes)} letters, frames (T, {', '.join(map(str, self.frame_shape))}))"
        )
