"""Measure Zarr frame chunking and codecs: write time, read time and size, on game-like frames.

    .venv/bin/python benchmarks/zarr_codecs.py [--frames 2000] [--repeats 5] [--real FRAMES_NPY]

Frames come from the synthetic generator (game-like, compressible) and, when given, from a real
frames.npy (e.g. the variant fixture, which has real pictures). Prints a Markdown table with the
median of ``--repeats`` runs (min-max in brackets): MB/s written, MB/s read, compression ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reacture_convert.output.storage import Output  # noqa: E402
from reacture_convert.testing.synth import iter_game_frames  # noqa: E402
from reacture_convert.writers.zarr import ZarrOptions, ZarrSessionWriter  # noqa: E402

CONFIGS = [
    ZarrOptions(chunk_frames=16, codec="zstd", level=1),
    ZarrOptions(chunk_frames=64, codec="zstd", level=1),
    ZarrOptions(chunk_frames=256, codec="zstd", level=1),
    ZarrOptions(chunk_frames=64, codec="zstd", level=3),
    ZarrOptions(chunk_frames=64, codec="lz4", level=5),
    ZarrOptions(chunk_frames=64, codec="none"),
    ZarrOptions(chunk_frames=64, shard_frames=1024, codec="zstd", level=1),
]


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def nobjects(path: str) -> int:
    return sum(len(fs) for _, _, fs in os.walk(path))


def measure(frames: np.ndarray, opts: ZarrOptions, tmp: str) -> tuple[float, float, float, int]:
    path = os.path.join(tmp, "s.zarr")
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    w = ZarrSessionWriter(Output(tmp).keys(path), len(frames), {}, opts)
    step = opts.block_frames
    for a in range(0, len(frames), step):
        w.write_frames(a, frames[a : a + step])
    w.write_timestamps(np.zeros(len(frames), np.float32))
    t1 = time.perf_counter()
    import zarr

    g = zarr.open_group(path, mode="r")
    for a in range(0, len(frames), step):
        np.asarray(g["frames"][a : a + step])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, frames.nbytes / du(path), nobjects(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--real", default=None)
    args = ap.parse_args()
    datasets = {"synthetic": np.concatenate(list(iter_game_frames(args.frames, seed=1)))}
    if args.real:
        n = (os.path.getsize(args.real) - 129) // 49152
        datasets["real variant"] = np.fromfile(args.real, np.uint8, offset=129).reshape(
            n, 128, 128, 3
        )
    print("| frames | chunk | shard | codec | write MB/s | read MB/s | ratio | objects |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in datasets.items():
            mb = frames.nbytes / 1e6
            for opts in CONFIGS:
                runs = [measure(frames, opts, tmp) for _ in range(args.repeats)]
                w = [mb / r[0] for r in runs]
                r = [mb / r[1] for r in runs]
                codec = opts.codec + (f"-{opts.level}" if opts.codec != "none" else "")
                print(
                    f"| {name} ({len(frames)}) | {opts.chunk_frames} | "
                    f"{opts.shard_frames or '-'} | "
                    f"{codec} | {statistics.median(w):.0f} [{min(w):.0f}-{max(w):.0f}] | "
                    f"{statistics.median(r):.0f} [{min(r):.0f}-{max(r):.0f}] | "
                    f"{runs[0][2]:.1f} | {runs[0][3]} |"
                )


if __name__ == "__main__":
    main()
