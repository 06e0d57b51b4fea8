"""What every spikelfp dataset does with an index and a sample: check, then transform."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def check_index(index: int, n: int, owner: object) -> int:
    """``index`` as a non-negative int below ``n`` (negative counts from the end), or an
    ``IndexError`` naming ``owner``.

    >>> check_index(-1, 5, "ds")
    4
    """
    index = int(index)
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise IndexError(f"index {index} is out of range for {owner!r} ({n} samples)")
    return index


def transformed(
    frames: Any,
    label: Any,
    transform: Callable[[Any], Any] | None,
    target_transform: Callable[[Any], Any] | None,
) -> tuple[Any, Any]:
    """``(transform(frames), target_transform(label))``, each only when given."""
    if transform is not None:
        frames = transform(frames)
    if target_transform is not None:
        label = target_transform(label)
    return frames, label
