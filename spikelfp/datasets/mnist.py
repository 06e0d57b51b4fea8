"""MNIST (LeCun et al. 1998) read from its idx files, without torchvision.

The four files of torchvision's raw layout, ``gzip``-compressed or not::

    <root>/MNIST/raw/train-images-idx3-ubyte[.gz]   60,000 images 28x28 uint8
    <root>/MNIST/raw/train-labels-idx1-ubyte[.gz]   their labels 0-9
    <root>/MNIST/raw/t10k-images-idx3-ubyte[.gz]    10,000 test images
    <root>/MNIST/raw/t10k-labels-idx1-ubyte[.gz]

An idx file is a big-endian header, ``00 00 <type> <ndim>`` (type ``0x08`` = uint8) followed
by ``ndim`` uint32 sizes, then the data in C order: the magic number is ``0x00000803`` for
images ``(N, rows, cols)`` and ``0x00000801`` for labels ``(N,)``.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     raw = pathlib.Path(d) / "MNIST" / "raw"
...     images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28) % 256
...     _ = write_idx(raw / "train-images-idx3-ubyte.gz", images.astype(np.uint8))
...     _ = write_idx(raw / "train-labels-idx1-ubyte", np.array([7, 2, 1], dtype=np.uint8))
...     read_idx(raw / "train-images-idx3-ubyte.gz").shape
...     ds = MNIST(d, split="train", time_bins=4)
...     frames, label = ds[0]
...     len(ds), ds.targets, tuple(frames.shape), frames.dtype, label
(3, 28, 28)
(3, [7, 2, 1], (4, 1, 28, 28), torch.float32, 7)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Callable, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import Any, ClassVar
from urllib.request import Request, urlopen

import numpy as np
import torch
from torch.utils.data import Dataset

from .._io import atomic_write
from ._sample import check_index, transformed
from .encoders import DirectCurrent, Encoder, make_encoder
from .errors import CorruptRecordingError, DatasetLayoutError, DatasetNotFoundError
from .event_dataset import check_split

__all__ = ["MD5SUMS", "MIRRORS", "MNIST", "download_mnist", "read_idx", "write_idx"]

#: Where ``download=True`` looks, in order (torchvision's mirrors).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: md5 sums of the original ``.gz`` files (the ones torchvision checks).
MD5SUMS: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_MAGIC = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}
_KIND_NAME = {"images": "image", "labels": "label"}
_PREFIX = {"train": "train", "test": "t10k"}
_STEMS = {"images": "{prefix}-images-idx3-ubyte", "labels": "{prefix}-labels-idx1-ubyte"}
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def _kind_from_name(path: Path) -> str | None:
    name = path.name.lower()
    if "images" in name or "idx3" in name:
        return "images"
    if "labels" in name or "idx1" in name:
        return "labels"
    return None


def _describe_magic(magic: int) -> str:
    if magic == IMAGES_MAGIC:
        return f"magic 0x{magic:08x}, an idx image file"
    if magic == LABELS_MAGIC:
        return f"magic 0x{magic:08x}, an idx label file"
    if magic >> 16 == 0x1F8B:
        return f"magic 0x{magic:08x}, gzip data in a file not named .gz"
    return f"magic 0x{magic:08x}"


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except gzip.BadGzipFile as err:
        raise CorruptRecordingError(
            f"{path}: not a gzip file ({err}); expected a gzip-compressed MNIST idx file. "
            "Delete it and download it again."
        ) from None
    except (EOFError, zlib.error) as err:
        raise CorruptRecordingError(
            f"{path}: corrupt or truncated gzip data ({err}). Delete it and download it again."
        ) from None


def read_idx(path: str | os.PathLike[str], kind: str | None = None) -> np.ndarray:
    """Read an MNIST idx file (``.gz`` or plain) as a uint8 array.

    ``kind`` is ``"images"`` (magic ``0x00000803``, 3 dimensions ``(N, rows, cols)``) or
    ``"labels"`` (magic ``0x00000801``, ``(N,)``); ``None`` guesses it from the file name
    (``images``/``idx3`` or ``labels``/``idx1``) and otherwise accepts either.

    Raises :class:`~spikelfp.datasets.DatasetNotFoundError` when the file is missing and
    :class:`~spikelfp.datasets.CorruptRecordingError` when it is not a valid idx file of that
    kind (wrong magic, header cut short, fewer or more data bytes than the header says, broken
    gzip data); every message is one line naming the file and what was expected.
    """
    path = Path(path)
    if kind is not None and kind not in _MAGIC:
        raise ValueError(f"read_idx: kind must be 'images', 'labels' or None, got {kind!r}.")
    if kind is None:
        kind = _kind_from_name(path)
    what = f"an MNIST idx {_KIND_NAME[kind]} file" if kind else "an MNIST idx file"
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such file (expected {what}).")
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptRecordingError(
            f"{path}: truncated: {len(data)} bytes, too short for the idx header of {what}."
        )
    magic = int.from_bytes(data[:4], "big")
    if kind is not None:
        expected = _MAGIC[kind]
        if magic != expected:
            raise CorruptRecordingError(
                f"{path}: not {what} ({_describe_magic(magic)}, expected 0x{expected:08x})."
            )
    elif magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise CorruptRecordingError(
            f"{path}: not {what} ({_describe_magic(magic)}, expected 0x{IMAGES_MAGIC:08x} for "
            f"images or 0x{LABELS_MAGIC:08x} for labels)."
        )
    else:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptRecordingError(
            f"{path}: truncated: the idx header needs {header} bytes ({ndim} sizes) but the "
            f"file holds {len(data)} bytes."
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = int(np.prod(dims, dtype=np.int64))
    got = len(data) - header
    if got != expected_bytes:
        if kind == "images":
            says = f"{dims[0]:,} images of {dims[1]}x{dims[2]} ({expected_bytes:,} bytes)"
        else:
            says = f"{dims[0]:,} labels ({expected_bytes:,} bytes)"
        problem = "truncated" if got < expected_bytes else "trailing data"
        raise CorruptRecordingError(
            f"{path}: {problem}: header says {says} but the file holds {got:,} bytes after "
            f"its {header}-byte header. Delete it and download it again."
        )
    array = np.frombuffer(data, dtype=np.uint8, count=expected_bytes, offset=header)
    return array.reshape(dims).copy()  # writable, independent of the file's bytes


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a uint8 array of 1 dimension (labels) or 3 (images) as an idx file, atomically;
    gzip-compressed when ``path`` ends in ``.gz``. Creates the folder.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_idx(pathlib.Path(d) / "labels-idx1-ubyte", np.array([3, 1], np.uint8))
    ...     p.read_bytes().hex()
    '00000801000000020301'
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(
            f"write_idx: need a uint8 array of 1 (labels) or 3 (images) dimensions, got "
            f"{array.dtype} with shape {array.shape}."
        )
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + np.ascontiguousarray(array).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_bytes(payload)
    return path


def split_file_names(split: str) -> dict[str, str]:
    """``{"images": "train-images-idx3-ubyte", "labels": ...}`` (``t10k-...`` for test)."""
    check_split(split, "MNIST")
    return {kind: stem.format(prefix=_PREFIX[split]) for kind, stem in _STEMS.items()}


def _raw_candidates(root: Path) -> list[Path]:
    """``<root>/MNIST/raw``, ``<root>/raw`` (root is ``.../MNIST``), ``<root>`` (``.../raw``)."""
    return [root / "MNIST" / "raw", root / "raw", root]


def _download_dir(root: Path) -> Path:
    if root.name == "raw":
        return root
    if root.name == "MNIST":
        return root / "raw"
    return root / "MNIST" / "raw"


def _find(raw: Path, stem: str) -> Path | None:
    """The file ``stem`` in ``raw``, plain (what torchvision extracts) before ``.gz``."""
    for name in (stem, stem + ".gz"):
        if (raw / name).is_file():
            return raw / name
    return None


def locate_mnist(root: Path, split: str) -> tuple[Path | None, Path | None]:
    """The image and label files of ``split`` in the first raw folder under ``root`` that holds
    either of them (``None`` for a missing one)."""
    names = split_file_names(split)
    for raw in _raw_candidates(root):
        images, labels = _find(raw, names["images"]), _find(raw, names["labels"])
        if images is not None or labels is not None:
            return images, labels
    return None, None


def _fetch(url: str, dest: Path, md5: str | None) -> None:
    """Download ``url`` to ``dest`` atomically, refusing it when its md5 is not ``md5``."""
    request = Request(url, headers={"User-Agent": "spikelfp"})
    digest = hashlib.md5(usedforsecurity=False)
    with atomic_write(dest) as tmp:
        with urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response, tmp.open("wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise CorruptRecordingError(
                f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}; the file "
                f"was not saved as {dest}."
            )


def download_mnist(
    root: str | os.PathLike[str],
    splits: Sequence[str] = ("train", "test"),
    *,
    mirrors: Sequence[str] | None = None,
    md5sums: dict[str, str] | None = None,
) -> Path:
    """Download the ``.gz`` files of ``splits`` that are not there yet into the raw folder of
    ``root`` (``<root>/MNIST/raw``; ``root`` itself when it is a ``raw`` folder, ``root/raw``
    when it is an ``MNIST`` folder) and return that folder.

    Each file is tried on every mirror in turn (default :data:`MIRRORS`) and kept only when its
    md5 sum is the one in ``md5sums`` (default :data:`MD5SUMS`), like torchvision: it goes to a
    temporary file moved into place with ``os.replace``, so an interrupted or refused download
    leaves nothing behind. When every mirror fails, raises
    :class:`~spikelfp.datasets.CorruptRecordingError` (a mirror sent a file with the wrong md5)
    or :class:`~spikelfp.datasets.DatasetNotFoundError` (none could be reached), listing each
    attempt on one line.
    """
    raw = _download_dir(Path(root).expanduser())
    _download_files(raw, splits, mirrors=mirrors, md5sums=md5sums)
    return raw


def _download_files(
    raw: Path,
    splits: Sequence[str],
    *,
    mirrors: Sequence[str] | None = None,
    md5sums: dict[str, str] | None = None,
) -> None:
    mirrors = tuple(MIRRORS if mirrors is None else mirrors)
    md5sums = MD5SUMS if md5sums is None else md5sums
    raw.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for stem in split_file_names(split).values():
            if _find(raw, stem) is not None:
                continue
            name = stem + ".gz"
            failures: list[str] = []
            corrupt = False
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + name
                try:
                    _fetch(url, raw / name, md5sums.get(name))
                except CorruptRecordingError as err:
                    corrupt = True
                    failures.append(str(err))
                except (OSError, ValueError, HTTPException) as err:  # URLError, HTTPError, ...
                    failures.append(f"{url}: {' '.join(str(err).split()) or type(err).__name__}")
                else:
                    break
            else:
                error = CorruptRecordingError if corrupt else DatasetNotFoundError
                tried = "; ".join(failures) if failures else "no mirrors given"
                raise error(f"could not download MNIST {name} into {raw}: {tried}")


class MNIST(Dataset):
    """MNIST as a torch ``Dataset`` of ``(frames (T, 1, 28, 28) float32, label)``.

    Reads torchvision's raw layout, ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}
    -ubyte[.gz]`` (``root`` may also be the ``MNIST`` or the ``raw`` folder), with
    :func:`read_idx`, without torchvision. Any number of images is fine (the header counts
    decide); the image and label files must agree. The uint8 images ``(N, 28, 28)`` stay in
    memory; ``dataset[i]`` scales image ``i`` to ``[0, 1]`` and gives it to ``encoder`` for
    ``time_bins`` steps.

    Randomness (rate and Poisson encoders): with ``seed=None`` (default) spikes come from
    torch's global generator, fresh at every access and reproducible under
    ``torch.manual_seed`` in a single process. With an integer ``seed``, sample ``i`` is
    encoded with its own ``torch.Generator`` seeded from ``(seed, epoch, i)``: the same spikes
    whatever the order, the batch or the worker process, and new ones after
    :meth:`set_epoch`.

    Args:
        root: folder containing ``MNIST/raw/`` (or the ``MNIST`` or ``raw`` folder).
        split: ``"train"`` (``train-*`` files) or ``"test"`` (``t10k-*``).
        time_bins: number of time steps ``T``.
        encoder: an encoder (see :mod:`spikelfp.datasets.encoders`) or its name (``"direct"``,
            ``"rate"``, ``"poisson"``, ``"latency"``); default :class:`DirectCurrent`.
        download: download the missing files of the split (md5-checked) first.
        seed: see above.
        transform: callable applied to the frames (after the encoder).
        target_transform: callable applied to the label.

    Example (needs the data)::

        ds = MNIST("data", split="train", time_bins=8, encoder="rate", seed=0)
        frames, label = ds[0]            # frames.shape == (8, 1, 28, 28)
    """

    sensor_size: ClassVar[tuple[int, int, int]] = (28, 28, 1)
    classes: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))
    #: The images live in memory and the encoder runs at every access: no frame cache wanted
    #: (a cache would freeze the random spikes of the rate and Poisson encoders).
    in_memory: ClassVar[bool] = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        time_bins: int = 8,
        encoder: Encoder | str | None = None,
        download: bool = False,
        *,
        seed: int | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
    ) -> None:
        check_split(split, "MNIST")
        if isinstance(time_bins, bool) or not isinstance(time_bins, int) or time_bins < 1:
            raise ValueError(f"MNIST: time_bins must be an integer >= 1, got {time_bins!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"MNIST: seed must be an integer or None, got {seed!r}.")
        if isinstance(encoder, str):
            encoder = make_encoder(encoder)
        elif encoder is None:
            encoder = DirectCurrent()
        elif not callable(encoder):
            raise ValueError(f"MNIST: encoder must be an encoder or its name, got {encoder!r}.")
        self.split = split
        self.time_bins = time_bins
        self.encoder: Encoder = encoder
        self.seed = seed
        self.epoch = 0
        self.transform = transform
        self.target_transform = target_transform

        root = Path(root).expanduser()
        images_file, labels_file = locate_mnist(root, split)
        if (images_file is None or labels_file is None) and download:
            present = images_file or labels_file
            raw = present.parent if present is not None else _download_dir(root)
            _download_files(raw, (split,), mirrors=MIRRORS, md5sums=MD5SUMS)
            images_file, labels_file = locate_mnist(root, split)
        if images_file is None or labels_file is None:
            raise self._not_found(root, split, images_file, labels_file)
        self.image_file: Path = images_file
        self.label_file: Path = labels_file
        self.data_dir: Path = images_file.parent

        images = read_idx(images_file, "images")
        labels = read_idx(labels_file, "labels")
        if images.shape[1:] != (28, 28):
            raise CorruptRecordingError(
                f"{images_file}: images are {images.shape[1]}x{images.shape[2]}, expected "
                "28x28 (MNIST)."
            )
        if len(images) != len(labels):
            raise DatasetLayoutError(
                f"MNIST {split} files do not match: {images_file} holds {len(images):,} images "
                f"but {labels_file} holds {len(labels):,} labels."
            )
        if labels.size and int(labels.max()) > 9:
            raise CorruptRecordingError(
                f"{labels_file}: label {int(labels.max())} found, expected digits 0-9."
            )
        #: uint8 ``(N, 28, 28)``.
        self.images: torch.Tensor = torch.from_numpy(images)
        self.targets: list[int] = labels.astype(np.int64).tolist()
        self.frame_shape: tuple[int, int, int] = (1, 28, 28)

    def _not_found(
        self, root: Path, split: str, images: Path | None, labels: Path | None
    ) -> DatasetNotFoundError:
        names = split_file_names(split)
        present = images or labels
        if present is not None:
            kind = "labels" if images is not None else "images"
            missing = present.parent / (names[kind] + "[.gz]")
            return DatasetNotFoundError(
                f"MNIST {split} split incomplete: found {present} but not {missing}. Restore "
                "the missing file, or pass download=True (--download) to fetch it."
            )
        expected = ", ".join(str(root / "MNIST" / "raw" / (n + "[.gz]")) for n in names.values())
        return DatasetNotFoundError(
            f"MNIST {split} split not found under {root}: expected {expected} (root may also be "
            "the MNIST or the raw folder). Pass download=True (--download) to download it "
            f"(~{'10' if split == 'train' else '2'} MB, md5-checked)."
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the spikes of ``epoch`` (only matters with an integer ``seed``)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator | None:
        """The generator sample ``index`` is encoded with: ``None`` (torch's global one) when
        ``seed`` is ``None``, else one seeded from ``(seed, epoch, index)``."""
        if self.seed is None:
            return None
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(2)
        g = torch.Generator()
        g.manual_seed(int(state[0]) << 32 | int(state[1]))
        return g

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 ``(1, 28, 28)`` in ``[0, 1]``."""
        index = self._check_index(index)
        return self.images[index].to(torch.float32).div_(255.0).unsqueeze(0)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = self._check_index(index)
        x = self.image(index)
        frames = self.encoder(x, self.time_bins, self.generator(index)).to(torch.float32)
        return transformed(frames, self.targets[index], self.transform, self.target_transform)

    def _check_index(self, index: int) -> int:
        return check_index(index, len(self.targets), self)

    def __repr__(self) -> str:
        return (
            f"MNIST(root={str(self.data_dir)!r}, split={self.split!r}, samples={len(self)}, "
            f"time_bins={self.time_bins}, encoder={self.encoder!r})"
        )
