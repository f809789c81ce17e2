"""A run's progress as typed events, from wherever its sessions run to the caller's callback.

``run_convert(..., progress=fn)`` calls ``fn(event)`` with:

- ``WaitingForLock``: another run holds OUT's lock and this one waits for it (``--wait``);
- ``Started``: the lock is this run's; how many sessions it will go through;
- ``FramesWritten``: a session's frames read and handed to its writers so far (a few times a
  second while it converts, and once at the end of its frames: ``frames == n_frames``);
- ``SessionDone``: a session committed (or skipped, rejected...), with the count of done ones.

Sessions run in this process (``sync``), on threads of a local worker, or in worker processes
(local or a remote Dask cluster). A session's task finds its run's listener through
``emitter(run_id)``: one registered in this process (``listening``) is called directly; in a
Dask worker process the event goes to the scheduler as a Dask event (``Worker.log_event`` under
``TOPIC``) and on to the client that subscribed to it. Progress is best effort: an event that
cannot be sent is dropped, a callback that raises is ignored, and neither ever stops a run.
``fn`` may be called on any thread (a frames thread, the Dask client's loop).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import LockedError
from reacture_convert.ingest.rowscan import RowBlock
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.storage import Output, lock_holder
from reacture_convert.run.scheduler import Scheduler
from reacture_convert.run.setup import OutputRun, hold_output

__all__ = [
    "EVERY_SECONDS",
    "TOPIC",
    "FrameCounter",
    "FramesWritten",
    "ProgressEvent",
    "ProgressFn",
    "SessionDone",
    "Started",
    "WaitingForLock",
    "emitter",
    "guarded",
    "hold_reporting",
    "listening",
]

TOPIC = "reacture-convert-progress"  # the Dask event topic (one for all runs: bounded log)
EVERY_SECONDS = 0.25  # at most this often per session (and once at its end)


@dataclass(frozen=True)
class WaitingForLock:
    """OUT is locked by another run (``holder``: what its lock records, None when unknown);
    this run waits for it."""

    out: str
    holder: str | None


@dataclass(frozen=True)
class Started:
    """The run holds OUT's lock and goes through ``sessions`` bundles."""

    out: str
    sessions: int


@dataclass(frozen=True)
class FramesWritten:
    """``frames`` of session ``session``'s ``n_frames`` (None when unknown) read and handed to
    its writers, ``bytes`` of ``total_bytes`` of frame data, ``seconds`` after its read began."""

    session: str
    frames: int
    n_frames: int | None
    bytes: int
    total_bytes: int | None
    seconds: float

    @property
    def rate(self) -> float:
        """Frames per second so far."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None when unknown)."""
        if self.n_frames is None or self.rate <= 0:
            return None
        return max(0, self.n_frames - self.frames) / self.rate


@dataclass(frozen=True)
class SessionDone:
    """A session's outcome (its catalog ``entry``): ``done`` of ``total`` sessions so far."""

    entry: CatalogEntry
    done: int
    total: int


_FIELDS = tuple(f.name for f in fields(FramesWritten))

ProgressEvent = WaitingForLock | Started | FramesWritten | SessionDone
ProgressFn = Callable[[ProgressEvent], None]

_LISTENERS: dict[str, ProgressFn] = {}  # run id -> its callback, for tasks in this process
_lock = threading.Lock()


def guarded(fn: ProgressFn) -> ProgressFn:
    """``fn``, its exceptions ignored (progress never stops a run)."""

    def call(event: ProgressEvent) -> None:
        with contextlib.suppress(Exception):
            fn(event)

    return call


def emitter(run_id: str | None) -> Callable[[FramesWritten], None] | None:
    """Where a session task of run ``run_id`` sends its ``FramesWritten`` (None: nowhere).
    Call it on the task's thread (a Dask worker is found from there)."""
    if run_id is None:
        return None
    local = _LISTENERS.get(run_id)
    if local is not None:
        return local
    if "distributed" not in sys.modules:  # not in a Dask worker
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:
        return None

    def send(event: FramesWritten) -> None:
        with contextlib.suppress(Exception):
            worker.log_event(TOPIC, {"run": run_id, **asdict(event)})

    return send


@contextlib.contextmanager
def listening(run_id: str, sched: Scheduler, fn: ProgressFn | None) -> Iterator[None]:
    """While in the block, run ``run_id``'s tasks' events reach ``fn``: directly from tasks in
    this process, through the Dask client from worker processes."""
    if fn is None:
        yield
        return
    safe = guarded(fn)
    with _lock:
        _LISTENERS[run_id] = safe

    def from_dask(event: tuple[float, Any]) -> None:
        msg = event[1]  # (Dask adds a "worker" key)
        if msg.get("run") == run_id:
            with contextlib.suppress(Exception):
                safe(FramesWritten(**{k: msg[k] for k in _FIELDS}))

    unsubscribe: Callable[[], None] = lambda: None  # noqa: E731
    with contextlib.suppress(Exception):  # (a scheduler that failed says so where it is used)
        unsubscribe = sched.subscribe(TOPIC, from_dask)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            unsubscribe()
        with _lock:
            _LISTENERS.pop(run_id, None)


@contextlib.contextmanager
def hold_reporting(
    out: Output,
    run_id: str,
    *,
    wait: bool,
    progress: ProgressFn | None,
    allow_other_files: bool = False,
    checked: bool = False,
) -> Iterator[OutputRun]:
    """``hold_output``, and when it must wait for another run's lock, a ``WaitingForLock``
    first (saying whose); then ``Started`` is the caller's."""
    stack = contextlib.ExitStack()
    try:
        run = stack.enter_context(
            hold_output(
                out, run_id, wait=False, allow_other_files=allow_other_files, checked=checked
            )
        )
    except LockedError:
        if not wait:
            raise
        if progress is not None:
            holder: str | None = None
            with contextlib.suppress(Exception):
                holder = lock_holder(out)
            guarded(progress)(WaitingForLock(out.url, holder))
        run = stack.enter_context(
            hold_output(
                out, run_id, wait=True, allow_other_files=allow_other_files, checked=checked
            )
        )
    with stack:
        yield run


class FrameCounter:
    """A ``ReadSink`` (after the writers) that counts the frames of session ``session`` they
    took and sends a ``FramesWritten`` at most every ``EVERY_SECONDS``, and at the end."""

    block_frames = 1  # (the first sink sizes the blocks; never this one)

    def __init__(self, session: str, send: Callable[[FramesWritten], None]) -> None:
        self.session = session
        self.send = send
        self.done = 0
        self.bytes = 0
        self.n_frames: int | None = None
        self.frame_bytes: int | None = None
        self.began = time.monotonic()
        self.last = 0.0

    def _event(self) -> FramesWritten:
        total = None
        if self.n_frames is not None and self.frame_bytes is not None:
            total = self.n_frames * self.frame_bytes
        return FramesWritten(
            self.session,
            self.done,
            self.n_frames,
            self.bytes,
            total,
            time.monotonic() - self.began,
        )

    def start(self, timestamps: npt.NDArray[np.float32] | None, concurrent: bool) -> None:
        self.n_frames = None if timestamps is None else len(timestamps)
        self.began = self.last = time.monotonic()
        self.send(self._event())

    def frames(self, start: int, block: np.ndarray, lit: npt.NDArray[np.bool_]) -> None:
        self.frames_done(len(block), block.nbytes)

    def frames_done(self, n: int, nbytes: int) -> None:
        self.done += n
        self.bytes += nbytes
        if n and self.frame_bytes is None:
            self.frame_bytes = nbytes // n
        now = time.monotonic()
        if now - self.last >= EVERY_SECONDS:
            self.last = now
            self.send(self._event())

    def rows(self, block: RowBlock) -> None:
        pass

    def end(self, part: str) -> None:
        if part == "frames":
            self.send(self._event())
