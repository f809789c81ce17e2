"""Whole chunks of a session's frames, the unit the training readers decode.

The converter's layouts (docs/output-layout.md: chunks of 64 frames, the ``bytes`` codec then
``zstd``; ``formats.zarr`` marks which codecs are read so) are read straight from the store: an
unsharded chunk's object by its key, one zstd decode. zarr-python reads the same bytes the same
way, but its asynchronous machinery costs about as much again per chunk. A sharded array
(``--shard-frames``) as the converter writes it (``formats.zarr.direct_shard_codecs``: the shard's
chunk index at its end, checked by its crc32c) is read the same way: each shard's index once per
reader (the indexes of the shards a read needs requested together), then chunks of one shard
whose bytes are adjacent with one ranged request. Any other layout (lz4, no compression, another
shard index, a checksum) is read through zarr-python.

``read_chunks`` reads the chunks a batch needs at once: their requests go out together (on an
object store, up to ``fetch.FETCH_THREADS`` at a time: a batch drawn from eight chunks waits for
one round trip, not eight) and, with a ``cache.ByteCache``, the chunks are kept on local disk.

``ChunkAhead`` fetches, from an object store, the chunks of the batches to come while this one is
decoded: a read-ahead of at most ``AHEAD_REQUESTS`` requests in flight and ``AHEAD_BYTES`` held
(a chunk in flight counts at its decoded size), in the order the batches need them (adjacent
chunks of a shard in one request, as above). Chunks in the
local cache are not read ahead: a batch reads them from disk when it needs them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import OutputError
from reacture_convert.formats.zarr import SHARD_NO_CHUNK, direct_decoder, direct_shard_codecs
from reacture_convert.output.fetch import pool
from reacture_convert.output.layout import zarr_path
from reacture_convert.output.storage import Output
from reacture_convert.read.cache import ByteCache
from reacture_convert.read.session import open_session

__all__ = [
    "AHEAD_BYTES",
    "AHEAD_REQUESTS",
    "ChunkAhead",
    "ChunkReader",
    "plan_requests",
    "read_chunks",
]

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
        self.sharded = frames.shards is not None
        inner = direct_shard_codecs(documents) if self.sharded else documents
        self._decoder = None if inner is None else direct_decoder(inner)
        self.direct = self._decoder is not None
        # chunks per object: a shard's chunks, or one
        self.per_object = int(frames.shards[0]) // self.size if frames.shards else 1
        self._meta = meta
        self.chunk_bytes = self.size * int(np.prod(frames.shape[1:]))  # decoded, at most
        self.fs = out.fs
        self.local = out.is_local
        self._folder = out.path(zarr_path(session), "frames")
        layout = json.dumps(meta.to_dict(), sort_keys=True, default=str)
        self._identity = f"zarr-chunk|{identity}|{layout}"
        self._indexes: dict[int, npt.NDArray[np.uint64] | None] = {}  # shard -> its chunk index

    def read(self, c: int) -> npt.NDArray[np.uint8]:
        return read_chunks([(self, c)])[0]

    def object_of(self, c: int) -> int:
        """The number of the object that holds chunk ``c`` (its shard, or itself)."""
        return c // self.per_object

    def path(self, c: int) -> str:
        """The object that holds chunk ``c``."""
        return f"{self._folder}/{self._meta.encode_chunk_key((self.object_of(c), 0, 0, 0))}"

    def cache_key(self, c: int) -> str:
        return f"{self._identity}|{c}"

    def decode(self, c: int, raw: bytes | None) -> npt.NDArray[np.uint8]:
        """Chunk ``c`` from its bytes (None: never written, the fill value)."""
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

    # --- shards -----------------------------------------------------------------------------------
    def span(self, c: int) -> tuple[int, int] | None:
        """Chunk ``c``'s bytes ``[start, end)`` in its shard (None: not written, the fill
        value); its shard's index is read first if this reader has not read it yet."""
        index = self._index(self.object_of(c))
        if index is None:
            return None
        offset, count = (int(x) for x in index[c % self.per_object])
        if offset == SHARD_NO_CHUNK and count == SHARD_NO_CHUNK:
            return None
        return offset, offset + count

    def load_indexes(self, chunks: Sequence[int]) -> None:
        """Read the indexes of the shards that hold ``chunks``, those not read yet together."""
        todo = [s for s in dict.fromkeys(map(self.object_of, chunks)) if s not in self._indexes]
        if len(todo) > 1:
            list(pool().map(self._index, todo))
        for s in todo:
            self._index(s)

    def _index(self, shard: int) -> npt.NDArray[np.uint64] | None:
        """Shard ``shard``'s chunk index ((offset, byte count) per chunk), read once."""
        if shard not in self._indexes:  # two threads may both read it: the same bytes
            self._indexes[shard] = self._read_index(shard)
        return self._indexes[shard]

    def _read_index(self, shard: int) -> npt.NDArray[np.uint64] | None:
        import google_crc32c

        size = 16 * self.per_object + 4
        path = self.path(shard * self.per_object)
        try:
            raw = bytes(self.fs.cat_file(path, start=-size))  # the last bytes: one request
        except FileNotFoundError:  # a shard never written holds the fill value
            return None
        damaged = f"{path}: the shard's chunk index"
        if len(raw) != size:
            raise OutputError(
                f"{damaged} takes its last {size} bytes and the shard holds {len(raw)}; "
                "convert the session again (reacture-convert verify names damaged sessions)"
            )
        if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise OutputError(
                f"{damaged} fails its crc32c check: the shard is damaged; convert the "
                "session again (reacture-convert verify names damaged sessions)"
            )
        index = np.frombuffer(raw[:-4], "<u8").reshape(self.per_object, 2).astype(np.uint64)
        written = index[:, 0] != SHARD_NO_CHUNK
        limit = self.chunk_bytes + (self.chunk_bytes >> 6) + 4096  # zstd's worst case, and more
        if (index[written, 1] > limit).any() or (index[written, 0] > 1 << 56).any():
            raise OutputError(
                f"{damaged} gives a chunk more than {limit:,} bytes or an offset past any "
                "shard: the shard is damaged; convert the session again"
            )
        return index

    def fetch(self, chunks: Sequence[int]) -> list[bytes | None]:
        """The bytes of ``chunks``: one chunk, or chunks of one shard whose bytes follow each
        other (``plan_requests``), with one request (none for chunks never written)."""
        if not self.sharded:
            (c,) = chunks
            try:
                # from offset 0: a whole-object read makes s3fs ask for the size first (a HEAD
                # request, a second round trip, per chunk)
                return [self.fs.cat_file(self.path(c), start=0)]
            except FileNotFoundError:  # a chunk never written holds the fill value
                return [None]
        spans = [self.span(c) for c in chunks]
        if spans[0] is None:
            return [None for _ in chunks]
        start, end = spans[0][0], cast(tuple[int, int], spans[-1])[1]
        path = self.path(chunks[0])
        try:
            data = self.fs.cat_file(path, start=start, end=end)
        except FileNotFoundError:
            data = b""
        if len(data) != end - start:
            raise OutputError(
                f"{path}: its chunk index places chunks {chunks[0]}..{chunks[-1]} at bytes "
                f"{start}..{end} and the shard holds {len(data)} of them; convert the session "
                "again (reacture-convert verify names damaged sessions)"
            )
        return [data[a - start : b - start] for a, b in cast(list[tuple[int, int]], spans)]


def plan_requests(
    wanted: Sequence[tuple[ChunkReader, int]], most_bytes: int | None = None
) -> list[list[int]]:
    """The positions of ``wanted`` grouped into requests, in the order they are first needed:
    one chunk each, but chunks of one shard whose bytes follow each other together (at most
    ``most_bytes`` decoded per request: at least one chunk). Reads the shards' indexes."""
    by_object: dict[tuple[int, int], list[int]] = {}
    for i, (reader, c) in enumerate(wanted):
        by_object.setdefault((id(reader), reader.object_of(c)), []).append(i)
    readers = {id(r): r for r, _ in wanted if r.sharded and r.direct}
    for key, each in readers.items():
        each.load_indexes([c for r, c in wanted if id(r) == key])
    groups: list[list[int]] = []
    for (key, _), members in by_object.items():
        sharded = readers.get(key)
        if sharded is None:
            groups.extend([i] for i in members)
            continue
        most = sharded.per_object if most_bytes is None else most_bytes // sharded.chunk_bytes
        spans = {i: sharded.span(wanted[i][1]) for i in members}
        run: list[int] = []
        for i in sorted(members, key=lambda i: spans[i] or (-1, -1)):
            last = spans[run[-1]] if run else None
            here = spans[i]
            if last is not None and here is not None and last[1] == here[0] and len(run) < most:
                run.append(i)
            else:
                if run:
                    groups.append(run)
                run = [i]
        groups.append(run)
    groups.sort(key=min)
    return groups


def _raw(reader: ChunkReader, chunks: Sequence[int], cache: ByteCache | None) -> list[bytes | None]:
    """The bytes of ``chunks`` (one request's: ``plan_requests``) from the store, kept in
    ``cache`` (its callers take what it holds already)."""
    got = reader.fetch(chunks)
    if cache is not None:
        for c, raw in zip(chunks, got, strict=True):
            if raw is not None:
                cache.put(reader.cache_key(c), raw)
    return got


class ChunkAhead:
    """Chunks requested before a batch asks for them (module doc). ``want`` lists the chunks of
    this batch and the next ones, in the order they are needed; each request that completes
    makes the next one, within the budget; ``take`` hands one over (its request, to wait on).
    Fetched chunks no longer wanted are dropped."""

    def __init__(
        self,
        cache: ByteCache | None = None,
        budget: int = AHEAD_BYTES,
        requests: int = AHEAD_REQUESTS,
    ) -> None:
        self.cache, self.budget, self.requests = cache, budget, max(1, requests)
        # chunk key -> its bytes to come, its size reserved, the request that brings them
        self._jobs: OrderedDict[str, tuple[Future[bytes | None], int, Future[Any]]] = OrderedDict()
        self._queue: list[list[_Wanted]] = []  # requests wanted, not made yet
        self._lock = threading.Lock()  # requests complete on the fetch threads
        self._cached: set[str] = set()  # keys seen in the local cache

    def __len__(self) -> int:
        return len(self._jobs)

    def held(self) -> int:
        """Bytes held or reserved: a chunk's bytes once fetched, its decoded size before."""
        with self._lock:
            return self._usage()[1]

    def _usage(self) -> tuple[int, int]:
        """Requests in flight, bytes held or reserved (under the lock)."""
        jobs = self._jobs.values()
        flying = len({id(request) for _, _, request in jobs if not request.done()})
        return flying, sum(_size(job, b) for job, b, _ in jobs)

    def want(self, wanted: Sequence[tuple[ChunkReader, int]]) -> None:
        keys = [(reader.cache_key(c), reader, c) for reader, c in wanted if reader.direct]
        keys = [item for item in keys if not self._on_disk(item[0])]
        still = {key for key, _, _ in keys}
        with self._lock:
            for key in [
                k for k, (job, _, _) in self._jobs.items() if k not in still and job.done()
            ]:
                del self._jobs[key]
            todo = [item for item in keys if item[0] not in self._jobs]
        groups = plan_requests([(reader, c) for _, reader, c in todo], self.budget)
        with self._lock:
            self._queue = [[todo[i] for i in group] for group in groups]
        self._fill()

    def _on_disk(self, key: str) -> bool:
        """The local cache holds ``key`` (read then without a request, so not ahead)."""
        if self.cache is None:
            return False
        if key not in self._cached and self.cache.path(key).exists():
            self._cached.add(key)
        return key in self._cached

    def take(self, key: str) -> Future[bytes | None] | None:
        """Chunk ``key``'s request (None: not requested; the caller reads it, and its request
        is not made after)."""
        with self._lock:
            job = self._jobs.pop(key, None)
            if job is None:
                self._queue = [g for g in self._queue if all(k != key for k, _, _ in g)]
        return None if job is None else job[0]

    def _fill(self, _done: object = None) -> None:
        """Make queued requests while fewer than ``requests`` are in flight and the budget
        holds their chunks."""
        made: list[Future[Any]] = []
        with self._lock:
            flying, held = self._usage()
            while self._queue and flying < self.requests:
                group = self._queue[0]
                reader = group[0][1]
                need = reader.chunk_bytes * len(group)
                if held + need > self.budget:
                    break
                del self._queue[0]
                fresh = [item for item in group if item[0] not in self._jobs]
                if len(fresh) < len(group):  # some were requested meanwhile: the rest alone
                    self._queue[0:0] = [[item] for item in fresh]
                    continue
                try:
                    request = pool().submit(_raw, reader, [c for _, _, c in group], self.cache)
                except RuntimeError:  # the process is exiting: its fetch threads are gone
                    self._queue.clear()
                    break
                for j, (key, _, _) in enumerate(group):
                    job: Future[bytes | None] = Future()
                    self._jobs[key] = (job, reader.chunk_bytes, request)
                    request.add_done_callback(partial(_hand_over, job, j))
                made.append(request)
                flying, held = flying + 1, held + need
        for request in made:  # outside the lock: a request already done calls back at once
            request.add_done_callback(self._fill)


_Wanted = tuple[str, ChunkReader, int]  # a chunk's cache key, its reader, its number


def _hand_over(job: Future[bytes | None], j: int, request: Future[list[bytes | None]]) -> None:
    """Settle ``job`` with chunk ``j`` of the bytes ``request`` brought (or its error)."""
    error = request.exception()
    if error is not None:
        job.set_exception(error)
    else:
        job.set_result(request.result()[j])


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
    ``ahead`` requested already is taken from it, one the local cache holds is read from it
    there too, the others requested as ``plan_requests`` groups them."""
    taken: dict[int, Future[bytes | None] | str] = {}  # requested ahead, or its cache key
    rest: list[int] = []
    for i, (reader, c) in enumerate(wanted):
        if reader.direct:
            key = reader.cache_key(c)
            job = ahead.take(key) if ahead is not None else None
            if job is not None:
                taken[i] = job
            elif cache is not None and cache.holds(key):
                taken[i] = key
            else:
                rest.append(i)
    groups = [[i] for i in taken]
    groups += [[rest[j] for j in g] for g in plan_requests([wanted[i] for i in rest])]

    def load(group: list[int]) -> list[npt.NDArray[np.uint8]]:
        reader = wanted[group[0]][0]
        if group[0] in taken:
            got = taken[group[0]]
            if isinstance(got, str):  # in the cache (evicted since: fetched again)
                kept = cast(ByteCache, cache).get(got)
                raws = [kept] if kept is not None else _raw(reader, [wanted[group[0]][1]], cache)
            else:
                raws = [got.result()]
        else:
            raws = _raw(reader, [wanted[i][1] for i in group], cache)
        return [reader.decode(wanted[i][1], raw) for i, raw in zip(group, raws, strict=True)]

    got: dict[int, npt.NDArray[np.uint8]] = {}
    # the fetch threads only for what comes over the network (requested here or ahead): what
    # is on local disk, the store's or the cache's, is read and decoded on this thread (the
    # threads' hand-offs cost a DataLoader worker more than they give, its siblings keep the
    # other cores busy: ~15 % of a shuffled local epoch)
    remote = any(
        not isinstance(taken[g[0]], str) if g[0] in taken else not wanted[g[0]][0].local
        for g in groups
    )
    loaded = pool().map(load, groups) if len(groups) > 1 and remote else map(load, groups)
    for group, blocks in zip(groups, loaded, strict=True):
        got.update(zip(group, blocks, strict=True))
    return [got[i] if i in got else r.read_zarr(c) for i, (r, c) in enumerate(wanted)]
