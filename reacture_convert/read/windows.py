"""Which frames of a session become samples: blank skipping and windows, decided once.

``judge`` rules on a *run* (consecutive frames of one session, in frame order; the run's ends
are the session's ends) from three arrays: frame indices, timestamps and blank flags. Sample i
is

- **skipped** when ``skip_blank`` and frame i is blank;
- else **dropped** when its window, frames i - history .. i + horizon, does not fit: it reaches
  past either end of the run, two consecutive frames in it are not consecutive frame indices or
  lie more than ``max_gap_ms`` apart, or (with ``skip_blank``) a history frame is blank;
- else **kept**.

A verdict depends only on the frames within ``history`` before and ``horizon`` after, so a
stream can rule on a block of samples once it holds that much context on either side
(``StreamJudge``): the shard reader then reaches the verdicts the Zarr reader reaches over the
whole session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from reacture_convert.read.options import ReadOptions

__all__ = ["Item", "StreamJudge", "Verdict", "count_verdicts", "judge"]

Bools = npt.NDArray[np.bool_]
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Verdict:
    """Per frame of a run: ``keep`` (a sample), ``skipped`` (blank), ``dropped`` (window)."""

    keep: Bools
    skipped: Bools
    dropped: Bools


def judge(
    frame_index: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    blank: npt.ArrayLike,
    options: ReadOptions,
) -> Verdict:
    """The verdict on every frame of one run (see the module doc)."""
    fi = np.asarray(frame_index, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.float64)
    bl = np.asarray(blank, dtype=bool)
    n = fi.shape[0]
    skipped = bl.copy() if options.skip_blank else np.zeros(n, dtype=bool)
    k, h = options.history, options.horizon
    fits = np.ones(n, dtype=bool)
    if options.windowed and n:
        i = np.arange(n)
        lo, hi = i - k, i + h
        fits = (lo >= 0) & (hi < n)
        lo_c, hi_c = np.clip(lo, 0, n - 1), np.clip(hi, 0, n - 1)
        breaks = np.diff(fi) != 1
        if options.max_gap_ms is not None:
            breaks |= np.diff(ts) > options.max_gap_ms
        before = np.concatenate([[0], np.cumsum(breaks)])  # breaks between frames 0..j
        fits &= before[hi_c] == before[lo_c]
        if options.skip_blank and k:
            blanks = np.concatenate([[0], np.cumsum(bl)])  # blank frames among 0..j-1
            fits &= blanks[i] == blanks[lo_c]
    return Verdict(~skipped & fits, skipped, ~skipped & ~fits)


@dataclass(frozen=True, slots=True)
class Item(Generic[T]):
    """One frame of a stream: where it is, whether the reader hands it out (``own``: context
    frames read only for the windows of their neighbours are not), and what it carries."""

    session: str
    frame_index: int
    timestamp_ms: float
    blank: bool
    own: bool
    payload: T


class StreamJudge(Generic[T]):
    """``judge`` over a stream of items in frame order (runs split by session), in blocks.

    ``push`` items and ``finish`` at the end; each yields ``(history, horizon)`` for each own
    kept item, in order: the item's frame and the ``history`` before it, oldest first, and the
    item and the ``horizon`` after it. Own items that are skipped or dropped are counted."""

    def __init__(self, options: ReadOptions, block: int = 256) -> None:
        self.options = options
        self.block = block
        self.skipped = 0
        self.dropped = 0
        self._run: list[Item[T]] = []
        self._next = 0  # first item of _run without a verdict

    def push(self, item: Item[T]) -> Iterator[tuple[Sequence[Item[T]], Sequence[Item[T]]]]:
        if self._run and item.session != self._run[-1].session:
            yield from self.finish()
        self._run.append(item)
        if len(self._run) - self._next >= self.options.horizon + self.block:
            yield from self._rule(len(self._run) - self.options.horizon)

    def finish(self) -> Iterator[tuple[Sequence[Item[T]], Sequence[Item[T]]]]:
        """Rule on what is left: the run ends here."""
        yield from self._rule(len(self._run), end=True)
        self._run, self._next = [], 0

    def _rule(
        self, stop: int, end: bool = False
    ) -> Iterator[tuple[Sequence[Item[T]], Sequence[Item[T]]]]:
        k, h = self.options.history, self.options.horizon
        first = max(0, self._next - k)  # items before it are not needed as history
        run = self._run[first:] if end else self._run[first : stop + h]
        verdict = judge(
            [x.frame_index for x in run],
            [x.timestamp_ms for x in run],
            [x.blank for x in run],
            self.options,
        )
        for j in range(self._next - first, stop - first):
            item = run[j]
            if not item.own:
                continue
            if verdict.keep[j]:
                yield run[j - k : j + 1], run[j : j + h + 1]
            elif verdict.skipped[j]:
                self.skipped += 1
            else:
                self.dropped += 1
        self._next = stop
        keep_from = max(0, stop - k)
        if keep_from:
            del self._run[:keep_from]
            self._next -= keep_from


def count_verdicts(verdicts: Sequence[Verdict]) -> tuple[int, int]:
    """``(skipped, dropped)`` over several runs."""
    return (
        sum(int(v.skipped.sum()) for v in verdicts),
        sum(int(v.dropped.sum()) for v in verdicts),
    )
