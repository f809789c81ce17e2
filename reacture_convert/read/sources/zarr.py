"""The sample source over the Zarr sessions: ``ZarrSource``, NumPy in, NumPy out.

``ZarrSource(OUT, options)`` decides once which frames are samples (``ReadOptions``: sessions
and split, blank skipping, windows; ``windows.judge`` over each session's alignment table) and
gathers every session's labels into one table. Then:

- ``source[i]`` is sample i as a dict of NumPy values (``len(source)`` samples, sessions in name
  order, frames in order): the random-access protocol of ``grain`` and similar loaders;
- ``source.fetch(ids)`` builds a whole batch at once (``batch``): the frames it needs are read
  chunk by chunk (each chunk decoded once per batch, and kept in a small per-process cache) and
  copied once into the batch, the labels gathered with one ``np.take`` per key;
- ``source.epoch_batches(...)`` / ``iter_batches(...)`` plan an epoch (``plan``: chunk-aware
  shuffling, ranks, batches) and read it.

The PyTorch and TensorFlow readers are thin adapters over this class (and ``sources.shards`` for
the WebDataset shards), both behind ``sources.base.SampleSource``. Nothing here holds an open
store across ``fork`` or pickling: each process opens its own on first use.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.batch import (
    Batch,
    LabelTable,
    MakeBuffers,
    batch_spec,
    gather_labels,
    label_table,
    numpy_buffers,
    put_frame,
    unbatch,
)
from reacture_convert.read.cache import ByteCache, CacheOptions
from reacture_convert.read.chunks import ChunkAhead, ChunkReader, read_chunks
from reacture_convert.read.options import (
    SHUFFLE_WINDOW,
    Layout,
    ReadOptions,
    ShuffleOptions,
)
from reacture_convert.read.plan import epoch_order, rank_batches
from reacture_convert.read.session import OutLike, StoredDataset, open_stored
from reacture_convert.read.sources.base import log_skips
from reacture_convert.read.splits import select_sessions
from reacture_convert.read.windows import Verdict, judge

__all__ = [
    "DEFAULT_CACHE_CHUNKS",
    "ZarrSource",
    "no_zarr_error",
]

DEFAULT_CACHE_CHUNKS: Final = SHUFFLE_WINDOW + 2
"""Decoded chunks a process keeps (a chunk is 64 frames, 3 MiB, by default)."""

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Part:
    """What a ZarrSource keeps of one session: picklable values only."""

    name: str
    flip: bool  # flip=True asked for and the session is stored bottom-up
    chunk: int  # frames per Zarr chunk (the unit of a read)
    first_chunk: int  # the session's first chunk's number among all sessions' chunks
    identity: str  # the session's content, from its catalog row (the cache's keys)


def no_zarr_error(ds: StoredDataset[Any]) -> OutputError:
    if ds.wds_index is not None:
        return OutputError(
            f"{ds.out.url}: this dataset has no Zarr sessions: convert with --format zarr "
            "or use source='wds'"
        )
    return OutputError(
        f"{ds.out.url}: no converted sessions here (the catalog lists none): convert "
        "bundles into it first"
    )


class ZarrSource:
    """The samples of a converted dataset's Zarr sessions (see the module doc).

    ``dataset``: an opened dataset (``read.session.StoredDataset``) or its location (with
    ``storage_options``); ``options``: which samples and how; ``shuffling``: how a shuffled
    epoch mixes; ``layout``: ``"HWC"`` (NumPy, TensorFlow) or ``"CHW"`` (PyTorch) frames;
    ``cache_chunks``: decoded chunks kept per process; ``cache``: a local disk cache of the
    chunks' objects (``read.cache``), for a dataset in an object store.

    ``skipped_blank`` and ``dropped_windows`` count what the options left out; ``total_frames``
    is the frames of the sessions read. Not thread-safe: use processes."""

    def __init__(
        self,
        dataset: StoredDataset[Any] | OutLike,
        options: ReadOptions | None = None,
        *,
        storage_options: Any = None,
        layout: Layout = "HWC",
        shuffling: ShuffleOptions | None = None,
        cache_chunks: int = DEFAULT_CACHE_CHUNKS,
        cache: CacheOptions | None = None,
    ) -> None:
        options = options or ReadOptions()
        ds = open_stored(dataset, storage_options)
        if not ds.sessions:
            raise no_zarr_error(ds)
        if cache_chunks < 1:
            raise ConfigError(f"cache_chunks={cache_chunks}: keep at least 1 decoded chunk")
        names = select_sessions(ds.sessions, options, ds.out.url)
        self.out: Output = ds.out
        self.options = options
        self.layout: Layout = layout
        self.shuffling = shuffling or ShuffleOptions()
        self.cache_chunks = cache_chunks
        self.cache = cache
        if cache is not None:
            ByteCache(cache)  # a folder that cannot be made is refused now, not in a worker
        identity = {
            e.session: f"{e.hashes.get('frames.npy')}|{e.converted_at}|{e.run_id}"
            for e in ds.catalog
            if e.session
        }
        parts: list[_Part] = []
        tables: list[LabelTable] = []
        verdicts: list[Verdict] = []
        first_chunk = 0
        for name in names:
            session = ds[name]
            labels = session.labels
            chunk = int(session.frames.chunks[0])
            flip = options.flip and session.orientation == "bottom-up"
            parts.append(_Part(name, flip, chunk, first_chunk, identity.get(name, "")))
            first_chunk += -(-session.n_frames // chunk)
            tables.append(label_table(labels))
            verdicts.append(
                judge(
                    labels.frame_index,
                    labels.timestamp_ms,
                    session.blank[labels.frame_index],
                    options,
                )
            )
        self._parts = tuple(parts)
        sizes = [t["frame_index"].shape[0] for t in tables]
        self._label_session = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
        self.labels: LabelTable = {
            key: np.concatenate([t[key] for t in tables]) if tables else np.empty(0)
            for key in (tables[0] if tables else {})
        }
        keep = np.concatenate([v.keep for v in verdicts]) if verdicts else np.zeros(0, bool)
        self._rows: I64 = np.flatnonzero(keep).astype(np.int64)
        self.total_frames = int(sum(sizes))
        self.skipped_blank = int(sum(int(v.skipped.sum()) for v in verdicts))
        self.dropped_windows = int(sum(int(v.dropped.sum()) for v in verdicts))
        log_skips(
            self.out.url, options, self.skipped_blank, self.dropped_windows, self.total_frames
        )
        self._local: _Local | None = None
        self._ahead_keys: I64 | None = None  # read_ahead's: each sample's chunks
        self._ahead_starts: I64 = np.zeros(0, dtype=np.int64)  # each session's first chunk

    # --- what there is ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._rows.shape[0])

    @property
    def sessions(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._parts)

    def locate(self, index: int) -> tuple[str, int]:
        """``(session, frame_index)`` of sample ``index`` (negative counts back)."""
        row = int(self._rows[self._check(np.array([index]))[0]])
        return self._parts[int(self._label_session[row])].name, int(self.labels["frame_index"][row])

    def chunk_of(self) -> I64:
        """Each sample's chunk (a number over all sessions' chunks): what shuffling groups."""
        rows = self._rows
        sessions = self._label_session[rows]
        first = np.array([p.first_chunk for p in self._parts], dtype=np.int64)
        size = np.array([p.chunk for p in self._parts], dtype=np.int64)
        frame: I64 = self.labels["frame_index"][rows]
        chunk: I64 = first[sessions] + frame // size[sessions]
        return chunk

    # --- reading ----------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index`` as NumPy values (the ``[j]`` of a one-sample batch)."""
        return next(unbatch(self.fetch([index])))

    def fetch(
        self, ids: Sequence[int] | npt.NDArray[np.integer], buffers: MakeBuffers = numpy_buffers
    ) -> Batch:
        """The batch of samples ``ids`` (``batch`` describes it), written into ``buffers``."""
        picked = self._check(np.asarray(ids, dtype=np.int64).reshape(-1))
        rows = self._rows[picked]
        sessions = self._label_session[rows]
        k = self.options.history
        out = buffers(batch_spec(rows.shape[0], self.options, self.layout))
        frames = out("frame")
        # every frame the batch needs: sample j's frames f - k .. f, read chunk by chunk
        j = np.repeat(np.arange(rows.shape[0]), k + 1)
        t = np.tile(np.arange(k + 1), rows.shape[0])
        s = sessions[j]
        f = self.labels["frame_index"][rows][j] - k + t
        size = np.array([p.chunk for p in self._parts], dtype=np.int64)[s]
        # chunk by chunk, in the order the batch first needs them: a batch that spans two
        # shuffle windows leaves the later window's chunks last in the cache
        _, first, which = np.unique(
            np.stack([s, f // size]), axis=1, return_index=True, return_inverse=True
        )
        rank = np.empty(first.shape[0], dtype=np.int64)
        rank[np.argsort(first)] = np.arange(first.shape[0])
        order = np.lexsort((f, rank[which.reshape(-1)]))
        local = self._state()
        # the chunks, first needed first, requested together (as many as the cache holds)
        needed = np.stack([s, f // size])[:, np.sort(first)[: self.cache_chunks]]
        local.prefetch(self, [(int(a), int(b)) for a, b in needed.T])
        for jj, tt, ss, ff, cs in zip(
            j[order].tolist(),
            t[order].tolist(),
            s[order].tolist(),
            f[order].tolist(),
            size[order].tolist(),
            strict=True,
        ):
            block = local.chunk(self, ss, ff // cs)
            put_frame(
                frames[jj, tt] if k else frames[jj],
                block[ff % cs],
                self._parts[ss].flip,
                self.layout,
            )
        names = [self._parts[x].name for x in sessions.tolist()]
        batch = {"frame": frames}
        batch.update(gather_labels(self.labels, rows, self.options.horizon, names, out))
        return batch

    @property
    def remote(self) -> bool:
        """The dataset is read over the network (read ahead), not from local disk."""
        return not self.out.is_local

    def read_ahead(self, ids: Sequence[int] | npt.NDArray[np.integer]) -> None:
        """Start fetching what samples ``ids`` (this batch's and the next ones', in order)
        need from an object store (``chunks.ChunkAhead``); nothing on local disk."""
        if not self.remote:
            return
        picked = self._check(np.asarray(ids, dtype=np.int64).reshape(-1))
        if self._ahead_keys is None:  # each sample's chunks (first and last, when they differ)
            rows = self._rows
            s = self._label_session[rows]
            size = np.array([p.chunk for p in self._parts], dtype=np.int64)[s]
            frame: I64 = self.labels["frame_index"][rows]
            first = np.array([p.first_chunk for p in self._parts], dtype=np.int64)[s]
            low = first + np.maximum(frame - self.options.history, 0) // size
            high: I64 = first + frame // size
            both: I64 = high[:, None] if (low == high).all() else np.stack([low, high], 1)
            self._ahead_keys = both
            self._ahead_starts = np.array([p.first_chunk for p in self._parts], dtype=np.int64)
        chunks = self._ahead_keys[picked].reshape(-1)
        _, at = np.unique(chunks, return_index=True)
        chunks = chunks[np.sort(at)]  # first needed first
        starts = self._ahead_starts
        part = np.searchsorted(starts, chunks, side="right") - 1
        keys = list(zip(part.tolist(), (chunks - starts[part]).tolist(), strict=True))
        self._state().read_ahead(self, keys)

    def epoch_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        workers: int = 1,
        window: int | None = None,
    ) -> list[I64]:
        """The sample ids of each batch of this rank's share of an epoch (``plan``), ordered
        for ``workers`` DataLoader workers taking batches in turn; ``window`` chunks mixed
        (default ``shuffling.window``)."""
        chunk_of = self.chunk_of()
        mix = self.shuffling.window if window is None else window
        order = epoch_order(chunk_of, shuffle, seed, epoch, mix)
        return rank_batches(
            order,
            batch_size,
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            workers=workers,
        )

    def iter_batches(self, batch_size: int, **plan: Any) -> Iterator[Batch]:
        """Read the batches of ``epoch_batches(batch_size, **plan)`` one after another."""
        for ids in self.epoch_batches(batch_size, **plan):
            yield self.fetch(ids)

    # --- per process ------------------------------------------------------------------------------
    def _check(self, ids: I64) -> I64:
        n = len(self)
        if ids.size and (ids.min() < -n or ids.max() >= n):
            bad = ids[(ids < -n) | (ids >= n)][0]
            raise IndexError(f"index {int(bad)} out of range for {n} samples")
        return ids % n if n else ids

    def _state(self) -> _Local:
        """This process's open arrays and chunk cache (opened anew after fork or unpickling)."""
        if self._local is None or self._local.pid != os.getpid():
            self._local = _Local(os.getpid())
        return self._local

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_local"] = None  # stores and caches stay in the process that opened them
        return state


class _Local:
    """Per-process state of a ZarrSource: chunk readers, an LRU of decoded chunks and the disk
    cache."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.readers: dict[int, ChunkReader] = {}
        self.cache: OrderedDict[tuple[int, int], npt.NDArray[np.uint8]] = OrderedDict()
        self.disk: ByteCache | None = None
        self.ahead: ChunkAhead | None = None

    def reader(self, source: ZarrSource, session: int) -> ChunkReader:
        reader = self.readers.get(session)
        if reader is None:
            part = source._parts[session]
            reader = self.readers[session] = ChunkReader(source.out, part.name, part.identity)
        if source.cache is not None and self.disk is None:
            self.disk = ByteCache(source.cache)
        return reader

    def read_ahead(self, source: ZarrSource, keys: Sequence[tuple[int, int]]) -> None:
        """Request the chunks ``keys`` not held yet, ahead of the batches that need them."""
        wanted = [(self.reader(source, s), c) for s, c in keys if (s, c) not in self.cache]
        if self.ahead is None:
            self.ahead = ChunkAhead(self.disk)
        self.ahead.want(wanted)

    def prefetch(self, source: ZarrSource, keys: Sequence[tuple[int, int]]) -> None:
        """Read the chunks ``keys`` (``(session, chunk)``) not held yet, together."""
        missing = [key for key in keys if key not in self.cache]
        if not missing:
            return
        wanted = [(self.reader(source, s), c) for s, c in missing]
        for key, block in zip(missing, read_chunks(wanted, self.disk, self.ahead), strict=True):
            self._keep(source, key, block)

    def chunk(self, source: ZarrSource, session: int, chunk: int) -> npt.NDArray[np.uint8]:
        key = (session, chunk)
        block = self.cache.get(key)
        if block is not None:
            self.cache.move_to_end(key)
            return block
        (block,) = read_chunks([(self.reader(source, session), chunk)], self.disk, self.ahead)
        return self._keep(source, key, block)

    def _keep(
        self, source: ZarrSource, key: tuple[int, int], block: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.uint8]:
        self.cache[key] = block
        while len(self.cache) > source.cache_chunks:
            self.cache.popitem(last=False)
        return block
