"""How many threads one unit of work may keep busy.

A session converted in this process (``--scheduler sync``, or the library called directly) has
the machine to itself: its frames are hashed and encoded on a thread per core while its rows are
parsed. On a Dask worker the worker is the unit of parallelism (one core each for local
``processes``), so a session there runs on the worker's thread alone, and N workers are N times
one.
"""

from __future__ import annotations

import os
import sys

__all__ = ["available_cores", "task_threads"]


def available_cores() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def task_threads() -> int:
    """Threads the calling task may use: 1 on a Dask worker, else every core."""
    if "distributed" in sys.modules:  # (never imported just to ask)
        from distributed import get_worker

        try:
            get_worker()
        except ValueError:
            pass
        else:
            return 1
    return available_cores()
