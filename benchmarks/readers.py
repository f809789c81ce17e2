"""6: training readers against reading the same frames from a memory map."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from harness import (
    FRAME_BYTES,
    NPY_OFFSET,
    TARGETS,
    Bench,
    Row,
    Stat,
    paired_ratio,
)

READ_CASES = (
    ("6a", "FrameDataset (Zarr) sequential", "frameds_seq", "mmap_seq"),
    ("6b", "FrameDataset (Zarr) random", "frameds_rand", "mmap_rand"),
    ("6c", "ShardDataset (shards) sequential", "shards_seq", "mmap_seq"),
    ("6d", "ShardDataset shuffle=True vs random mmap", "shards_shuffle", "mmap_rand"),
)


def measure_read(b: Bench) -> list[Row]:
    out = b.converted()
    frames = b.files(b.bundle(b.sizes.session))["frames.npy"]
    runs: list[dict[str, Any]] = []
    for r in range(b.reps):
        run = b.child(b.child_cmd("read", out, frames, b.sizes.random_reads, r))
        runs.append(run.result())
        print(
            f"    read #{r + 1}: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in runs[-1].items() if k != "readers"),
            flush=True,
        )
    fps = {k: Stat.of(run[k] for run in runs) for k in runs[0] if k != "readers"}
    readers = runs[0]["readers"]
    rows = []
    for key, name, product, baseline in READ_CASES:
        share = paired_ratio(fps[product].samples, fps[baseline].samples)
        notes = [f"frames/s; {readers}"]
        if key == "6b":
            notes.append(f"{b.sizes.random_reads:,} random frames of {b.sizes.session:,}")
        if key == "6d":
            notes.append(
                "shards have no random access: shuffle=True streams shards in a "
                "seeded order through a 256-sample buffer"
            )
        rows.append(
            Row(
                key,
                f"read: {name}",
                fps[product].fmt("fr/s", 0),
                f"mmap {'random' if 'rand' in baseline else 'sequential'}: "
                f"{fps[baseline].fmt('fr/s', 0)}",
                f"{100 * share.median:.1f} %",
                TARGETS["6"],
                share.median >= 0.8,
                notes,
                {
                    "product_fps": list(fps[product].samples),
                    "baseline_fps": list(fps[baseline].samples),
                    "share": share.median,
                },
            )
        )
    return rows


def child_read(out: str, frames_npy: str, n_random: int, seed: int) -> dict[str, Any]:
    """Frames/s of each reader and of the raw memory map, in alternating order."""
    n = (os.path.getsize(frames_npy) - NPY_OFFSET) // FRAME_BYTES
    idx = np.random.default_rng(seed).integers(0, n, n_random).tolist()
    from reacture_convert.read.torch import FrameDataset, ShardDataset

    opened = {"seq": FrameDataset(out), "rand": FrameDataset(out)}  # untimed: catalog, labels
    streams = {False: ShardDataset(out), True: ShardDataset(out, shuffle=True)}

    def frameds(indices: Sequence[int]) -> int:
        ds = opened["seq" if isinstance(indices, range) else "rand"]
        for i in indices:
            ds[i]["frame"]
        return len(indices)

    def shards(shuffle: bool) -> int:
        return sum(1 for _ in streams[shuffle])

    readers = "readers: reacture_convert.read.torch (sample dicts with CHW torch tensors)"

    def raw(indices: Sequence[int]) -> int:
        # a fresh mapping each time: every measurement pays its page faults
        mm = np.memmap(frames_npy, np.uint8, "r", offset=NPY_OFFSET, shape=(n, 128, 128, 3))
        for i in indices:
            np.array(mm[i])
        return len(indices)

    def fps(fn: Callable[[], int]) -> float:
        t0 = time.perf_counter()
        k = fn()
        return k / (time.perf_counter() - t0)

    seq = range(n)
    result: dict[str, Any] = {}
    result["mmap_seq"] = fps(lambda: raw(seq))
    result["frameds_seq"] = fps(lambda: frameds(seq))
    result["shards_seq"] = fps(lambda: shards(False))
    result["mmap_rand"] = fps(lambda: raw(idx))
    result["frameds_rand"] = fps(lambda: frameds(idx))
    result["shards_shuffle"] = fps(lambda: shards(True))
    result["readers"] = readers
    return result


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"6": measure_read}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {
    "read": lambda out, frames, n, seed: child_read(out, frames, int(n), int(seed)),
}
