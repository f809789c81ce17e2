"""What a run reports: the summary of a batch or a watcher, and a watcher's live status."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reacture_convert.findings import Finding, Severity
from reacture_convert.output.catalog import CatalogEntry, EntryView
from reacture_convert.output.status import OK, Status
from reacture_convert.run.interrupt import Resumed

__all__ = ["RunSummary", "StatusCounts", "WatchStatus", "WatchSummary"]


def statuses(entries: Sequence[CatalogEntry]) -> Iterable[Status]:
    """Each entry's status (without building the entries of a compact ``EntryView``)."""
    if isinstance(entries, EntryView):
        return entries.statuses()
    return (e.status for e in entries)


class StatusCounts:
    """``counts`` and ``ok`` of a run's catalog entries (shared by batch and watch summaries).
    ``entries`` may be an ``EntryView``: 100,000 of them stay small."""

    entries: Sequence[CatalogEntry]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(statuses(self.entries)))

    @property
    def ok(self) -> bool:
        return all(s.is_ok for s in statuses(self.entries))


@dataclass(frozen=True)
class RunSummary(StatusCounts):
    """What a run did: one entry per bundle (and per unreadable archive), plus stray findings.
    ``interrupted``: a signal stopped it, ``not_done`` bundles are left for the next run;
    ``resumed``: the interrupted run it took over from."""

    out: str
    run_id: str
    entries: Sequence[CatalogEntry]
    findings: tuple[Finding, ...] = ()
    seconds: float = 0.0
    frames: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    not_done: int = 0
    resumed: Resumed | None = None

    @property
    def status(self) -> str:
        """``interrupted``, or ``finished``."""
        return "interrupted" if self.interrupted else "finished"

    @property
    def ok(self) -> bool:
        """Every bundle converted, skipped or a duplicate; at least one bundle found; no error
        outside any bundle (an input that does not exist); not interrupted."""
        return (
            len(self.entries) > 0
            and not self.interrupted
            and super().ok
            and not any(f.severity is Severity.ERROR for f in self.findings)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "run_id": self.run_id,
            "status": self.status,
            "ok": self.ok,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "frames_per_second": round(self.frames / self.seconds, 1) if self.seconds else None,
            "sessions": [
                {
                    "session": e.session,
                    "prefix": e.prefix,
                    "source": e.source,
                    "status": e.status,
                    "reason": e.reason,
                    "n_frames": e.n_frames,
                    "n_rows": e.n_rows,
                    "outputs": list(e.outputs),
                    "findings": [f.to_dict() for f in e.findings],
                }
                for e in self.entries
            ],
            "findings": [f.to_dict() for f in self.findings],
            **({"resumed": self.resumed.to_dict()} if self.resumed is not None else {}),
            **dict(self.extra),
        }


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot for a live status line. ``waiting``: bundles seen but not ready (settling or
    incomplete); ``counts``: results by catalog status since the watcher started."""

    waiting: int
    queued: int
    converting: int
    counts: Mapping[str, int]
    frames: int  # frames of the sessions converted since start
    busy_seconds: float  # time with at least one session in flight
    seconds: float  # since start

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in OK)

    @property
    def rejected(self) -> int:
        return self.counts.get(Status.REJECTED, 0) + self.counts.get(Status.CONFLICT, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(Status.FAILED, 0)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.busy_seconds if self.busy_seconds > 0 else 0.0

    def line(self) -> str:
        """``2 waiting · 1 queued · 2 converting · 10 done · 1 rejected · 0 failed · 850
        frames/s``: what a terminal shows while the watcher runs."""
        return (
            f"{self.waiting} waiting · {self.queued} queued · {self.converting} converting · "
            f"{self.done} done · {self.rejected} rejected · {self.failed} failed · "
            f"{self.frames_per_second:,.0f} frames/s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "queued": self.queued,
            "converting": self.converting,
            "done": self.done,
            "rejected": self.rejected,
            "failed": self.failed,
            "frames": self.frames,
            "frames_per_second": round(self.frames_per_second, 1),
        }


@dataclass(frozen=True)
class WatchSummary(StatusCounts):
    """What a watcher did before it stopped. ``entries``: every result and report, written to
    the catalog or not (``skipped``); ``stopped``: ``once``, ``signal``, ``on_error`` or
    ``abort`` (a second signal: results in flight were dropped)."""

    out: str
    run_id: str
    stopped: str
    entries: Sequence[CatalogEntry] = ()
    seconds: float = 0.0
    frames: int = 0
    waiting: int = 0  # uploads seen but not ready when it stopped (incomplete or settling)
    findings: tuple[Finding, ...] = ()  # errors outside any bundle (an input that is not there)

    @property
    def aborted(self) -> bool:
        return self.stopped == "abort"

    @property
    def ok(self) -> bool:
        """Every result converted, skipped or a duplicate, and no error outside any bundle."""
        return super().ok and not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "run_id": self.run_id,
            "stopped": self.stopped,
            "ok": self.ok,
            "counts": self.counts,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "waiting": self.waiting,
            "findings": [f.to_dict() for f in self.findings],
        }
