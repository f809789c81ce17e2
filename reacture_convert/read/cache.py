"""A bounded local cache of what the readers fetch from an object store: ``ByteCache``.

``cache_dir=`` and ``cache_limit=`` (``"20GiB"``) on the readers: Zarr chunks and whole shards
are kept in a folder on local disk, so that a second epoch over a dataset that fits reads
nothing remote. Keys name *content*, not places: a chunk by its session's ``frames.npy`` sha256,
the conversion's time, the array's metadata and the chunk's key; a shard by its sha256 from
``wds/index.json``; a dataset moved to another bucket keeps its cache, and a session converted
again is a new key (never stale bytes).

Shared by every process of a machine (the DataLoader workers, several jobs): an entry is written
to a temporary name and renamed into place (readers see a whole entry or none; two processes
filling the same entry both write the same bytes), a hit touches the entry's time, and when a
process has added a 16th of the limit since it last looked, it takes the folder's lock
(``fcntl.flock``) and removes the least recently used entries until the folder is within 90 %
of the limit. An entry removed while another process reads it stays readable to that process
(POSIX). fsspec's ``filecache`` was the library to use, but it has no size limit and keeps one
metadata file that every process rewrites.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reacture_convert.errors import ConfigError
from reacture_convert.units import parse_size

__all__ = ["ByteCache", "CacheOptions", "cache_options"]

_LOCK = ".lock"


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Where the cache is and how many bytes it may hold."""

    folder: str
    limit: int


def cache_options(
    cache_dir: str | os.PathLike[str] | None, cache_limit: Any = None
) -> CacheOptions | None:
    """The readers' ``cache_dir``/``cache_limit`` arguments (None: no cache). ``cache_limit``
    is a size (``"20GiB"``, bytes); it needs ``cache_dir``."""
    if cache_dir is None:
        if cache_limit is not None:
            raise ConfigError("cache_limit needs cache_dir (the folder to keep the cache in)")
        return None
    limit = parse_size("20GiB" if cache_limit is None else cache_limit)
    return CacheOptions(os.fspath(cache_dir), limit)


class ByteCache:
    """The folder ``options.folder`` as a cache of at most ``options.limit`` bytes (module
    doc). Keys are strings; entries are immutable bytes."""

    def __init__(self, options: CacheOptions) -> None:
        self.root = Path(options.folder)
        self.limit = options.limit
        self._added = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cache_dir {self.root}: cannot create it ({e})") from e

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / digest

    def holds(self, key: str) -> bool:
        """Whether entry ``key`` is there now (it may be evicted before it is read)."""
        return self.path(key).exists()

    def get(self, key: str) -> bytes | None:
        """The entry's bytes, or None when there is none."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        self._touch(path)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` under ``key``."""
        with self._new(key) as f:
            f.write(data)

    def file(self, key: str, fill: Callable[[IO[bytes]], None]) -> Path:
        """The local file of entry ``key``, made by ``fill`` (which writes its bytes to the
        file it is given) when there is none yet. Open it soon: it may be evicted."""
        path = self.path(key)
        if path.exists():
            self._touch(path)
            return path
        with self._new(key) as f:
            fill(f)
        return path

    @contextlib.contextmanager
    def _new(self, key: str) -> Iterator[IO[bytes]]:
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                yield f
                size = f.tell()
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._added += size
        if self._added * 16 >= self.limit:
            self._added = 0
            self.evict()

    @staticmethod
    def _touch(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)

    def size(self) -> int:
        """The bytes the entries hold now."""
        return sum(size for _, size, _ in self._entries())

    def evict(self) -> None:
        """Remove the least recently used entries until the cache holds at most 90 % of its
        limit (nothing when it holds no more than the limit)."""
        with open(self.root / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            if total <= self.limit:
                return
            for _, size, path in entries:
                if total <= self.limit * 0.9:
                    break
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= size

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        """``(last use, bytes, path)`` of every whole entry (temporary files left out)."""
        for folder in os.scandir(self.root):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder.path):
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    yield st.st_mtime, st.st_size, Path(entry.path)
