"""The digest of every output file, taken as it is written: ``FileDigest`` (a path relative to
OUT, its size and sha256), recorded in the catalog's ``files`` column at commit and checked by
``verify`` (docs/output-layout.md, "catalog.parquet").

Digests are taken from the bytes on their way out, never by reading an object store back: a
Zarr object's when it is put (``storage.Keys``), a Parquet file's through ``HashingWriter`` when
it goes to an object store, or from the local staging file right after it is closed
(``hash_local``: the page cache's copy, before anything else could touch it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["FileDigest", "HashingWriter", "hash_local", "hash_stream"]

_READ = 1 << 20


@dataclass(frozen=True, slots=True, order=True)
class FileDigest:
    """One output file: ``path`` relative to OUT (``/`` separators), its ``bytes`` and the hex
    ``sha256`` of its content."""

    path: str
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileDigest:
        return cls(str(d["path"]), int(d["bytes"]), str(d["sha256"]))


def hash_stream(f: IO[bytes]) -> tuple[int, str]:
    """(bytes, sha256) of what ``f`` holds from where it is to its end."""
    h = hashlib.sha256()
    n = 0
    while chunk := f.read(_READ):
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def hash_local(path: str) -> tuple[int, str]:
    """(bytes, sha256) of a local file."""
    with open(path, "rb") as f:
        return hash_stream(f)


class HashingWriter:
    """A file opened for writing (``inner``) that hashes every byte written through it; what a
    Parquet writer writes to an object store goes through one, so its digest needs no read
    back. ``digest()``: of what was written so far. ``close``: whether closing it closes
    ``inner``."""

    def __init__(self, inner: IO[bytes], close: bool = True) -> None:
        self.inner = inner
        self._close = close
        self._sha = hashlib.sha256()
        self._count = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._sha.update(view)
        self._count += len(view)
        self.inner.write(view)
        return len(view)

    def tell(self) -> int:
        return self._count

    def flush(self) -> None:
        self.inner.flush()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(self.inner.closed)

    def close(self) -> None:
        if self._close:
            self.inner.close()

    def digest(self) -> tuple[int, str]:
        """(bytes, sha256) of everything written."""
        return self._count, self._sha.hexdigest()
