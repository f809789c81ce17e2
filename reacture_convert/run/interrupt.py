"""Stopping a run on SIGINT/SIGTERM, and what an interrupted run leaves for the next one.

``on_signals(handler)`` routes SIGINT and SIGTERM to ``handler`` while a run's driver loop runs
(main thread only; elsewhere it does nothing, and the caller's own stop Event is the way in).
The handler only records the request (an Event, a count): the driver loop, which waits for
results in short slices, acts on it. A terminal's Ctrl-C reaches the whole process group; the
scheduler keeps it away from local workers (``run.scheduler``), so the driver alone decides.

An interrupted batch leaves a note in OUT (``INTERRUPTED``): the next run that takes OUT's lock
reads it to say that it resumes (``Resumed``), and removes it once it has finished.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from reacture_convert.output.layout import INTERRUPTED
from reacture_convert.output.storage import Output

__all__ = ["Resumed", "forget_interrupted", "mark_interrupted", "on_signals", "read_interrupted"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler(signum, frame)`` inside the block (main thread only;
    the previous handlers are restored after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass(frozen=True)
class Resumed:
    """An interrupted run's note, read by the next run: its id, and the sessions committed in
    OUT (live catalog rows) when this run started."""

    run_id: str
    converted: int

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "converted_before": self.converted}


def mark_interrupted(out: Output, run_id: str) -> None:
    """Leave the note of an interrupted run (best effort: only a message depends on it)."""
    with contextlib.suppress(OSError):
        out.write_bytes_atomic(INTERRUPTED, json.dumps({"run_id": run_id}).encode())


def read_interrupted(out: Output) -> str | None:
    """The interrupted run's id, when OUT holds its note."""
    try:
        return str(json.loads(out.read_bytes(out.path(INTERRUPTED)))["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_interrupted(out: Output) -> None:
    """A run that finished: the note is done with."""
    with contextlib.suppress(OSError):
        if out.fs.exists(out.path(INTERRUPTED)):
            out.fs.rm(out.path(INTERRUPTED))
