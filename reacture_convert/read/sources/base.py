"""What every sample source is (``SampleSource``) and what they all say about what they leave
out: the bottom of the training readers, above ``read.session``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from reacture_convert.errors import OutputError
from reacture_convert.read.batch import Batch
from reacture_convert.read.options import Layout, ReadOptions

__all__ = ["SampleSource", "log_skips", "no_samples_error", "refuse_empty"]

log = logging.getLogger("reacture_convert.read")


@runtime_checkable
class SampleSource(Protocol):
    """A converted dataset's samples in NumPy (``read.batch`` says what a batch holds).

    Built as ``Source(OUT, options, storage_options=..., layout=...)``; ``sessions`` are the
    sessions read, ``total_frames`` their frames, ``skipped_blank`` / ``dropped_windows`` what
    the options leave out (None when a streaming source cannot know before reading).
    ``iter_batches(batch_size, shuffle=, seed=, epoch=, drop_last=)`` reads one epoch."""

    options: ReadOptions
    layout: Layout
    total_frames: int

    @property
    def sessions(self) -> tuple[str, ...]: ...

    def iter_batches(self, batch_size: int, **plan: Any) -> Iterator[Batch]: ...


def log_skips(where: str, options: ReadOptions, skipped: int, dropped: int, total: int) -> None:
    """Say once what blank skipping and windows left out (nothing when nothing was)."""
    if skipped:
        log.warning(
            "%s: skipping %d blank (all-zero) frame(s) of %d; skip_blank=False keeps them",
            where,
            skipped,
            total,
        )
    if dropped:
        log.warning(
            "%s: dropping %d sample(s) whose window (history=%d, horizon=%d, max_gap_ms=%s) "
            "crosses a session's end, a pause or a blank frame",
            where,
            dropped,
            options.history,
            options.horizon,
            options.max_gap_ms,
        )


def no_samples_error(out: object, frames: int) -> OutputError:
    """What a loader says when the options leave nothing to read (an empty epoch would train
    on nothing without a word)."""
    return OutputError(
        f"{out}: no samples to read: the options leave out all {frames} frame(s) of the "
        "sessions read (blank frames are skipped by default: skip_blank=False keeps them; "
        "the warnings above count what windows dropped)"
    )


def refuse_empty(source: Any, out: object) -> None:
    """Raise ``no_samples_error`` when ``source`` is known to hold no sample (a streaming
    source that cannot count before reading is let through)."""
    if source.skipped_blank is not None and not len(source):
        raise no_samples_error(out, source.total_frames)
