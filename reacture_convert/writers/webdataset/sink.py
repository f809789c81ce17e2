"""Hashed writes: ``HashedFile``, a file written forward in large blocks, hashed on the way,
with the writing and hashing of one block overlapped with the filling of the next (the reading
counterpart is ``ingest.files.HashingReader``).

Callers ``write`` pieces (tar headers, JSON, pictures). Small ones are gathered into a buffer;
large ones (a frame's pixels) are kept by reference, not copied: the caller must not change
them afterwards. Once ``BLOCK_BYTES`` are gathered, the block's pieces go to two background
threads, one that writes them (``os.writev`` on a local file: the kernel's copy is the only
one) and one that feeds them to sha256 (both release the GIL), while the caller fills the next.
``close`` waits for the last block, optionally fsyncs (a local file), and returns the size and
sha256.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from reacture_convert.output.lease import is_s3
from reacture_convert.output.storage import Output

__all__ = ["BLOCK_BYTES", "HashedFile"]

BLOCK_BYTES: Final = 8 << 20
_BY_REFERENCE: Final = 16 << 10  # pieces from this size are kept, not copied


class HashedFile:
    """A new file at ``path`` on ``out.fs`` (see the module doc)."""

    def __init__(self, out: Output, path: str) -> None:
        self.path = path
        self.out = out
        self.file = out.create(path)
        self.hash = hashlib.sha256()
        self.count = 0
        self._pieces: list[memoryview] = []
        self._small = bytearray()  # small pieces, gathered
        self._size = 0  # bytes in the block being filled
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="wds-write")
        self._pending: tuple[Future[None], ...] = ()

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        n = len(view)
        if n >= _BY_REFERENCE:
            self._take_small()
            self._pieces.append(view)
        else:
            self._small += view
        self._size += n
        if self._size >= BLOCK_BYTES:
            self._hand_off()

    def _take_small(self) -> None:
        if self._small:
            self._pieces.append(memoryview(self._small))
            self._small = bytearray()

    def _drain(self, pieces: list[memoryview]) -> None:
        self.file.write_pieces(pieces)

    def _hash(self, pieces: list[memoryview]) -> None:
        for piece in pieces:
            self.hash.update(piece)

    def _wait(self) -> None:
        pending, self._pending = self._pending, ()
        for job in pending:
            job.result()

    def _hand_off(self) -> None:
        self._take_small()
        self._wait()  # one block in flight at a time: the hash takes blocks in order
        pieces, self._pieces = self._pieces, []
        self.count += self._size
        self._size = 0
        self._pending = (
            self._pool.submit(self._drain, pieces),
            self._pool.submit(self._hash, pieces),
        )

    def close(self, fsync: bool = False) -> tuple[int, str]:
        """Write what is left; return ``(bytes written, sha256 hex)``. ``fsync``: make a
        local file durable before returning."""
        try:
            if self._size:
                self._hand_off()
            self._wait()
            if fsync:
                self.file.sync()
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
            self.file.abort()
            self._pool.shutdown()
            # (on S3 an aborted upload never appears, and what was at its name stays)
            if not is_s3(self.out) and self.out.fs.exists(self.path):
                self.out.fs.rm(self.path)
