"""How well a shuffled epoch mixes: ``shuffle_quality`` of the order samples were delivered in.

A sample's *position* is its place in the dataset's own order (sessions by name, frames in
order); an epoch delivers positions ``p[0], p[1], ...`` of ``n`` samples. Two numbers, both
divided by ``n``:

- **median gap**: the median of ``|p[t + 1] - p[t]|``, how far apart consecutive samples lie
  (a batch of neighbouring frames is a few correlated seconds of one session). In order it is
  ``1 / n``; a uniform random permutation gives about 0.29 (``1 - 1 / sqrt 2``).
- **mean displacement**: the mean of ``|p[t] - t|``, how far samples move from their place
  (a reader that mixes only locally keeps each part of the epoch near where it was). In order
  it is 0; a uniform random permutation gives about 0.33.

``positions`` turns what a reader hands out (each batch's ``session`` and ``frame_index``) into
positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ShuffleQuality", "batch_keys", "positions", "shuffle_quality"]


@dataclass(frozen=True)
class ShuffleQuality:
    """How an epoch of ``samples`` samples mixed (module doc)."""

    samples: int
    median_gap: float
    mean_displacement: float

    def __str__(self) -> str:
        return f"median gap {self.median_gap:.3f}, mean displacement {self.mean_displacement:.3f}"


def shuffle_quality(delivered: npt.ArrayLike) -> ShuffleQuality:
    """The quality of an epoch that delivered positions ``delivered`` (module doc)."""
    p = np.asarray(delivered, dtype=np.int64).reshape(-1)
    n = p.shape[0]
    if n < 2:
        return ShuffleQuality(n, 0.0, 0.0)
    gap = float(np.median(np.abs(np.diff(p)))) / n
    moved = float(np.mean(np.abs(p - np.arange(n)))) / n
    return ShuffleQuality(n, gap, moved)


def batch_keys(batches: Iterable[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """``(session, frame_index)`` of every sample of ``batches``, in order."""
    return [
        (str(s), int(f))
        for b in batches
        for s, f in zip(b["session"], np.asarray(b["frame_index"]).tolist(), strict=True)
    ]


def positions(keys: Sequence[tuple[str, int]]) -> npt.NDArray[np.int64]:
    """The position of each ``(session, frame_index)`` of a whole epoch among all of them
    (sessions by name, frames in order). ValueError when a sample comes twice."""
    order = {key: i for i, key in enumerate(sorted(set(keys)))}
    if len(order) != len(keys):
        raise ValueError(f"{len(keys) - len(order)} sample(s) delivered more than once")
    return np.array([order[key] for key in keys], dtype=np.int64)
