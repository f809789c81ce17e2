"""Set-up of a local Dask worker process as it starts (a Dask preload: ``dask_setup``).

A terminal's Ctrl-C sends SIGINT to its whole foreground process group, local workers included;
a worker that died of it would take its session with it (and print a traceback), before the
driver had decided anything. Local workers ignore SIGINT: the driver alone acts on it
(``run.interrupt``), and kills the workers when it abandons their sessions.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["dask_setup"]


def dask_setup(worker: Any) -> None:
    """Called by Dask in each worker process as the worker starts: SIGINT ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
