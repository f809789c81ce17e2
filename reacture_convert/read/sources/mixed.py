"""Several converted datasets as one sample source, drawn in set proportions: ``MixedSource``.

An epoch holds as many samples as the datasets together (``n``); dataset i gives
``weights[i] * n`` of them (rounded so that they add up): fewer than it has when its weight is
below its share (a different part of it each epoch, as its shuffled order changes), or its
samples more than once when above (each pass in a new order). Each dataset's samples come in
its own chunk-aware order (``plan.epoch_order``, seeded by the seed, the dataset's place and the
pass), and the datasets are interleaved: shuffled, by a seeded permutation of which dataset
gives each position; in order, evenly spread. So the epoch is a function of the seed and the
epoch only, and the Zarr reader's ranks, batches, workers and resume work on it unchanged.

A batch is read from each dataset in one piece, straight into its part of the batch's buffers
(its samples grouped by dataset, in the epoch's order within each).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError
from reacture_convert.read.batch import Batch, Buffers, MakeBuffers, Spec, numpy_buffers, unbatch
from reacture_convert.read.plan import epoch_order, rank_batches
from reacture_convert.read.sources.zarr import ZarrSource

__all__ = ["MixedSource", "mix_counts"]

I64 = npt.NDArray[np.int64]


def mix_counts(sizes: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Samples of each dataset in an epoch of ``sum(sizes)``: ``weights`` (normalised) of it,
    rounded by largest remainder so that they add up."""
    total = sum(sizes)
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return [int(c) for c in counts]


class MixedSource:
    """``parts`` (Zarr sources read with the same options and layout) as one source whose
    epochs draw ``weights`` of their samples from each (module doc). Sample ``i`` is sample
    ``i - offset`` of the part holding it (parts laid end to end)."""

    def __init__(self, parts: Sequence[ZarrSource], weights: Sequence[float] | None = None):
        if not parts:
            raise ConfigError("mixing datasets needs at least one dataset")
        weights = [1.0] * len(parts) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parts):
            raise ConfigError(f"{len(weights)} weights for {len(parts)} datasets: give one each")
        if any(not w > 0 for w in weights):
            raise ConfigError(f"weights {weights}: each must be above 0")
        first = parts[0]
        if any(p.options != first.options or p.layout != first.layout for p in parts):
            raise ConfigError("mixed datasets must be read with the same options and layout")
        for p in parts:
            if not len(p):
                raise ConfigError(f"{p.out.url}: no samples to mix (its options leave none)")
        self.parts = tuple(parts)
        self.weights = tuple(weights)
        self.options = first.options
        self.layout = first.layout
        self.shuffling = first.shuffling
        sizes = [len(p) for p in parts]
        self.offsets: I64 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.counts = mix_counts(sizes, weights)
        self.total_frames = sum(p.total_frames for p in parts)
        self.skipped_blank = sum(p.skipped_blank for p in parts)
        self.dropped_windows = sum(p.dropped_windows for p in parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def sessions(self) -> tuple[str, ...]:
        return tuple(name for p in self.parts for name in p.sessions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return next(unbatch(self.fetch([index])))

    def locate(self, index: int) -> tuple[str, int]:
        """``(session, frame_index)`` of sample ``index``."""
        i = int(np.searchsorted(self.offsets, index % len(self), side="right")) - 1
        return self.parts[i].locate(index % len(self) - int(self.offsets[i]))

    # --- an epoch -------------------------------------------------------------------------------
    def epoch_order(self, shuffle: bool, seed: int, epoch: int, window: int) -> I64:
        """Every position of the epoch: the sample there (module doc)."""
        which = np.repeat(np.arange(len(self.parts)), self.counts)
        if shuffle:
            which = np.random.default_rng([seed, epoch, len(self.parts)]).permutation(which)
        else:  # evenly spread: the j-th of dataset i at (j + 0.5) / count_i of the epoch
            place = np.concatenate([(np.arange(c) + 0.5) / c for c in self.counts if c])
            which = which[np.argsort(place, kind="stable")]
        order = np.empty(which.shape[0], dtype=np.int64)
        for i, (part, count) in enumerate(zip(self.parts, self.counts, strict=True)):
            passes = [
                epoch_order(part.chunk_of(), shuffle, _seed(seed, i, k), epoch, window)
                for k in range(-(-count // len(part)))
            ]
            mine = np.concatenate(passes)[:count] if passes else np.empty(0, np.int64)
            order[which == i] = mine + self.offsets[i]
        return order

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
        """As ``ZarrSource.epoch_batches``, over the mixed epoch."""
        mix = self.shuffling.window if window is None else window
        order = self.epoch_order(shuffle, seed, epoch, mix)
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
        for ids in self.epoch_batches(batch_size, **plan):
            yield self.fetch(ids)

    # --- reading ----------------------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        return any(part.remote for part in self.parts)

    def read_ahead(self, ids: Sequence[int] | npt.NDArray[np.integer]) -> None:
        """``ZarrSource.read_ahead`` of each dataset's share of ``ids``, in order."""
        n = len(self)
        picked = np.asarray(ids, dtype=np.int64).reshape(-1) % max(n, 1)
        part_of = np.searchsorted(self.offsets, picked, side="right") - 1
        for i in np.unique(part_of).tolist():
            self.parts[i].read_ahead(picked[part_of == i] - self.offsets[i])

    def fetch(
        self, ids: Sequence[int] | npt.NDArray[np.integer], buffers: MakeBuffers = numpy_buffers
    ) -> Batch:
        """The batch of samples ``ids``, grouped by dataset (module doc)."""
        picked = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = len(self)
        if picked.size and (picked.min() < -n or picked.max() >= n):
            raise IndexError(f"index out of range for {n} samples")
        picked = picked % n if n else picked
        part_of = np.searchsorted(self.offsets, picked, side="right") - 1
        grouped = np.argsort(part_of, kind="stable")
        picked, part_of = picked[grouped], part_of[grouped]
        out: Buffers | None = None
        spec_of: Spec = {}

        def whole(spec: Spec) -> Buffers:
            nonlocal out
            if out is None:
                spec_of.update(
                    {k: ((picked.shape[0], *shape[1:]), dt) for k, (shape, dt) in spec.items()}
                )
                out = buffers(spec_of)
            return out

        batch: Batch = {}
        sessions: list[str] = []
        for i in np.unique(part_of).tolist():
            at = np.flatnonzero(part_of == i)
            a, b = int(at[0]), int(at[-1]) + 1

            def piece(spec: Spec, a: int = a, b: int = b) -> Buffers:
                full = whole(spec)
                return lambda key: full(key)[a:b]

            got = self.parts[i].fetch(picked[a:b] - self.offsets[i], piece)
            sessions += got.pop("session")
            batch.update({k: whole({})(k) for k in got})
        if out is None:  # no ids: an empty batch of the first part's shape
            return self.parts[0].fetch([], buffers)
        batch["session"] = sessions
        return batch


def _seed(seed: int, part: int, rep: int) -> int:
    """The seed of dataset ``part``'s ``rep``-th pass of an epoch."""
    return int(np.random.SeedSequence([seed, part, rep]).generate_state(1)[0])
