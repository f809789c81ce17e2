"""Whole chunks of a session's frames, the unit the training readers decode.

The converter's default layout (docs/output-layout.md: chunks of 64 frames, the ``bytes`` codec
then ``zstd``, no sharding; ``formats.zarr`` marks which codecs are read so) is read straight
from the store: the chunk's object by its key, one zstd decode. zarr-python reads the same bytes
the same way, but its asynchronous machinery costs about as much again per chunk. Any other
layout (lz4, no compression, the sharding codec, a checksum) is read through zarr-python.

``read_chunks`` reads the chunks a batch needs at once: their objects are requested together
(on an object store, up to ``fetch.FETCH_THREADS`` at a time: a batch drawn from eight chunks waits
for one round trip, not eight) and, with a ``cache.ByteCache``, kept on local disk.

``ChunkAhead`` fetches, from an object store, the chunks of the batches to come while this one is
decoded: a read-ahead of at most ``AHEAD_REQUESTS`` requests in flight and ``AHEAD_BYTES`` held
(a chunk in flight counts at its decoded size), in the order the batches need them. Chunks in the
local cache are not read ahead: a batch reads them from disk when it needs them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.formats.zarr import direct_decoder
from reacture_convert.output.fetch import pool
from reacture_convert.output.layout import zarr_path
from reacture_convert.output.storage import Output
from reacture_convert.read.cache import ByteCache
from reacture_convert.read.session import open_session

__all__ = ["AHEAD_BYTES", "AHEAD_REQUESTS", "ChunkAhead", "ChunkReader", "read_chunks"]

AHEAD_BYTES: Final = 64 << 20  # a process's read-ahead budget (chunk objects held or in flight)
AHEAD_REQUESTS: Final = 8  # read-ahead requests in flight (half the fetch threads)


class ChunkReader:
    """Reads chunk ``c`` of session ``session``'s ``frames``: frames ``c * size`` to
    ``(c + 1) * size`` (fewer in the last chunk), uint8 (n, 128, 128, 3). Open it in the
    process that reads. ``identity`` names the session's content (its catalog row: the
    frames' sha256 and the conversion's time) for the cache's keys."""

    def __init__(self, out: Output, session: str, identity: str = "") -> None:
        frames = open_session(out, session).frames
        self.frames = frames
        self.size = int(frames.chunks[0])
        self.n_frames = int(frames.shape[0])
        meta: Any = frames.metadata
        documents = [codec.to_dict() for codec in meta.codecs]
        self._decoder = None if frames.shards is not None else direct_decoder(documents)
        self.direct = self._decoder is not None
        self._meta = meta
        self.chunk_bytes = self.size * int(np.prod(frames.shape[1:]))  # decoded, at most
        self.fs = out.fs
        self._folder = out.path(zarr_path(session), "frames")
        layout = json.dumps(meta.to_dict(), sort_keys=True, default=str)
        self._identity = f"zarr-chunk|{identity}|{layout}"

    def read(self, c: int) -> npt.NDArray[np.uint8]:
        return read_chunks([(self, c)])[0]

    def path(self, c: int) -> str:
        return f"{self._folder}/{self._meta.encode_chunk_key((c, 0, 0, 0))}"

    def cache_key(self, c: int) -> str:
        return f"{self._identity}|{c}"

    def decode(self, c: int, raw: bytes | None) -> npt.NDArray[np.uint8]:
        """Chunk ``c`` from its object's bytes (None: never written, the fill value)."""
        start = c * self.size
        stop = min(start + self.size, self.n_frames)
        shape = (self.size, *self.frames.shape[1:])
        if raw is None or self._decoder is None:
            return np.full((stop - start, *shape[1:]), self._meta.fill_value, np.uint8)
        block = np.frombuffer(self._decoder.decode(raw), np.uint8).reshape(shape)
        return block[: stop - start]

    def read_zarr(self, c: int) -> npt.NDArray[np.uint8]:
        """Chunk ``c`` through zarr-python (layouts not read directly)."""
        start = c * self.size
        return np.asarray(self.frames[start : min(start + self.size, self.n_frames)], np.uint8)


def _raw(reader: ChunkReader, c: int, cache: ByteCache | None) -> bytes | None:
    """Chunk ``c``'s object (None: never written), from ``cache`` or the store (then cached)."""
    key = reader.cache_key(c)
    raw = cache.get(key) if cache is not None else None
    if raw is None:
        try:
            # from offset 0: a whole-object read makes s3fs ask for the size first (a HEAD
            # request, a second round trip, per chunk)
            raw = reader.fs.cat_file(reader.path(c), start=0)
        except FileNotFoundError:  # a chunk never written holds the fill value
            return None
        if cache is not None:
            cache.put(key, raw)
    return raw


class ChunkAhead:
    """Chunk objects requested before a batch asks for them (module doc). ``want`` lists the
    chunks of this batch and the next ones, in the order they are needed; each request that
    completes makes the next one, within the budget; ``take`` hands one over (its request, to
    wait on). Fetched chunks no longer wanted are dropped."""

    def __init__(
        self,
        cache: ByteCache | None = None,
        budget: int = AHEAD_BYTES,
        requests: int = AHEAD_REQUESTS,
    ) -> None:
        self.cache, self.budget, self.requests = cache, budget, max(1, requests)
        self._jobs: OrderedDict[str, tuple[Future[bytes | None], int]] = OrderedDict()
        self._queue: list[tuple[str, ChunkReader, int]] = []  # wanted, not requested yet
        self._lock = threading.Lock()  # requests complete on the fetch threads
        self._cached: set[str] = set()  # keys seen in the local cache

    def __len__(self) -> int:
        return len(self._jobs)

    def held(self) -> int:
        """Bytes held or reserved: a chunk's object once fetched, its decoded size before."""
        with self._lock:
            return self._usage()[1]

    def _usage(self) -> tuple[int, int]:
        """Requests in flight, bytes held or reserved (under the lock)."""
        jobs = self._jobs.values()
        return sum(not job.done() for job, _ in jobs), sum(_size(job, b) for job, b in jobs)

    def want(self, wanted: Sequence[tuple[ChunkReader, int]]) -> None:
        keys = [(reader.cache_key(c), reader, c) for reader, c in wanted if reader.direct]
        keys = [item for item in keys if not self._on_disk(item[0])]
        still = {key for key, _, _ in keys}
        with self._lock:
            for key in [k for k, (job, _) in self._jobs.items() if k not in still and job.done()]:
                del self._jobs[key]
            self._queue = [item for item in keys if item[0] not in self._jobs]
        self._fill()

    def _on_disk(self, key: str) -> bool:
        """The local cache holds ``key`` (read then without a request, so not ahead)."""
        if self.cache is None:
            return False
        if key not in self._cached and self.cache.path(key).exists():
            self._cached.add(key)
        return key in self._cached

    def take(self, key: str) -> Future[bytes | None] | None:
        """Chunk ``key``'s request (None: not requested; the caller reads it, and it is
        not requested after)."""
        with self._lock:
            job = self._jobs.pop(key, None)
            if job is None:
                self._queue = [item for item in self._queue if item[0] != key]
        return None if job is None else job[0]

    def _fill(self, _done: object = None) -> None:
        """Request queued chunks while fewer than ``requests`` are in flight and the budget
        holds them."""
        made: list[Future[bytes | None]] = []
        with self._lock:
            flying, held = self._usage()
            while self._queue and flying < self.requests:
                key, reader, c = self._queue[0]
                if held + reader.chunk_bytes > self.budget:
                    break
                del self._queue[0]
                if key in self._jobs:
                    continue
                try:
                    job = pool().submit(_raw, reader, c, self.cache)
                except RuntimeError:  # the process is exiting: its fetch threads are gone
                    self._queue.clear()
                    break
                self._jobs[key] = (job, reader.chunk_bytes)
                made.append(job)
                flying, held = flying + 1, held + reader.chunk_bytes
        for job in made:  # outside the lock: a request already done calls back at once
            job.add_done_callback(self._fill)


def _size(job: Future[bytes | None], bound: int) -> int:
    if not job.done():
        return bound
    if job.exception() is not None:
        return 0
    return len(job.result() or b"")


def read_chunks(
    wanted: Sequence[tuple[ChunkReader, int]],
    cache: ByteCache | None = None,
    ahead: ChunkAhead | None = None,
) -> list[npt.NDArray[np.uint8]]:
    """The chunks ``wanted`` (``(reader, chunk)`` pairs), fetched and decoded together on this
    process's fetch threads (zstd and the object store's I/O release the GIL); a chunk that
    ``ahead`` requested already is taken from it."""

    def load(i: int) -> npt.NDArray[np.uint8]:
        reader, c = wanted[i]
        job = ahead.take(reader.cache_key(c)) if ahead is not None else None
        return reader.decode(c, job.result() if job is not None else _raw(reader, c, cache))

    direct = [i for i, (reader, _) in enumerate(wanted) if reader.direct]
    if len(direct) > 1:
        got = dict(zip(direct, pool().map(load, direct), strict=True))
    else:
        got = {i: load(i) for i in direct}
    return [got[i] if i in got else r.read_zarr(c) for i, (r, c) in enumerate(wanted)]
