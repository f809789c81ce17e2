"""An epoch of the Zarr reader: which samples, in which order, in which batches, for whom.

**Chunk-aware shuffling.** A shuffled index would hit a random chunk for every sample and decode
a whole chunk (64 frames) to hand out one frame. Instead ``epoch_order`` shuffles the order of
the chunks and then the samples within each *window* of ``window`` consecutive chunks of that
order: every sample once per epoch, each batch drawn from ``window`` chunks spread over the
dataset, and a reader holding a window's chunks decoded decodes each chunk once per epoch. The
order is a function of ``seed`` and ``epoch`` only.

**Ranks** (``rank_share``) get equal contiguous slices of the epoch's order, as
``DistributedSampler`` does (padded by repeating the first samples, or the tail dropped with
``drop_last``), so every rank agrees without talking. **Batches** (``batches``) are consecutive
``batch_size`` slices of a rank's share. **Workers**: ``deal`` orders the batches so that, when a
DataLoader hands them to its workers in turn (batch t to worker t % workers), each worker gets a
contiguous part of them: consecutive batches come from the same chunks, so each chunk is decoded
by one worker, about once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError

__all__ = ["batches", "deal", "epoch_order", "rank_batches", "rank_share"]

I64 = npt.NDArray[np.int64]


def epoch_order(
    chunk_of: npt.NDArray[np.integer], shuffle: bool, seed: int, epoch: int, window: int
) -> I64:
    """Sample numbers ``0..n-1`` in this epoch's order; ``chunk_of[i]`` is sample i's chunk
    (any integer id; equal ids share a chunk). In order without ``shuffle``."""
    n = chunk_of.shape[0]
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    if window < 1:
        raise ConfigError(f"shuffle window of {window} chunks: give at least 1")
    rng = np.random.default_rng([seed, epoch])
    chunks, which = np.unique(chunk_of, return_inverse=True)
    place = np.empty(chunks.shape[0], dtype=np.int64)
    place[rng.permutation(chunks.shape[0])] = np.arange(chunks.shape[0])
    # windows in the shuffled chunk order, a random order inside each
    keys = np.stack([rng.random(n), (place[which] // window).astype(np.float64)])
    return np.lexsort(keys).astype(np.int64)


def rank_share(order: I64, rank: int, world: int, drop_last: bool = False) -> I64:
    """Rank ``rank``'s slice of ``order``: ``ceil(n / world)`` samples each (the first ones
    repeated to fill the last slices) or ``floor(n / world)`` with ``drop_last``."""
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in 0..{world - 1} (world_size {world})")
    n = order.shape[0]
    if world == 1:
        return order
    per = n // world if drop_last else -(-n // world)
    total = per * world
    full = order[:total] if total <= n else np.resize(order, total)
    return full[rank * per : (rank + 1) * per]


def batches(ids: I64, batch_size: int, drop_last: bool = False) -> list[I64]:
    """Consecutive ``batch_size`` slices of ``ids`` (the last one shorter unless dropped)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: give at least 1")
    stop = ids.shape[0] - ids.shape[0] % batch_size if drop_last else ids.shape[0]
    return [ids[a : a + batch_size] for a in range(0, stop, batch_size)]


def deal(items: Sequence[I64], workers: int) -> list[I64]:
    """``items`` reordered so that, handed to ``workers`` in turn (item t to worker
    ``t % workers``), worker w gets the w-th of ``workers`` contiguous, equal parts (within
    one item): consecutive batches share chunks. Only the order changes: nothing is lost or
    repeated."""
    if workers <= 1:
        return list(items)
    # the longer parts first, so the last round (the shorter parts done) keeps t % workers
    base, extra = divmod(len(items), workers)
    cuts = [w * base + min(w, extra) for w in range(workers + 1)]
    parts = [items[cuts[w] : cuts[w + 1]] for w in range(workers)]
    return [part[depth] for depth in range(len(parts[0])) for part in parts if depth < len(part)]


def rank_batches(
    order: I64,
    batch_size: int,
    *,
    shuffle: bool,
    rank: int,
    world_size: int,
    drop_last: bool,
    workers: int,
) -> list[I64]:
    """A rank's batches of an epoch in ``order``: its share, cut into batches, dealt to
    ``workers`` when shuffled (in order they stay in order)."""
    cut = batches(rank_share(order, rank, world_size, drop_last), batch_size, drop_last)
    return deal(cut, workers) if shuffle else cut
