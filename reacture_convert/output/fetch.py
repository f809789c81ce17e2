"""Fetching from storage ahead of the reader: the per-process fetch threads (``pool``) and
``ReadAhead``, a file read forward in large blocks of which several are requested at once.

Over an object store every request waits a round trip, so one request at a time leaves the
reader idle most of the time: ``ReadAhead`` keeps ``ahead`` ranged requests of ``block`` bytes
in flight (a read-ahead budget of ``ahead * block`` bytes, 32 MiB by default), and the reader
takes the blocks in order as they arrive. On local disk it is a plain sequential read.
"""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

__all__ = ["AHEAD", "BLOCK", "FETCH_THREADS", "ReadAhead", "pool"]

FETCH_THREADS: Final = 16
BLOCK: Final = 8 << 20
AHEAD: Final = 4

_POOL: dict[int, ThreadPoolExecutor] = {}


def pool() -> ThreadPoolExecutor:
    """This process's fetch threads (made anew in a forked DataLoader worker)."""
    pid = os.getpid()
    if pid not in _POOL:
        _POOL.clear()
        _POOL[pid] = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")
    return _POOL[pid]


class ReadAhead(io.RawIOBase):
    """The ``size`` bytes of ``path`` on ``fs``, read forward with ``ahead`` ranged requests of
    ``block`` bytes in flight (module doc)."""

    def __init__(
        self, fs: Any, path: str, size: int, block: int = BLOCK, ahead: int = AHEAD
    ) -> None:
        super().__init__()
        self.fs, self.path, self.size, self.block = fs, path, size, block
        self._next = 0  # the offset of the next block to request
        self._pending: deque[Future[bytes]] = deque()
        self._ahead = max(1, ahead)
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _request(self) -> None:
        while len(self._pending) < self._ahead and self._next < self.size:
            start, end = self._next, min(self._next + self.block, self.size)
            job = pool().submit(self.fs.cat_file, self.path, start=start, end=end)
            self._pending.append(job)
            self._next = end

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        if not self._view:
            self._request()
            if not self._pending:
                return 0
            data = self._pending.popleft().result()
            self._request()
            self._view = memoryview(data)
        n = min(len(out), len(self._view))
        out[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def close(self) -> None:
        for job in self._pending:
            job.cancel()
        self._pending.clear()
        super().close()
