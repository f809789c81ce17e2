"""Measure compressed shards (``--shard-compression``): whole shard-set bytes against the Zarr
store's, and the shard reader's shuffled frames/s, for every picture encoding with shards plain
and gzip-compressed (levels 1 and 6).

    .venv/bin/python benchmarks/shard_compression.py [--frames 2000] [--reps 2]

Datasets, converted with ``convert --format zarr,wds`` once per (encoding, compression):

- ``real``: the three real recordings of tests/data/real.tar.gz (534 frames);
- ``generated``: one ``testing.synth`` game-like session of ``--frames`` frames.

Columns: shard-set bytes (every ``wds/*.tar*``), that against ``zarr/`` (every Zarr object) and
against ``zarr/`` with the ``rows/`` and ``frames/`` tables (the labels, which shards hold too), and
``ShardSource.iter_batches(64, shuffle=True)`` frames/s on one core, local disk, best of
``--reps`` epochs after a first one that learns the offsets (a compressed shard is decompressed
once for them). The machine is shared: compare ratios.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

from reacture_convert.output.storage import Output
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.sources import ShardSource
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.webdataset import WdsOptions

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [
    (encoding, compression, level)
    for encoding in ("npy", "webp", "png")
    for compression, level in (("none", 6), ("gzip", 1), ("gzip", 6))
]


def folder_bytes(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def frames_per_second(out: Path, reps: int) -> float:
    source = ShardSource(out, ReadOptions(skip_blank=False))
    n = sum(len(b["frame"]) for b in source.iter_batches(64, shuffle=True, seed=0, epoch=0))
    best = float("inf")
    for epoch in range(1, reps + 1):
        t = time.perf_counter()
        for _ in source.iter_batches(64, shuffle=True, seed=0, epoch=epoch):
            pass
        best = min(best, time.perf_counter() - t)
    return n / best


def measure(name: str, inputs: Path, root: Path, reps: int) -> None:
    print(f"\n{name}")
    print(
        "| encoding | shards | shard-set bytes | vs zarr/ | vs zarr/ + rows/ + frames/ "
        "| frames/s (shuffled) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for encoding, compression, level in CANDIDATES:
        out = root / f"{name}-{encoding}-{compression}-{level}"
        wds = WdsOptions(encoding=encoding, compression=compression, compression_level=level)
        options = ConvertOptions(formats=("zarr", "wds"), wds=wds)
        assert run_convert([str(inputs)], Output(str(out)), options, scheduler="sync").ok
        shards = folder_bytes(out / "wds", "*.tar*")
        zarr = folder_bytes(out / "zarr")
        store = zarr + folder_bytes(out / "rows") + folder_bytes(out / "frames")
        label = "plain .tar" if compression == "none" else f"gzip -{level}"
        fps = frames_per_second(out, reps)
        print(
            f"| {encoding} | {label} | {shards:,} | {shards / zarr:.2f}x "
            f"| {shards / store:.2f}x | {fps:,.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        real = root / "real-in"
        with tarfile.open(REPO / "tests" / "data" / "real.tar.gz") as tar:
            tar.extractall(real, filter="data")
        measure("real (534 frames)", real, root, args.reps)
        spec = BundleSpec(n_frames=args.frames, seed=1, prefix="reacture_1795640000001")
        write_bundle(root / "gen-in" / spec.prefix, spec)
        measure(f"generated ({args.frames} frames)", root / "gen-in", root, args.reps)


if __name__ == "__main__":
    main()
