"""Named steps of a run, where a crash test can freeze it to kill it there.

A run passes these phases (``PHASES``): a session task *reading* its bundle and writing its
*staging*; the driver *renaming* staged outputs into place, writing the *catalog*, and, with
shards, the *shard-merge* and the *index*. ``reached(phase)`` does nothing unless the
environment asks for it: with ``REACTURE_PAUSE_AT=<phase>`` (or ``<phase>:<detail>``, e.g. a
session name) the process that reaches that phase writes a line to the file
``REACTURE_PHASE_FILE`` and stops itself (SIGSTOP), so that a test can kill the run exactly
there, knowing which phase it hit; with ``REACTURE_PAUSE_HOW=sleep`` only the thread that got
there sleeps, for good or (``sleep:2.5``) for that many seconds: a session task held in flight
while its driver goes on hearing signals. Only
the first to reach the phase pauses; meant for runs in a subprocess, never set in a process
that must go on.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Final

__all__ = ["PHASES", "reached"]

PHASES: Final = ("reading", "staging", "renaming", "catalog", "shard-merge", "index")
_PAUSE_AT: Final = "REACTURE_PAUSE_AT"
_PHASE_FILE: Final = "REACTURE_PHASE_FILE"


def reached(phase: str, detail: str = "") -> None:
    """Mark that this process reached ``phase`` (``detail``: which session, which file)."""
    wanted = os.environ.get(_PAUSE_AT)
    if not wanted:
        return
    name, _, want_detail = wanted.partition(":")
    if name != phase or (want_detail and want_detail != detail):
        return
    marker = os.environ.get(_PHASE_FILE)
    if marker:
        try:  # O_EXCL: the first process to get here is the one that stops
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as f:
            f.write(f"{phase} {os.getpid()} {detail}\n")
    how, _, seconds = os.environ.get("REACTURE_PAUSE_HOW", "stop").partition(":")
    if how == "sleep":  # this thread only: for ``seconds``, else for good
        if seconds:
            time.sleep(float(seconds))
            return
        while True:
            time.sleep(3600)
    # Sent to this thread, not the process: a process-directed stop may be taken by another
    # thread first, and this one would run on for a while (seen under load: a session's
    # writer opened before the process stopped).
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
