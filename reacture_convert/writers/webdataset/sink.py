"""Hashed I/O. ``HashedFile``: a file written forward in large blocks, hashed on the way, with the
writing and hashing of one block overlapped with the filling of the next. ``HashingReader``: a
forward reader that hashes what passes through it.

Callers ``write`` small pieces (tar headers, JSON, pictures); they are gathered into a buffer of
``BLOCK_BYTES`` and each full buffer goes to two background threads, one that writes it and one
that feeds it to sha256 (both release the GIL), while the caller fills the other buffer.
``close`` waits for the last block, optionally fsyncs (a local file), and returns the size and
sha256.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Final

from reacture_convert.output.storage import Output

__all__ = ["BLOCK_BYTES", "HashedFile", "HashingReader"]

BLOCK_BYTES: Final = 8 << 20


class HashedFile:
    """A new file at ``path`` on ``out.fs`` (see the module doc)."""

    def __init__(self, out: Output, path: str) -> None:
        self.path = path
        self.local = out.is_local
        self.fs = out.fs
        self.file: IO[bytes] = (
            open(path, "wb", buffering=0) if self.local else out.fs.open(path, "wb")
        )
        self.hash = hashlib.sha256()
        self.count = 0
        self._buf = bytearray()
        self._spare = bytearray()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="wds-write")
        self._pending: tuple[Future[None], ...] = ()

    def write(self, data: Any) -> None:
        self._buf += data
        if len(self._buf) >= BLOCK_BYTES:
            self._hand_off()

    def _drain(self, block: bytearray) -> None:
        view = memoryview(block)
        while view:
            done = self.file.write(view)
            view = view[done if done is not None else len(view) :]

    def _wait(self) -> None:
        pending, self._pending = self._pending, ()
        for job in pending:
            job.result()

    def _hand_off(self) -> None:
        self._wait()  # the spare buffer is free again once its block is written
        block, self._buf = self._buf, self._spare
        self._buf.clear()
        self._spare = block
        self.count += len(block)
        self._pending = (
            self._pool.submit(self._drain, block),
            self._pool.submit(self.hash.update, block),
        )

    def close(self, fsync: bool = False) -> tuple[int, str]:
        """Write what is left; return ``(bytes written, sha256 hex)``. ``fsync``: make a
        local file durable before returning."""
        try:
            if self._buf:
                self._hand_off()
            self._wait()
            if fsync and self.local:
                os.fsync(self.file.fileno())
        finally:
            self.file.close()
            self._pool.shutdown()
        return self.count, self.hash.hexdigest()

    def abort(self) -> None:
        """Give up: stop writing and delete the partial file."""
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - the file is being dropped anyway
            pass
        finally:
            self.file.close()
            self._pool.shutdown()
            if self.fs.exists(self.path):
                self.fs.rm(self.path)


class HashingReader(io.RawIOBase):
    """Reads ``source`` forward and keeps the sha256 and byte count of what was read."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.source.read(len(view))
        view[: len(data)] = data
        self.hash.update(data)
        self.count += len(data)
        return len(data)
