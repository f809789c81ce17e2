"""PyTorch readers of a converted dataset (needs the ``torch`` extra: ``pip install .[torch]``).

Two datasets hand out the same samples, one per frame that has a periodic row:

- ``FrameDataset(OUT)``: map-style, random access over the Zarr frames and the rows Parquet of
  every converted session (sessions in name order, frames in order). Labels are computed once
  per session when it is built; a frame is read when asked for.
- ``ShardDataset(OUT or .../wds/index.json)``: iterable over the WebDataset shards, split across
  DataLoader workers and across ranks (see its docstring).

A sample is a dict whose keys follow ReActure's own loader (``load_reacture_dataset.py``), so
training code written for it keeps working:

=============== ====================== ========================================================
key             one sample             batch (``default_collate``, batch size B)
=============== ====================== ========================================================
frame           uint8 (3, 128, 128)    (B, 3, 128, 128) uint8, or float32 in [0, 1] with
                                       ``dtype="float32"`` (the value / 255). CHW, RGB.
keys            float32 (6,)           (B, 6): W, A, S, D, inspect, destroy (0. or 1.)
actions         float32 (4,)           (B, 4): jump, destroy, refuel, rescue in the frame's
                                       interval (an extension; ``dataset.MOMENTARY_ACTIONS``)
battery         float32 (1,)           (B, 1)
damage          float32 (1,)           (B, 1)
health          float32 (1,)           (B, 1)
position        float32 (3,)           (B, 3): robot.position x, y, z
velocity        float32 (3,)           (B, 3): robot.velocity x, y, z
accelerometer   float32 (3,)           (B, 3)
timestamp_ms    float                  (B,) float64: the frame's time from timestamps.npy
session         str                    list of B str
frame_index     int                    (B,) int64: the frame's index in its session
=============== ====================== ========================================================

``keys``: W, A, S, D and inspect are the periodic row's ``key_presses`` (held keys). destroy,
like every momentary action, is taken from the rows of the frame's *interval* (the rows after
the previous periodic row up to this one: the WebDataset sample's ``events``), because the
periodic ``destroy`` flag is always false; it is 1 when a ``destroy_rubble`` action or event was
logged there. ``timestamp_ms`` is the frame's exact capture time (timestamps.npy, float32 value
as float64), not the periodic row's ``timestamp_ms``, which may be a few ms later.

**Orientation.** Frames are stored bottom-up, as WebGL's ``readPixels`` wrote them: by default
(``flip=False``) ``frame`` holds those bytes unchanged, so row 0 is the *bottom* of the picture.
``flip=True`` hands them out right way up (``frame[::-1]`` of the stored HWC array).

Workers. Nothing holds an open file or store across ``fork`` or pickling: each process opens
its own Zarr store (or shard stream) on first use, so ``num_workers > 0`` is safe with the
``fork``, ``forkserver`` and ``spawn`` start methods and with object stores.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import fsspec
import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    get_worker_info,
)

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.dataset import OutLike, as_output, open_dataset
from reacture_convert.read.labels import FrameLabels
from reacture_convert.read.session import open_session
from reacture_convert.writers.webdataset import INDEX, WdsIndex, iter_tar_samples, shuffle_buffer

__all__ = [
    "DTYPES",
    "SOURCES",
    "FrameDataset",
    "ShardDataset",
    "ShardPart",
    "make_sample",
    "split_shards",
    "to_pytorch_dataloader",
]

DTYPES: Final = ("uint8", "float32")
SOURCES: Final = ("zarr", "wds")
Dtype = Literal["uint8", "float32"]
Sample = dict[str, Any]


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown frame dtype {dtype!r}; choose one of {', '.join(DTYPES)}")


def make_sample(
    frame: npt.NDArray[np.uint8],
    labels: FrameLabels,
    k: int,
    *,
    flip: bool = False,
    dtype: str = "uint8",
) -> Sample:
    """The sample dict of row ``k`` of ``labels`` with its stored HWC ``frame`` (module doc)."""
    chw = (frame[::-1] if flip else frame).transpose(2, 0, 1)
    # numpy, not torch: a torch op this small is slower (its thread pool) and the value is the
    # same, the correctly rounded float32 quotient
    pixels = (
        np.divide(chw, np.float32(255), dtype=np.float32, order="C")
        if dtype == "float32"
        else np.ascontiguousarray(chw)
    )
    return {
        "frame": torch.from_numpy(pixels),
        "keys": torch.tensor(labels.keys[k], dtype=torch.float32),
        "actions": torch.tensor(labels.actions[k], dtype=torch.float32),
        "battery": torch.tensor([labels.battery[k]], dtype=torch.float32),
        "damage": torch.tensor([labels.damage[k]], dtype=torch.float32),
        "health": torch.tensor([labels.health[k]], dtype=torch.float32),
        "position": torch.tensor(labels.position[k], dtype=torch.float32),
        "velocity": torch.tensor(labels.velocity[k], dtype=torch.float32),
        "accelerometer": torch.tensor(labels.accelerometer[k], dtype=torch.float32),
        "timestamp_ms": float(labels.timestamp_ms[k]),
        "session": labels.session,
        "frame_index": int(labels.frame_index[k]),
    }


# --- map-style: Zarr + Parquet --------------------------------------------------------------------
@dataclass(frozen=True)
class _Session:
    """What a FrameDataset keeps of a session: picklable values only."""

    name: str
    labels: FrameLabels
    flip: bool  # flip=True asked for and the session is stored bottom-up
    chunk: int  # frames per Zarr chunk (the unit of a read)


class FrameDataset(Dataset[Sample]):
    """Map-style dataset over every frame with a periodic row of every converted session.

    ``out``: the converted dataset (folder or fsspec URL, with ``storage_options``);
    ``sessions``: names to use (default all, in name order); ``flip``: right way up (default:
    the bytes as stored, bottom-up); ``dtype``: ``"uint8"`` or ``"float32"`` frames.
    ``cache_chunks``: decoded Zarr chunks kept per process (a chunk is 64 frames, 3 MiB by
    default), so that reading frames in order decodes each chunk once.

    Item ``i`` is frame ``frame_index[k]`` of session ``s`` where the sessions' frames are laid
    end to end; ``locate(i)`` gives ``(session, frame_index)``. Not thread-safe: use processes
    (DataLoader workers)."""

    def __init__(
        self,
        out: OutLike,
        sessions: Sequence[str] | None = None,
        *,
        flip: bool = False,
        dtype: Dtype = "uint8",
        storage_options: Mapping[str, Any] | None = None,
        cache_chunks: int = 4,
    ) -> None:
        _check_dtype(dtype)
        ds = open_dataset(out, storage_options)
        names = ds.sessions if sessions is None else tuple(sessions)
        for name in names:
            ds[name]  # KeyError naming the sessions there are  # noqa: B018
        self.out = ds.out
        self.dtype = dtype
        self.cache_chunks = cache_chunks
        self._sessions = tuple(
            _Session(
                n,
                ds[n].labels,
                flip and ds[n].orientation == "bottom-up",
                int(ds[n].frames.chunks[0]),
            )
            for n in names
        )
        self._offsets = np.cumsum([0, *(len(s.labels) for s in self._sessions)])
        self._local: _Local | None = None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def sessions(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._sessions)

    def locate(self, index: int) -> tuple[int, int]:
        """``(session number, row in its labels)`` of item ``index`` (negative counts back)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        s = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return s, index - int(self._offsets[s])

    def __getitem__(self, index: int) -> Sample:
        s, k = self.locate(int(index))
        session = self._sessions[s]
        frame = self._read_frame(s, int(session.labels.frame_index[k]))
        return make_sample(frame, session.labels, k, flip=session.flip, dtype=self.dtype)

    def _state(self) -> _Local:
        """This process's open arrays and chunk cache (opened anew after fork or unpickling)."""
        if self._local is None or self._local.pid != os.getpid():
            self._local = _Local(os.getpid())
        return self._local

    def _read_frame(self, s: int, frame_index: int) -> npt.NDArray[np.uint8]:
        local = self._state()
        session = self._sessions[s]
        frames = local.arrays.get(s)
        if frames is None:
            frames = local.arrays[s] = open_session(self.out, session.name).frames
        if self.cache_chunks < 1:
            return np.asarray(frames[frame_index], dtype=np.uint8)
        c, r = divmod(frame_index, session.chunk)
        block = local.cache.get((s, c))
        if block is None:
            block = np.asarray(frames[c * session.chunk : (c + 1) * session.chunk], np.uint8)
            local.cache[(s, c)] = block
            while len(local.cache) > self.cache_chunks:
                local.cache.popitem(last=False)
        else:
            local.cache.move_to_end((s, c))
        frame: npt.NDArray[np.uint8] = block[r]
        return frame

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_local"] = None  # stores and caches stay in the process that opened them
        return state


class _Local:
    """Per-process state of a FrameDataset: open frame arrays and an LRU of decoded chunks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.arrays: dict[int, Any] = {}
        self.cache: OrderedDict[tuple[int, int], npt.NDArray[np.uint8]] = OrderedDict()


# --- iterable: WebDataset shards ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardPart:
    """What one consumer reads of a shard: samples ``j`` with ``j % step == offset``."""

    shard: int
    step: int = 1
    offset: int = 0


def split_shards(
    n_shards: int, consumer: int, consumers: int, order: Sequence[int] | None = None
) -> list[ShardPart]:
    """The parts of the shards that consumer ``consumer`` of ``consumers`` reads.

    With at least as many shards as consumers, consumer c reads whole shards
    ``order[c::consumers]``. With fewer, the consumers sharing a shard split its samples
    round-robin (each still streams the whole shard but decodes only its samples). Either way
    every sample goes to exactly one consumer."""
    if not 0 <= consumer < consumers:
        raise ValueError(f"consumer {consumer} is not in 0..{consumers - 1}")
    order = list(range(n_shards)) if order is None else list(order)
    if n_shards == 0:
        return []
    if n_shards >= consumers:
        return [ShardPart(s) for s in order[consumer::consumers]]
    position = consumer % n_shards
    sharing = len(range(position, consumers, n_shards))
    return [ShardPart(order[position], sharing, consumer // n_shards)]


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None or world_size is not None:
        r, w = rank or 0, world_size or 1
    elif dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    if not 0 <= r < w:
        raise ConfigError(f"rank {r} is not in 0..{w - 1} (world_size {w})")
    return r, w


class ShardDataset(IterableDataset[Sample]):
    """Iterable dataset over the WebDataset shards listed in ``wds/index.json``.

    ``source``: the converted dataset (folder or URL; its ``wds/index.json`` is read) or the URL
    of an ``index.json``. ``flip``/``dtype`` as for ``FrameDataset``: both give equal samples.

    Splitting. Every (rank, DataLoader worker) pair is one consumer: consumer
    ``rank * num_workers + worker`` of ``world_size * num_workers``. ``rank``/``world_size``
    come from the arguments, else from ``torch.distributed`` when it is initialised (when the
    dataset is built or, failing that, when it is iterated), else 0 and 1. Each sample goes to
    exactly one consumer per epoch (``split_shards``): whole shards when there are at least as
    many shards as consumers, else the samples of a shard round-robin among the consumers that
    share it. Consumers can get unequal numbers of samples (shards differ in size): with DDP,
    convert with ``--shard-count`` a multiple of ``world_size * num_workers`` and drop or pad
    the last batches as your training loop needs.

    Shuffling (``shuffle=True``): the shard order is a permutation seeded by ``seed`` and the
    epoch (``set_epoch``), the same on every rank, and each consumer passes its samples through a
    ``shuffle_buffer``-sample buffer. Without it, samples come in shard order."""

    def __init__(
        self,
        source: OutLike,
        *,
        flip: bool = False,
        dtype: Dtype = "uint8",
        storage_options: Mapping[str, Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 256,
    ) -> None:
        super().__init__()
        _check_dtype(dtype)
        if shuffle_buffer < 1:
            raise ConfigError("shuffle_buffer must be at least 1 sample")
        out = as_output(source, storage_options)
        self.flip = flip
        self.dtype = dtype
        self.storage_options = dict(out.storage_options)
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, seed, shuffle_buffer
        self.epoch = 0
        self.index, base = _read_index(out)
        self.urls = tuple(f"{base}/{s.url}" for s in self.index.shards)
        self._rank, self._world = rank, world_size
        if rank is None and world_size is None and dist.is_available() and dist.is_initialized():
            self._rank, self._world = _rank_world(None, None)
        _rank_world(self._rank, self._world)  # reject a bad pair now

    def __len__(self) -> int:
        """All samples of all shards (what one epoch yields over all consumers together)."""
        return self.index.total_samples

    def set_epoch(self, epoch: int) -> None:
        """Vary the shuffle per epoch (call it before each epoch, as with DistributedSampler)."""
        self.epoch = epoch

    def parts(self, worker: int = 0, num_workers: int = 1) -> list[ShardPart]:
        """What DataLoader worker ``worker`` of ``num_workers`` on this rank reads."""
        rank, world = _rank_world(self._rank, self._world)
        order = list(range(len(self.urls)))
        if self.shuffle:
            random.Random(f"shards-{self.seed}-{self.epoch}").shuffle(order)
        return split_shards(len(order), rank * num_workers + worker, world * num_workers, order)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        samples = self._iter_parts(self.parts(worker, workers))
        if not self.shuffle:
            return samples
        rank, _ = _rank_world(self._rank, self._world)
        rng = random.Random(f"samples-{self.seed}-{self.epoch}-{rank}-{worker}")
        return shuffle_buffer(samples, self.shuffle_buffer, rng)

    def _iter_parts(self, parts: Sequence[ShardPart]) -> Iterator[Sample]:
        for part in parts:
            url = self.urls[part.shard]
            with fsspec.open(url, "rb", **self.storage_options) as f:
                for j, (key, members) in enumerate(iter_tar_samples(f, url)):
                    if j % part.step == part.offset:
                        yield self._decode(url, key, members)

    def _decode(self, url: str, key: str, members: Mapping[str, bytes]) -> Sample:
        enc = self.index.encoding
        if "json" not in members or enc not in members:
            raise OutputError(
                f"{url}: sample {key!r} lacks its .json or .{enc} member; "
                "convert again (or check the shard against index.json: verify)"
            )
        meta = json.loads(members["json"])
        if enc == "npy":
            frame = np.load(io.BytesIO(members["npy"]), allow_pickle=False)
        else:
            from PIL import Image

            frame = np.asarray(Image.open(io.BytesIO(members[enc])).convert("RGB"))
        labels = FrameLabels.from_sample_json(meta)
        return make_sample(
            np.asarray(frame, dtype=np.uint8), labels, 0, flip=self.flip, dtype=self.dtype
        )


def _read_index(out: Output) -> tuple[WdsIndex, str]:
    """The index and the URL of the folder its shards are in."""
    if out.url.rstrip("/").endswith(".json"):
        path, shown = out.root, out.url
    else:
        path, shown = out.path(INDEX), out.url_of(INDEX)
    if not out.fs.exists(path):
        raise OutputError(f"{shown} does not exist; convert with --format wds to get shards")
    with out.fs.open(path, "rb") as f:
        index = WdsIndex.from_dict(json.loads(f.read()))
    folder = path.rsplit("/", 1)[0]
    base = folder if out.is_local else str(out.fs.unstrip_protocol(folder))
    return index, base


# --- convenience ----------------------------------------------------------------------------------
def to_pytorch_dataloader(
    out: OutLike,
    batch_size: int = 32,
    shuffle: bool = False,
    num_workers: int = 0,
    source: str = "zarr",
    *,
    flip: bool = False,
    dtype: Dtype = "uint8",
    sessions: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    **loader_kwargs: Any,
) -> DataLoader[Sample]:
    """A DataLoader over ``out`` whose batches are described in the module docstring.

    ``source="zarr"``: a ``FrameDataset`` (``sessions`` selects sessions); when
    ``torch.distributed`` is initialised it gets a ``DistributedSampler`` (call
    ``loader.sampler.set_epoch(e)`` each epoch). ``source="wds"``: a ``ShardDataset`` split
    across workers and ranks; ``shuffle`` shuffles shards and a sample buffer
    (``loader.dataset.set_epoch(e)``). Other keyword arguments go to ``DataLoader``
    (``pin_memory``, ``drop_last``, ``persistent_workers``, ...)."""
    if source == "zarr":
        ds = FrameDataset(out, sessions, flip=flip, dtype=dtype, storage_options=storage_options)
        if dist.is_available() and dist.is_initialized() and "sampler" not in loader_kwargs:
            sampler: DistributedSampler[int] = DistributedSampler(ds, shuffle=shuffle, seed=seed)
            return DataLoader(
                ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers, **loader_kwargs
            )
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, **loader_kwargs
        )
    if source == "wds":
        if sessions is not None:
            raise ConfigError(
                "sessions= selects Zarr sessions; shards hold the sessions they "
                "were written with (use source='zarr' to pick sessions)"
            )
        shards = ShardDataset(
            out, flip=flip, dtype=dtype, storage_options=storage_options, shuffle=shuffle, seed=seed
        )
        return DataLoader(shards, batch_size=batch_size, num_workers=num_workers, **loader_kwargs)
    raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
