"""6: training readers against the plain PyTorch way over raw memory, in the same run.

Each reader, through ``to_pytorch_dataloader`` (whole batches built in the workers), against a
plain map-style ``Dataset`` over the same frames memory-mapped raw from frames.npy (each item the
frame as a CHW tensor, ``default_collate``). Same DataLoader settings on both sides: 2 workers,
batch 64, persistent workers; each figure is the median of epochs 2-4 of a loader (the first
starts the workers and warms the page cache), frames/s. Our batches also carry every label; the
baseline's hold frames only. Next to each figure, the shuffle quality of the last of them
(``read.quality``: the median gap between consecutive samples' positions and the mean
displacement |position - index|, both over the number of samples; a uniform shuffle gives about
0.29 and 0.33), from the samples' ``session`` and ``frame_index`` as delivered (the baseline's:
its sampler's order, which a DataLoader delivers as is).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from harness import FRAME_BYTES, NPY_OFFSET, Bench, Row, Stat, paired_ratio

from reacture_convert.read.quality import batch_keys, positions, shuffle_quality

WORKERS = 2
BATCH = 64
EPOCHS = 3  # each figure the median of epochs 2-4 (one epoch moved by ±20 % from the next)
TARGET = "≥ 50 % of plain PyTorch over mmap (then ≥ 100 %)"
GAP, DISPLACEMENT = "gap", "displacement"  # result keys: "<reader>.gap", "<reader>.displacement"
CASES = (  # key, source, shuffled
    ("6a", "zarr", True),
    ("6b", "zarr", False),
    ("6c", "wds", True),
    ("6d", "wds", False),
)


def _name(source: str, shuffle: bool) -> str:
    return f"{source}_{'shuffled' if shuffle else 'in_order'}"


def _base(shuffle: bool) -> str:
    return f"mmap_{'shuffled' if shuffle else 'in_order'}"


def measure_read(b: Bench) -> list[Row]:
    out = b.converted()
    frames = b.files(b.bundle(b.sizes.session))["frames.npy"]
    runs: list[dict[str, Any]] = []
    for r in range(b.reps):
        run = b.child(b.child_cmd("read", out, frames, r, 0 if b.quick else WORKERS))
        runs.append(run.result())
        print(
            f"    read #{r + 1}: "
            + ", ".join(
                f"{k} {v:.3f}" if "." in k else f"{k} {v:,.0f}" for k, v in runs[-1].items()
            ),
            flush=True,
        )
    fps = {k: Stat.of(run[k] for run in runs) for k in runs[0]}

    def mixing(name: str) -> str:
        gap, moved = fps[f"{name}.{GAP}"], fps[f"{name}.{DISPLACEMENT}"]
        return f"gap {gap.median:.3f}, displacement {moved.median:.3f}"

    rows = []
    for key, source, shuffle in CASES:
        product, baseline = _name(source, shuffle), _base(shuffle)
        share = paired_ratio(fps[product].samples, fps[baseline].samples)
        order = "shuffled" if shuffle else "in order"
        notes = [
            f"frames/s, {WORKERS} workers, batch {BATCH}, {b.sizes.session:,} frames; baseline: "
            f"a map-style Dataset over frames.npy memory-mapped, default collate, {order}",
        ]
        if source == "zarr" and shuffle:
            notes.append(
                "chunk-aware shuffle: chunks in a seeded order, samples mixed within windows "
                "of 8 chunks (every sample once per epoch)"
            )
        if source == "wds" and shuffle:
            notes.append(
                "runs of 32 samples of a shard in a seeded order, 8 runs mixed at a time (each "
                "run one ranged read; every sample once per epoch)"
            )
        rows.append(
            Row(
                key,
                f"read: to_pytorch_dataloader(source={source!r}), {order}",
                f"{fps[product].fmt('fr/s', 0)}; {mixing(product)}",
                f"plain PyTorch over mmap, {order}: {fps[baseline].fmt('fr/s', 0)}; "
                f"{mixing(baseline)}",
                f"{100 * share.median:.1f} %",
                TARGET,
                share.median >= 0.5,
                notes,
                {
                    "product_fps": list(fps[product].samples),
                    "baseline_fps": list(fps[baseline].samples),
                    "share": share.median,
                    "median_gap": fps[f"{product}.{GAP}"].median,
                    "mean_displacement": fps[f"{product}.{DISPLACEMENT}"].median,
                    "baseline_median_gap": fps[f"{baseline}.{GAP}"].median,
                    "baseline_mean_displacement": fps[f"{baseline}.{DISPLACEMENT}"].median,
                },
            )
        )
    return rows


class RawFrames:
    """The plain PyTorch way: item i is frame i of frames.npy, memory-mapped, as a CHW tensor
    (the map opened in each worker)."""

    def __init__(self, path: str, n: int) -> None:
        self.path, self.n = path, n
        self.mm: np.memmap[Any, np.dtype[np.uint8]] | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        if self.mm is None:
            self.mm = np.memmap(
                self.path, np.uint8, "r", offset=NPY_OFFSET, shape=(self.n, 128, 128, 3)
            )
        return {"frame": torch.from_numpy(np.array(self.mm[i])).permute(2, 0, 1)}


def child_read(out: str, frames_npy: str, seed: int, workers: int = WORKERS) -> dict[str, float]:
    """Frames/s of each reader and of the baseline, in alternating order, and the shuffle
    quality of each timed epoch."""
    from torch.utils.data import DataLoader

    from reacture_convert.read.torch import to_pytorch_dataloader

    n = (os.path.getsize(frames_npy) - NPY_OFFSET) // FRAME_BYTES
    # a quick smoke run reads in the process itself (no worker start-ups)
    common: dict[str, Any] = {"num_workers": workers, "persistent_workers": workers > 0}

    def second_epoch(name: str, loader: Iterable[dict[str, Any]]) -> dict[str, float]:
        for _ in loader:  # starts the workers, warms caches
            pass
        seen: list[dict[str, Any]] = []
        rates = []
        for _ in range(EPOCHS):
            seen.clear()  # (the last epoch's order is the one judged)
            t0 = time.perf_counter()
            count = 0
            for batch in loader:
                count += len(batch["frame"])
                if "session" in batch:
                    # copies: a view would keep the batch's shared-memory block alive
                    keys = {
                        "session": list(batch["session"]),
                        "frame_index": np.array(batch["frame_index"]),
                    }
                    seen.append(keys)
            rates.append(count / (time.perf_counter() - t0))
        if seen:
            delivered = positions(batch_keys(seen))
        else:  # the baseline delivers its sampler's order (a fresh draw, not timed)
            sampler: Any = loader.batch_sampler
            delivered = np.array([i for ids in sampler for i in ids], dtype=np.int64)
        quality = shuffle_quality(delivered)
        return {
            name: float(np.median(rates)),
            f"{name}.{GAP}": quality.median_gap,
            f"{name}.{DISPLACEMENT}": quality.mean_displacement,
        }

    makers: dict[str, Callable[[], Iterable[dict[str, Any]]]] = {}
    for shuffle in (False, True):
        makers[_base(shuffle)] = lambda s=shuffle: DataLoader(
            RawFrames(frames_npy, n), batch_size=BATCH, shuffle=s, **common
        )
        for source in ("zarr", "wds"):
            makers[_name(source, shuffle)] = lambda s=shuffle, src=source: to_pytorch_dataloader(
                out, BATCH, s, source=src, seed=seed, **common
            )
    result: dict[str, float] = {}
    for name, make in makers.items():
        result.update(second_epoch(name, make()))
    return result


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"6": measure_read}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {
    "read": lambda out, frames, seed, workers: child_read(out, frames, int(seed), int(workers)),
}
