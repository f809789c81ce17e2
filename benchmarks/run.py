"""Benchmarks of reacture-convert against the physical limit of this machine: ``make bench``.

    .venv/bin/python benchmarks/run.py [--quick] [--only 1,4] [--reps N] [--workdir DIR]
                                       [--results DIR] [--keep]

Each module here owns a group of measurements (``MEASUREMENTS``: key -> function) and the child
processes they run (``CHILD_MODES``); ``harness`` holds what they share:

- ``convert``: 1. ``convert --format zarr`` of a 10-minute session (6,000 frames) vs ``cp -r`` +
  fsync; 2. ``convert --format wds`` of the same vs ``tar cf`` of the same bytes + fsync;
- ``rows``: 3. JSONL -> Parquet alone, MB/s of JSONL, vs DuckDB's ``read_json_auto`` and polars'
  ``read_ndjson``, and what each keeps of the rows (every row round-tripped, types included);
  3b. the whole ``convert`` of a rows-heavy bundle (67 MB of JSONL, 1,000 frames) vs DuckDB's
  JSONL -> Parquet of its data.jsonl, both whole processes, DuckDB on every core;
- ``memory``: 4. peak RSS of ``convert`` for 10-, 60- and 120-minute sessions;
- ``scale``: 5. 8 sessions on 1 vs 2 local Dask worker processes: speedup;
- ``readers``: 6. training read: frames/s of ``to_pytorch_dataloader`` (Zarr, shards; in order
  and shuffled) vs a plain PyTorch DataLoader over the source frames.npy memory-mapped;
- ``batch_scale``: 7. cost per session of a batch of 1,000 small sessions vs 100, a re-run of
  unchanged sessions vs their first conversion, and the catalog/driver path alone at 100,000
  catalog rows (time and peak memory);
- ``cloud``: 8. training read from an object store (moto's S3 server behind a proxy adding 30 ms
  per request): frames/s against the same reader on local disk, without and with the local
  cache, and the requests and bytes of an epoch;
- ``upload``: 9. ``convert --out s3://...`` (same server and proxy) of the 10-minute session,
  Zarr and shards, and of measurement 5's batch (sharded Zarr), against converting to local
  disk and then uploading with s3fs (16 at once), and against the local convert alone;
  requests and bytes sent.

Bundles come from ``reacture_convert.testing.synth`` (the real exporter's file format; game-like
frames whose zstd ratio is printed next to the real variant recording's), at 100 ms a frame,
written to a temporary folder on the same disk as the outputs. Sources are in the page cache for
product and baseline alike (they were just written): the baselines are the physical limit of
doing the same with those bytes.

Prints a Markdown table and writes it to ``benchmarks/results.md`` (and ``results.json``).
``--quick`` uses tiny inputs and one repetition: a smoke test, its numbers mean nothing, so it
writes to ``benchmarks/out/`` (ignored by git) unless ``--results`` says where.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import batch_scale  # noqa: E402
import cloud  # noqa: E402
import convert  # noqa: E402
import memory  # noqa: E402
import readers  # noqa: E402
import rows  # noqa: E402
import scale  # noqa: E402
import upload  # noqa: E402
from harness import (  # noqa: E402
    TARGETS,
    Bench,
    ChildFailed,
    Row,
    compression_check,
    machine,
    render,
)

GROUPS = (convert, rows, memory, scale, readers, batch_scale, cloud, upload)
MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {
    key: fn for group in GROUPS for key, fn in group.MEASUREMENTS.items()
}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {
    mode: fn for group in GROUPS for mode, fn in group.CHILD_MODES.items()
}


def parse_only(text: str | None) -> list[str]:
    """The measurement keys asked for: ``1,4`` picks 1 and 4 (``6`` also picks 6a, 6b, ...)."""
    if not text:
        return list(MEASUREMENTS)
    asked = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [k for k in asked if k not in MEASUREMENTS]
    if unknown:
        raise SystemExit(f"--only: no measurement {unknown}; choose from {', '.join(MEASUREMENTS)}")
    return [k for k in MEASUREMENTS if k in asked]


def same_disk_workdir(requested: str | None) -> str:
    """``requested``, else the system temp folder when it is on the same disk as the results,
    else a folder beside the results."""
    if requested:
        return requested
    tmp = tempfile.gettempdir()
    here = Path(__file__).resolve().parent
    if os.stat(tmp).st_dev == os.stat(here).st_dev:
        return tmp
    (here / ".work").mkdir(exist_ok=True)
    return str(here / ".work")


def results_folder(quick: bool, requested: str | None) -> Path:
    """Where results.md and results.json go: ``requested``, else ``benchmarks/`` (the recorded
    results), else for a ``--quick`` smoke run ``benchmarks/out/``, which git ignores."""
    if requested is not None:
        return Path(requested)
    here = Path(__file__).resolve().parent
    return here / "out" if quick else here


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny inputs, one repetition (smoke)")
    ap.add_argument("--only", help="comma-separated measurement keys (default: all)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, quick 1)")
    ap.add_argument(
        "--workdir",
        help="where bundles and outputs go (default: a temp folder "
        "on the same disk as the results)",
    )
    ap.add_argument(
        "--results",
        help="folder for results.md and results.json (default benchmarks/; with --quick, "
        "benchmarks/out/, so a smoke run never replaces the recorded results)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.results = str(results_folder(args.quick, args.results))
    if args.child:
        return run_child_mode(args.child)
    picked = parse_only(args.only)
    args.workdir = same_disk_workdir(args.workdir)
    # the package's bytecode, as a wheel install leaves it: a measured command that had to
    # compile it (PYTHONDONTWRITEBYTECODE set, or a source changed since) would pay ~0.1 s
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "reacture_convert"), quiet=1)
    started = time.perf_counter()
    b = Bench(args)
    print(
        f"work folder {b.work} ({shutil.disk_usage(b.work).free / 1e9:.0f} GB free); "
        f"{b.reps} repetition(s); load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows: list[Row] = []
    failed = False
    info: dict[str, Any] = {
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": b.quick,
        "reps": b.reps,
        "machine": machine(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        info["compression"] = compression_check(b)
        print(
            "  zstd-1 ratio: generator {generator:.1f}x, real {real:.1f}x".format(
                **{"real": float("nan"), **info["compression"]}
            ),
            flush=True,
        )
        for k in picked:
            print(f"[{k}] {MEASUREMENTS[k].__name__}", flush=True)
            t0 = time.perf_counter()
            try:
                rows += MEASUREMENTS[k](b)
            except ChildFailed as e:
                failed = True
                print(f"  FAILED: {e}", flush=True)
                rows.append(
                    Row(
                        k,
                        MEASUREMENTS[k].__name__,
                        "error",
                        "–",
                        "error",
                        TARGETS.get(k, "–"),
                        None,
                        [str(e)[:500]],
                    )
                )
            info.setdefault("took_s_each", {})[k] = round(time.perf_counter() - t0, 1)
            print(f"  [{k}] took {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(b.work, ignore_errors=True)
    info["took_s"] = time.perf_counter() - started
    info["load_at_end"] = os.getloadavg()
    text = render(rows, info)
    print()
    print(text)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.md").write_text(text, encoding="utf-8")
    doc = {**info, "rows": [asdict(r) for r in rows]}
    (results / "results.json").write_text(
        json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return 1 if failed else 0


def run_child_mode(argv: Sequence[str]) -> int:
    mode, *rest = argv
    if mode not in CHILD_MODES:
        raise SystemExit(f"unknown child mode {mode}")
    print(json.dumps(CHILD_MODES[mode](*rest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
