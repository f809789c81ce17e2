"""PyTorch readers of a converted dataset (needs the ``torch`` extra: ``pip install .[torch]``):
thin adapters over the NumPy sample sources (``sources.ZarrSource``, ``sources.ShardSource``).

- ``to_pytorch_dataloader(OUT, batch_size, shuffle, ...)``: the fast way. Whole batches are
  built at once in the workers, straight into shared memory (frames copied once).
- ``FrameDataset(OUT)``: map-style, random access over the Zarr sessions (or, with
  ``source="wds"``, over the shards). ``ds[i]`` is one sample, ``ds[[i, j, ...]]`` a whole
  batch; with a plain ``DataLoader(ds, batch_size=...)`` its ``__getitems__`` reads each batch
  at once and the default collate stacks it.
  ``ChunkBatchSampler`` is the sampler ``to_pytorch_dataloader`` gives it: chunk-aware
  shuffling, ranks, batches (``plan``).
- ``ShardDataset(OUT)``: iterable over the WebDataset shards, split across DataLoader workers
  and ranks (each sample to exactly one of them per epoch); samples, or batches with
  ``batch_size``.

Every reader hands out the same samples for the same options (``options.ReadOptions``: blank
frames skipped by default, ``history``/``horizon`` windows, splits, ``flip``, ``dtype``). A batch
(``batch`` describes it) holds one tensor per key: ``frame`` (B, 3, 128, 128) CHW uint8 or
float32, ``keys`` (B, 6), ``battery`` (B, 1), ..., ``frame_timestamp_ms`` (B,), ``session``
(a list of str). A sample holds each key's ``[j]``.

``keys``: W, A, S, D and inspect are the periodic row's ``key_presses`` (held keys). destroy,
like every momentary action, is taken from the rows of the frame's *interval* (the rows after
the previous periodic row up to this one: the WebDataset sample's ``events``), because the
periodic ``destroy`` flag is always false. ``frame_timestamp_ms`` (and ``timestamp_ms``, the
same value) is the frame's exact capture time from timestamps.npy.

**Orientation.** Frames are stored bottom-up, as WebGL's ``readPixels`` wrote them: by default
(``flip=False``) ``frame`` holds those bytes unchanged, so row 0 is the *bottom* of the picture.
``flip=True`` hands them out right way up.

Workers. Nothing holds an open file or store across ``fork`` or pickling: each process opens
its own Zarr store (or shard stream) on first use, so ``num_workers > 0`` is safe with the
``fork``, ``forkserver`` and ``spawn`` start methods and with object stores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from reacture_convert.errors import ConfigError
from reacture_convert.read.batch import Batch, Buffers, MakeBuffers, Spec, unbatch
from reacture_convert.read.cache import cache_options
from reacture_convert.read.options import (
    DTYPES,
    OPTION_NAMES,
    SHUFFLE_BUFFER,
    SHUFFLE_WINDOW,
    ReadOptions,
    ShuffleOptions,
    read_options,
)
from reacture_convert.read.plan import deal
from reacture_convert.read.resume import ResumeState, old_streams, remaining_batches
from reacture_convert.read.session import OutLike
from reacture_convert.read.sources import SOURCES, ShardSource, ZarrSource, refuse_empty
from reacture_convert.read.sources.mixed import MixedSource
from reacture_convert.read.sources.shards import Window, consumer_range
from reacture_convert.read.sources.zarr import DEFAULT_CACHE_CHUNKS

__all__ = [
    "DTYPES",
    "ChunkBatchSampler",
    "EpochLoader",
    "FrameDataset",
    "ShardDataset",
    "consumer_range",
    "to_pytorch_dataloader",
]

Sample = dict[str, Any]


class _Packed:
    """The buffers of one batch (``batch.MakeBuffers``): views of a single block of memory, in
    shared memory inside a DataLoader worker (as ``default_collate`` allocates), so the batch
    crosses to the training process as that one block: no copy, one file descriptor."""

    def __init__(self, spec: Spec) -> None:
        self.layout: list[tuple[str, int, tuple[int, ...], torch.dtype]] = []
        size = 0
        for key, (shape, dtype) in spec.items():
            size = -(-size // _ALIGN) * _ALIGN
            self.layout.append((key, size, shape, _TORCH_DTYPES[dtype]))
            size += math.prod(shape) * dtype.itemsize
        if get_worker_info() is None:
            self.block = torch.empty(size, dtype=torch.uint8)
        else:
            empty = torch.empty(0, dtype=torch.uint8)
            storage = empty._typed_storage()._new_shared(size)  # type: ignore[no-untyped-call]
            self.block = empty.new(storage)
        self.tensors = _views(self.block, self.layout)

    def __call__(self, key: str) -> npt.NDArray[Any]:
        return self.tensors[key].numpy()

    def wrap(self, batch: Batch) -> Sample:
        """``batch`` with tensors in place of its arrays (a ``_Batch`` in a worker)."""
        values = {k: self.tensors.get(k, v) for k, v in batch.items()}
        return values if get_worker_info() is None else _Batch(values, self)


class _Batch(dict[str, Any]):
    """A batch (a dict) whose tensors are views of one block: pickled, it is that block, its
    layout and the other values, so it crosses processes as one shared-memory block and
    arrives as a plain dict."""

    def __init__(self, values: dict[str, Any], packed: _Packed) -> None:
        super().__init__(values)
        self._packed = packed

    def __reduce__(self) -> tuple[Any, ...]:
        other = {k: v for k, v in self.items() if not isinstance(v, torch.Tensor)}
        return (_unpack, (self._packed.block, self._packed.layout, list(self), other))


def _views(
    block: torch.Tensor, layout: Sequence[tuple[str, int, tuple[int, ...], torch.dtype]]
) -> dict[str, torch.Tensor]:
    out = {}
    for key, offset, shape, dtype in layout:
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        out[key] = block[offset : offset + nbytes].view(dtype).view(shape)
    return out


def _unpack(
    block: torch.Tensor,
    layout: Sequence[tuple[str, int, tuple[int, ...], torch.dtype]],
    keys: Sequence[str],
    other: dict[str, Any],
) -> dict[str, Any]:
    tensors = _views(block, layout)
    return {k: tensors[k] if k in tensors else other[k] for k in keys}


_ALIGN: Final = 64
_STREAM: Final = "__stream__"  # the stream a shard batch came from (EpochLoader takes it out)
_TORCH_DTYPES: Final = {
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.int64): torch.int64,
}


def _tensor_batch(make: Callable[[MakeBuffers], Batch]) -> Sample:
    """Run ``make`` with packed tensor buffers; its batch with the tensors."""
    made: list[_Packed] = []

    def buffers(spec: Spec) -> Buffers:
        made.append(_Packed(spec))
        return made[-1]

    batch = make(buffers)
    return made[0].wrap(batch)


def _identity(batch: Any) -> Any:
    """The collate function of whole batches (they are built in the dataset)."""
    return batch


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The arguments, else ``torch.distributed``'s when it is initialised, else 0 and 1."""
    if rank is not None or world_size is not None:
        r, w = rank or 0, world_size or 1
    elif dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    if not 0 <= r < w:
        raise ConfigError(f"rank {r} is not in 0..{w - 1} (world_size {w})")
    return r, w


def _options(
    options: ReadOptions | None, sessions: Sequence[str] | None, read: dict[str, Any]
) -> ReadOptions:
    """``options``, or the ``ReadOptions`` of the keyword arguments (not both)."""
    if options is None:
        return read_options(sessions=sessions, **read)
    if read or sessions is not None:
        raise ConfigError(
            f"give options= or the sample options ({', '.join(sorted(read)) or 'sessions'}), "
            "not both"
        )
    return options


# --- map-style: Zarr + Parquet --------------------------------------------------------------------
class FrameDataset(Dataset[Sample]):
    """Map-style dataset over the samples of the converted Zarr sessions (module doc).

    ``out``: the converted dataset (folder or fsspec URL, with ``storage_options``), or a list
    of them mixed in proportions ``weights`` (``sources.mixed``: an epoch draws ``weights[i]``
    of its samples from dataset i); ``sessions``: names to use (default all, in name order);
    the other options are ``ReadOptions``'. ``cache_chunks``: decoded Zarr chunks kept per
    process. ``source="wds"``: the same samples read from the WebDataset shards
    (``ShardSource``'s random access: needs the alignment tables, or ``skip_blank=False``, and
    no windows; one dataset, no ``weights``; the batch samplers here plan Zarr chunks, so
    shuffle it with a plain sampler).

    Item ``i`` is the i-th sample, sessions laid end to end; ``locate(i)`` gives
    ``(session, frame_index)``. ``skipped_blank`` and ``dropped_windows`` count what the options
    left out. Not thread-safe: use processes (DataLoader workers)."""

    def __init__(
        self,
        out: OutLike | Sequence[OutLike],
        sessions: Sequence[str] | None = None,
        *,
        options: ReadOptions | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_chunks: int = DEFAULT_CACHE_CHUNKS,
        cache_dir: str | None = None,
        cache_limit: int | str | None = None,
        weights: Sequence[float] | None = None,
        source: str = "zarr",
        **read: Any,
    ) -> None:
        opts = _options(options, sessions, read)
        self.source: ZarrSource | MixedSource | ShardSource
        if source == "wds":
            if isinstance(out, list | tuple) or weights is not None:
                raise ConfigError(
                    "FrameDataset(source='wds') reads one dataset: give one, no weights"
                )
            self.source = ShardSource(
                cast(OutLike, out),
                opts,
                storage_options=storage_options,
                layout="CHW",
                cache=cache_options(cache_dir, cache_limit),
            )
            self.source.kept_positions()  # refuse what random access cannot serve, now
            return
        if source != "zarr":
            raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
        outs = list(out) if isinstance(out, list | tuple) else [cast(OutLike, out)]
        parts = [
            ZarrSource(
                one,
                opts,
                storage_options=storage_options,
                layout="CHW",
                cache_chunks=cache_chunks,
                cache=cache_options(cache_dir, cache_limit),
            )
            for one in outs
        ]
        if weights is not None and not isinstance(out, list | tuple):
            raise ConfigError("weights mix several datasets: give a list of them")
        mixed = isinstance(out, list | tuple)
        self.source = MixedSource(parts, weights) if mixed else parts[0]

    def __len__(self) -> int:
        return len(self.source)

    @property
    def sessions(self) -> tuple[str, ...]:
        return self.source.sessions

    @property
    def options(self) -> ReadOptions:
        return self.source.options

    @property
    def skipped_blank(self) -> int:
        return self.source.skipped_blank or 0

    @property
    def dropped_windows(self) -> int:
        return self.source.dropped_windows or 0

    def locate(self, index: int) -> tuple[str, int]:
        return self.source.locate(index)

    def __getitem__(self, index: int | Sequence[int]) -> Sample:
        """Sample ``index``, or the whole batch of a list of indices (a ``BatchIds`` also
        says which samples come next: their chunks are fetched meanwhile)."""
        if isinstance(index, int | np.integer):
            return next(unbatch(self.fetch([int(index)])))
        if isinstance(index, BatchIds) and not isinstance(self.source, ShardSource):
            self.source.read_ahead(index.ahead)
        return self.fetch(index)

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """The samples of a batch, read at once (what a DataLoader with ``batch_size`` asks)."""
        return list(unbatch(self.fetch(indices)))

    def fetch(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> Sample:
        """The batch of ``indices`` (``ds[list]``)."""
        return _tensor_batch(lambda buffers: self.source.fetch(indices, buffers))


Plan = Callable[[int, int, int], list[npt.NDArray[np.int64]]]

AHEAD_BATCHES: Final = 32
"""Batches of its own a worker is told of beyond the one it reads (``BatchIds.ahead``)."""
AHEAD_EVERY: Final = 4
"""A worker is told every 4th of its batches (the others are plain lists): what it has been
told then reaches 28-32 batches ahead, and working out the chunks to request (~0.2 ms) is
paid for one batch in 4 (it was ~7 % of an epoch read from the local cache)."""


class BatchIds(list[int]):
    """A batch's sample indices, and in ``ahead`` those of this batch and the next
    ``AHEAD_BATCHES`` the same worker will read (in order), for an object store's read-ahead."""

    ahead: npt.NDArray[np.int64]

    @classmethod
    def of(cls, ids: npt.NDArray[np.int64], ahead: npt.NDArray[np.int64]) -> BatchIds:
        batch = cls(ids.tolist())
        batch.ahead = ahead
        return batch


class ChunkBatchSampler(Sampler[list[int]]):
    """Batches of sample indices of a ``FrameDataset`` for one epoch (``plan``): in order, or
    shuffled chunk-aware (``window`` chunks mixed) with ``seed`` and the epoch; this rank's
    share (``rank``/``world_size``, else ``torch.distributed``'s); ordered for ``num_workers``.
    Use it as a DataLoader's ``sampler`` with ``batch_size=None`` (each index is then a list,
    and ``FrameDataset[list]`` reads the whole batch). Call ``set_epoch`` before each epoch."""

    def __init__(
        self,
        dataset: FrameDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        window: int = SHUFFLE_WINDOW,
    ) -> None:
        self.source = dataset.source
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last, self.workers, self.window = drop_last, max(1, num_workers), window
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.epoch = 0
        self.reading: ResumeState | None = None  # the state this epoch resumes (EpochLoader)
        self._plan()  # refuse bad arguments now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self) -> list[npt.NDArray[np.int64]]:
        return self._plan_of(self.reading)(self.rank, self.world_size, self.workers)

    def _plan_of(self, state: ResumeState | None) -> Plan:
        """A rank's batches (``plan(rank, world_size, workers)``) of this epoch, or of what is
        left of it after ``state`` (``resume.remaining_batches``)."""
        if state is None:
            return lambda rank, world, workers: self.source.epoch_batches(
                self.batch_size,
                shuffle=self.shuffle,
                seed=self.seed,
                epoch=self.epoch,
                rank=rank,
                world_size=world,
                drop_last=self.drop_last,
                workers=workers,
                window=self.window,
            )
        before = self._plan_of(state.resumed)
        return lambda rank, world, workers: remaining_batches(
            before, state, rank, world, workers, deal
        )

    def __iter__(self) -> Iterator[list[int]]:
        # a DataLoader deals batches to its workers in turn: batch i + workers is the same
        # worker's next one
        plan, step = self._plan(), self.workers
        if not getattr(self.source, "remote", False):  # local disk: nothing to read ahead
            yield from (ids.tolist() for ids in plan)
            return
        for i, ids in enumerate(plan):
            if (i // step) % AHEAD_EVERY:
                yield ids.tolist()
                continue
            coming = plan[i : i + step * (AHEAD_BATCHES + 1) : step]
            yield BatchIds.of(ids, np.concatenate(coming))

    def __len__(self) -> int:
        if self.reading is not None:
            return len(self._plan())
        n = len(self.source)
        per = n // self.world_size if self.drop_last else -(-n // self.world_size)
        return per // self.batch_size if self.drop_last else -(-per // self.batch_size)


# --- iterable: WebDataset shards ------------------------------------------------------------------
class ShardDataset(IterableDataset[Sample]):
    """Iterable dataset over the WebDataset shards listed in ``wds/index.json`` (module doc).

    ``source``: the converted dataset (its ``wds/index.json`` is read) or the URL of an
    ``index.json``. Options as for ``FrameDataset``: both give equal samples. ``batch_size``:
    yield whole batches (use ``DataLoader(..., batch_size=None)``); default single samples.

    Splitting. Every (rank, DataLoader worker) pair is one consumer: consumer
    ``rank * num_workers + worker`` of ``world_size * num_workers``, reading an equal share of
    the samples (``shards.consumer_range``). ``rank``/``world_size`` come from the arguments,
    else from ``torch.distributed`` when it is initialised, else 0 and 1.

    Shuffling (``shuffle=True``): the epoch's order is seeded by ``seed`` and the epoch
    (``set_epoch``) only, the same on every rank: runs of 32 consecutive samples of a shard in
    a shuffled order, the samples of ``shuffle_buffer // 32`` runs at a time mixed (with
    history/horizon windows, each consumer's stream through a ``shuffle_buffer``-sample buffer
    instead; ``sources.shards``). Without it, samples come in shard order."""

    def __init__(
        self,
        source: OutLike,
        sessions: Sequence[str] | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        batch_size: int | None = None,
        drop_last: bool = False,
        options: ReadOptions | None = None,
        cache_dir: str | None = None,
        cache_limit: int | str | None = None,
        **read: Any,
    ) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: give at least 1")
        opts = _options(options, sessions, read)
        self.source = ShardSource(
            source,
            opts,
            storage_options=storage_options,
            layout="CHW",
            shuffling=ShuffleOptions(buffer=shuffle_buffer),
            cache=cache_options(cache_dir, cache_limit),
        )
        self.shuffle, self.seed = shuffle, seed
        self.batch_size, self.drop_last = batch_size, drop_last
        self.epoch = 0
        self.reading: ResumeState | None = None  # the state this epoch resumes (EpochLoader)
        self.tag_streams = False  # mark each batch with its stream (EpochLoader counts them)
        self._rank, self._world = rank, world_size
        if rank is None and world_size is None and dist.is_available() and dist.is_initialized():
            self._rank, self._world = _rank_world(None, None)
        _rank_world(self._rank, self._world)  # reject a bad pair now

    def __len__(self) -> int:
        """The samples of one epoch over all consumers. TypeError when that is not known up
        front, and with ``batch_size`` (each worker makes its own batches, so their number
        depends on how the samples split)."""
        if self.batch_size is not None:
            raise TypeError(
                "a ShardDataset that yields batches has no length: each worker batches its own "
                "share (len(loader.dataset.source) is the number of samples)"
            )
        return len(self.source)

    @property
    def skipped_blank(self) -> int | None:
        return self.source.skipped_blank

    @property
    def dropped_windows(self) -> int | None:
        return self.source.dropped_windows

    def set_epoch(self, epoch: int) -> None:
        """Vary the shuffle per epoch (call it before each epoch, as with DistributedSampler)."""
        self.epoch = epoch

    def consumer(self, worker: int = 0, num_workers: int = 1) -> tuple[int, int]:
        """``(consumer, consumers)`` of DataLoader worker ``worker`` of ``num_workers`` here."""
        rank, world = _rank_world(self._rank, self._world)
        return rank * num_workers + worker, world * num_workers

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        build = _build_tensors(self.source)
        for windows in self._stream(self.reading, worker, workers):
            batch = build(windows)
            if self.tag_streams:
                batch[_STREAM] = worker
            if self.batch_size is None:
                yield from unbatch(batch)
            else:
                yield batch

    def _stream(
        self, state: ResumeState | None, worker: int, workers: int
    ) -> Iterator[list[Window]]:
        """The samples of each batch worker ``worker`` of ``workers`` makes this epoch: its
        consumer's stream, or what is left of the old workers' streams it continues after
        ``state`` (``resume.old_streams``)."""
        if state is not None:
            return itertools.chain.from_iterable(
                itertools.islice(self._stream(state.resumed, old, state.workers), made, None)
                for old, made in old_streams(state, worker, workers)
            )
        consumer, consumers = self.consumer(worker, workers)
        return self.source.iter_batches(
            self.batch_size or 64,
            drop_last=self.drop_last and self.batch_size is not None,
            build=list,
            consumer=consumer,
            consumers=consumers,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
        )


def _build_tensors(source: ShardSource) -> Callable[[Sequence[Window]], Sample]:
    def build(windows: Sequence[Window]) -> Sample:
        return _tensor_batch(lambda buffers: source.build(windows, buffers))

    return build


# --- convenience ----------------------------------------------------------------------------------
class EpochLoader(DataLoader[Sample]):
    """The DataLoader ``to_pytorch_dataloader`` gives: ``set_epoch(e)`` before each epoch
    reshuffles whichever the source (the Zarr sampler's order, or the shards' order and buffer),
    as ``DistributedSampler.set_epoch`` does.

    ``state_dict()`` says where the epoch is (after the batches handed out so far); a new
    loader made with the same arguments and given it by ``load_state_dict`` delivers the rest
    of that epoch on its next iteration: none of the samples already handed out, none missing
    (``read.resume`` says how, and with other numbers of workers or ranks)."""

    _pending: ResumeState | None = None  # a state loaded, for the next iteration
    _reading: ResumeState | None = None  # the state the current iteration resumed
    _batches = 0  # batches handed out by the current iteration
    _made: list[int]  # of those, per stream (shards)

    def set_epoch(self, epoch: int) -> None:
        if self._pending is not None and self._pending.epoch != epoch:
            self._pending = None  # another epoch than the one the state interrupted
        dataset = self.dataset
        if isinstance(dataset, ShardDataset):
            # an iterable dataset's epoch lives in each worker's copy of it: persistent
            # workers made for an earlier epoch would never see the new one
            if self.persistent_workers and self._iterator is not None and epoch != dataset.epoch:
                raise ConfigError(
                    "set_epoch cannot reach persistent workers over shards: they keep the "
                    "epoch they started with; pass persistent_workers=False (or source='zarr')"
                )
            dataset.set_epoch(epoch)
        else:
            self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[Sample]:  # type: ignore[override]
        self._reading, self._pending = self._pending, None
        self._batches, self._made = 0, [0] * max(1, self.num_workers)
        reader = self.dataset if isinstance(self.dataset, ShardDataset) else self.sampler
        reader.reading = self._reading  # type: ignore[union-attr]
        shards = self.dataset if isinstance(self.dataset, ShardDataset) else None
        if shards is not None and shards.shuffle and not shards.source.options.windowed:
            shards.source.scan()  # once, here: the workers inherit the offsets (of shards
            # whose runs index.json does not list: a set that lists them all reads nothing)
        for batch in super().__iter__():
            if isinstance(batch, dict) and _STREAM in batch:
                self._made[batch.pop(_STREAM)] += 1
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where this rank's loader is in its epoch (plain values: ``torch.save`` it with the
        model's checkpoint)."""
        return (self._pending or self._state()).to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the epoch of ``state`` (``state_dict()``) on the next iteration; refuses a
        state taken from another dataset or another batching (ConfigError)."""
        resume = ResumeState.from_dict(state)
        resume.check_reading(self._state())
        if isinstance(self.dataset, ShardDataset) and self.persistent_workers:
            raise ConfigError(
                "a shard epoch cannot resume in persistent workers (they keep the stream they "
                "started with); pass persistent_workers=False (or source='zarr')"
            )
        self.set_epoch(resume.epoch)
        self._pending = resume

    def _state(self) -> ResumeState:
        """This loader's reading, at the current iteration's place."""
        dataset = self.dataset
        if isinstance(dataset, ShardDataset):
            source: Any = dataset.source
            rank, world = _rank_world(dataset._rank, dataset._world)
            sampler: Any = dataset
            made = tuple(getattr(self, "_made", ()))
        else:
            sampler = self.sampler
            source, rank, world, made = sampler.source, sampler.rank, sampler.world_size, ()
        known = getattr(source, "skipped_blank", None) is not None
        return ResumeState(
            source=_reading_name(dataset, source),
            epoch=sampler.epoch,
            batches=self._batches,
            seed=sampler.seed,
            shuffle=sampler.shuffle,
            batch_size=sampler.batch_size or 0,
            drop_last=sampler.drop_last,
            samples=len(source) if known else source.total_frames,
            workers=max(1, self.num_workers),
            rank=rank,
            world_size=world,
            worker_batches=made if isinstance(dataset, ShardDataset) else (),
            resumed=self._reading,
        )


def _reading_name(dataset: Any, source: Any) -> str:
    """How a state names its reading: ``"wds"`` (a shard stream: per-worker progress),
    ``"wds-map"`` (shards read at random by a sampler's plan, as ``"zarr"`` is: it resumes on
    any number of ranks) or ``"zarr"``."""
    if isinstance(dataset, ShardDataset):
        return "wds"
    return "wds-map" if isinstance(source, ShardSource) else "zarr"


def to_pytorch_dataloader(
    out: OutLike | Sequence[OutLike],
    batch_size: int = 32,
    shuffle: bool = False,
    num_workers: int = 0,
    source: str = "zarr",
    *,
    seed: int = 0,
    drop_last: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    shuffle_window: int = SHUFFLE_WINDOW,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    cache_dir: str | None = None,
    cache_limit: int | str | None = None,
    weights: Sequence[float] | None = None,
    **kwargs: Any,
) -> EpochLoader:
    """A DataLoader over ``out`` whose batches are whole batches built in the workers; call its
    ``set_epoch(e)`` before each epoch for a new shuffle (either source).

    ``source="zarr"``: a ``FrameDataset`` with a ``ChunkBatchSampler`` (``shuffle`` mixes the
    samples of ``shuffle_window`` chunks at a time). ``source="wds"``: a ``ShardDataset``
    yielding batches (``shuffle`` mixes runs of a shard's samples, ``shuffle_buffer`` samples at
    a time; its
    epoch cannot reach ``persistent_workers``, so ``set_epoch`` refuses them). Either way each
    rank (``rank``/``world_size``, else ``torch.distributed``'s) reads its share.

    Sample options (``ReadOptions``): ``flip``, ``dtype``, ``skip_blank`` (default True),
    ``history``, ``horizon``, ``max_gap_ms``, ``sessions``, ``split``, ``split_fractions``,
    ``split_seed``. ``cache_dir``/``cache_limit`` (``"20GiB"``): keep what is read from an
    object store on local disk (``read.cache``). ``out`` a list of datasets: one loader over
    all of them, ``weights`` the share of each in an epoch (``source="zarr"``; see
    ``sources.mixed``). Other keyword arguments go to ``DataLoader``
    (``pin_memory``, ``persistent_workers``, ``prefetch_factor``, ...)."""
    opts = read_options(**{k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_NAMES})
    if {"sampler", "batch_sampler", "collate_fn"} & set(kwargs):
        raise ConfigError(
            "to_pytorch_dataloader makes its own sampler and whole batches; build a "
            "DataLoader over FrameDataset or ShardDataset yourself to use others"
        )
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if isinstance(out, list | tuple) and source != "zarr":
        raise ConfigError(
            "several datasets are mixed by the Zarr reader only: pass source='zarr' (the "
            "shards of several datasets stream one after another with source='wds' per dataset)"
        )
    plan = _Plan(
        out,
        opts,
        batch_size,
        shuffle,
        num_workers,
        seed,
        drop_last,
        storage_options,
        rank,
        world_size,
        ShuffleOptions(shuffle_window, shuffle_buffer),
        cache_dir,
        cache_limit,
        weights,
    )
    return _LOADERS[source](plan, {"num_workers": num_workers, **kwargs})


@dataclass(frozen=True)
class _Plan:
    """What ``to_pytorch_dataloader`` was asked for, whichever the source."""

    out: OutLike | Sequence[OutLike]
    options: ReadOptions
    batch_size: int
    shuffle: bool
    num_workers: int
    seed: int
    drop_last: bool
    storage_options: Mapping[str, Any] | None
    rank: int | None
    world_size: int | None
    shuffling: ShuffleOptions
    cache_dir: str | None
    cache_limit: int | str | None
    weights: Sequence[float] | None


def _zarr_loader(plan: _Plan, loader_kwargs: dict[str, Any]) -> EpochLoader:
    """A ``FrameDataset`` read in whole batches by a ``ChunkBatchSampler``."""
    ds = FrameDataset(
        plan.out,
        options=plan.options,
        storage_options=plan.storage_options,
        cache_dir=plan.cache_dir,
        cache_limit=plan.cache_limit,
        weights=plan.weights,
    )
    refuse_empty(ds.source, plan.out)
    sampler = ChunkBatchSampler(
        ds,
        plan.batch_size,
        shuffle=plan.shuffle,
        seed=plan.seed,
        drop_last=plan.drop_last,
        num_workers=plan.num_workers,
        rank=plan.rank,
        world_size=plan.world_size,
        window=plan.shuffling.window,
    )
    return EpochLoader(ds, batch_size=None, sampler=sampler, collate_fn=_identity, **loader_kwargs)


def _shard_loader(plan: _Plan, loader_kwargs: dict[str, Any]) -> EpochLoader:
    """A ``ShardDataset`` that yields whole batches."""
    shards = ShardDataset(
        cast(OutLike, plan.out),  # one dataset: to_pytorch_dataloader refuses a list here
        options=plan.options,
        storage_options=plan.storage_options,
        rank=plan.rank,
        world_size=plan.world_size,
        shuffle=plan.shuffle,
        seed=plan.seed,
        shuffle_buffer=plan.shuffling.buffer,
        batch_size=plan.batch_size,
        drop_last=plan.drop_last,
        cache_dir=plan.cache_dir,
        cache_limit=plan.cache_limit,
    )
    refuse_empty(shards.source, plan.out)
    shards.tag_streams = True
    return EpochLoader(shards, batch_size=None, collate_fn=_identity, **loader_kwargs)


_LOADERS: Final[dict[str, Callable[[_Plan, dict[str, Any]], EpochLoader]]] = {
    "zarr": _zarr_loader,
    "wds": _shard_loader,
}
"""How ``to_pytorch_dataloader`` reads each of ``sources.SOURCES``."""
