"""6: training readers against the plain PyTorch way over raw memory, in the same run.

Each reader, through ``to_pytorch_dataloader`` (whole batches built in the workers), against a
plain map-style ``Dataset`` over the same frames memory-mapped raw from frames.npy (each item the
frame as a CHW tensor, ``default_collate``). Same DataLoader settings on both sides: 2 workers,
batch 64, persistent workers; each figure is the second epoch of a loader (the first starts the
workers and warms the page cache), frames/s. Our batches also carry every label; the baseline's
hold frames only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from harness import FRAME_BYTES, NPY_OFFSET, Bench, Row, Stat, paired_ratio

WORKERS = 2
BATCH = 64
TARGET = "≥ 50 % of plain PyTorch over mmap (then ≥ 100 %)"
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
            f"    read #{r + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in runs[-1].items()),
            flush=True,
        )
    fps = {k: Stat.of(run[k] for run in runs) for k in runs[0]}
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
            notes.append("shards in a seeded order, a 256-sample shuffle buffer per worker")
        rows.append(
            Row(
                key,
                f"read: to_pytorch_dataloader(source={source!r}), {order}",
                fps[product].fmt("fr/s", 0),
                f"plain PyTorch over mmap, {order}: {fps[baseline].fmt('fr/s', 0)}",
                f"{100 * share.median:.1f} %",
                TARGET,
                share.median >= 0.5,
                notes,
                {
                    "product_fps": list(fps[product].samples),
                    "baseline_fps": list(fps[baseline].samples),
                    "share": share.median,
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
    """Frames/s of each reader and of the baseline, in alternating order."""
    from torch.utils.data import DataLoader

    from reacture_convert.read.torch import to_pytorch_dataloader

    n = (os.path.getsize(frames_npy) - NPY_OFFSET) // FRAME_BYTES
    # a quick smoke run reads in the process itself (no worker start-ups)
    common: dict[str, Any] = {"num_workers": workers, "persistent_workers": workers > 0}

    def second_epoch(loader: Iterable[dict[str, Any]]) -> float:
        for _ in loader:  # starts the workers, warms caches
            pass
        t0 = time.perf_counter()
        count = sum(len(batch["frame"]) for batch in loader)
        return count / (time.perf_counter() - t0)

    makers: dict[str, Callable[[], Iterable[dict[str, Any]]]] = {}
    for shuffle in (False, True):
        makers[_base(shuffle)] = lambda s=shuffle: DataLoader(
            RawFrames(frames_npy, n), batch_size=BATCH, shuffle=s, **common
        )
        for source in ("zarr", "wds"):
            makers[_name(source, shuffle)] = lambda s=shuffle, src=source: to_pytorch_dataloader(
                out, BATCH, s, source=src, seed=seed, **common
            )
    return {name: second_epoch(make()) for name, make in makers.items()}


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"6": measure_read}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {
    "read": lambda out, frames, seed, workers: child_read(out, frames, int(seed), int(workers)),
}
