"""7: a batch whose cost per session does not grow (issue 15).

- 7a: ``convert`` (default scheduler) of 1,000 small sessions against 100: ms per session;
- 7b: a re-run over the 1,000 unchanged sessions against their first conversion;
- 7c: the catalog/driver path alone, with 100,000 catalog rows (a re-run: every session
  skipped; no conversion, no scheduler): ms per session and the driver's peak RSS;
- 7d: the same path for a first run of 10,000 sessions (every one converted: a log fragment,
  fsynced, per session).

Sessions are 12 frames from ``reacture_convert.testing.synth``, so per-session overheads show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import Bench, ChildRun, Row, paired_ratio, seconds

from reacture_convert.testing.synth import BundleSpec, write_bundle

TARGETS = {
    "7a": "≤ 1.15",
    "7b": "≤ 0.25",
    "7c": "≤ 300 MB",
    "7d": "≤ 300 MB",
}
FRAMES = 12
SESSIONS = {False: (100, 1_000), True: (3, 8)}  # (few, many) by --quick
SIMULATED = {False: (100_000, 10_000), True: (300, 100)}  # (re-run, first run) by --quick
REPS = 3


def _bundles(b: Bench, n: int) -> Path:
    """A folder of ``n`` small bundles (the first ones of a set made once per run)."""
    many = b.work / "batch-scale" / "all"
    if not many.exists():
        t0 = time.perf_counter()
        for k in range(max(SESSIONS[b.quick])):
            prefix = f"reacture_{1795800000000 + k}"
            write_bundle(
                many / prefix, BundleSpec(n_frames=FRAMES, seed=k, prefix=prefix, interval_ms=100)
            )
        print(
            f"  generated {k + 1:,} bundles of {FRAMES} frames in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    folder = b.work / "batch-scale" / str(n)
    if not folder.exists():  # hard links to the first n
        for bundle in sorted(many.iterdir())[:n]:
            (folder / bundle.name).mkdir(parents=True)
            for f in bundle.iterdir():
                os.link(f, folder / bundle.name / f.name)
    return folder


def measure_batch_scale(b: Bench) -> list[Row]:
    few, many = SESSIONS[b.quick]
    reps = min(b.reps, REPS)
    src = {n: _bundles(b, n) for n in (few, many)}
    small: list[ChildRun] = []
    first: list[ChildRun] = []
    again: list[ChildRun] = []
    for r in range(reps):
        small.append(b.child(b.convert_cmd(src[few], b.fresh("m7-few"), "zarr")))
        out = b.fresh("m7-many")
        first.append(b.child(b.convert_cmd(src[many], out, "zarr")))
        again.append(b.child(b.convert_cmd(src[many], out, "zarr")))
        print(
            f"    #{r + 1}: {few} sessions {small[-1].seconds:.2f} s, {many} sessions "
            f"{first[-1].seconds:.2f} s, re-run {again[-1].seconds:.2f} s",
            flush=True,
        )
    per_few = [x.seconds * 1000 / few for x in small]
    per_many = [x.seconds * 1000 / many for x in first]
    growth = paired_ratio(per_many, per_few)
    rerun = paired_ratio([x.seconds for x in again], [x.seconds for x in first])
    t_few, t_many, t_again = seconds(small), seconds(first), seconds(again)
    marginal = (t_many.median - t_few.median) * 1000 / (many - few)  # without the start
    load = f"load average {os.getloadavg()[0]:.2f} at the end"
    return [
        Row(
            "7a",
            f"convert {many:,} vs {few} sessions × {FRAMES} frames (default scheduler)",
            f"{many:,}: {t_many.median * 1000 / many:.1f} ms/session",
            f"{few}: {t_few.median * 1000 / few:.1f} ms/session",
            growth.fmt("×"),
            TARGETS["7a"],
            growth.median <= 1.15,
            [
                f"wall times {t_few.fmt('s')} and {t_many.fmt('s')}, each including the local "
                f"Dask cluster's start; the sessions from the {few + 1}th to the {many:,}th "
                f"cost {marginal:.1f} ms each; {reps} repetition(s); {load}"
            ],
            {"few_s": list(t_few.samples), "many_s": list(t_many.samples)},
        ),
        Row(
            "7b",
            f"re-run of {many:,} unchanged sessions vs their first conversion",
            f"re-run: {t_again.fmt('s')}",
            f"first: {t_many.fmt('s')}",
            rerun.fmt("×"),
            TARGETS["7b"],
            rerun.median <= 0.25,
            [
                f"{t_again.median * 1000 / many:.1f} ms per skipped session (hashing its files: "
                "sessions with a live catalog row go several to a task)"
            ],
            {"rerun_s": list(t_again.samples)},
        ),
        *_simulated(b),
    ]


# --- the catalog/driver path alone -------------------------------------------------------------


def _row(i: int, run: str) -> Any:
    from reacture_convert.findings import finding
    from reacture_convert.output.catalog import CatalogEntry

    p = f"reacture_{1795600000000 + i}"
    return CatalogEntry(
        session=p,
        source=f"/data/incoming/2026-11-25/{p}",
        prefix=p,
        status="converted",  # type: ignore[arg-type]
        metadata_session_id=f"{p}_q32il4ctq",
        n_frames=12,
        n_rows=48,
        blank_frames=0,
        hashes={
            role: hashlib.sha256(f"{i}{role}".encode()).hexdigest()
            for role in ("metadata.json", "data.jsonl", "frames.npy", "timestamps.npy", "README.md")
        },
        findings=(finding("TS_GAP", f"{p}_timestamps.npy", "a pause of 250 ms", frame=3),),
        outputs=(f"zarr/{p}.zarr", f"rows/{p}.parquet", f"frames/{p}.parquet"),
        converter_version="0.1.0",
        converted_at=dt.datetime.now(dt.UTC),
        run_id=run,
    )


def _write_catalog(out: Path, n: int) -> None:
    """A catalog of ``n`` converted rows, as a run leaves it (written here, untimed)."""
    from reacture_convert.output.catalog import CATALOG
    from reacture_convert.output.catalog.entry import entries_table
    from reacture_convert.output.catalog.log import encode_compacted
    from reacture_convert.output.storage import Output

    out.mkdir(parents=True)
    tables = (
        entries_table([_row(i, "r0") for i in range(a, min(n, a + 10_000))])
        for a in range(0, n, 10_000)
    )
    Output(str(out)).write_atomic(CATALOG, lambda f: encode_compacted(tables, 0, f))


def child_driver(mode: str, n: str, out: str) -> dict[str, Any]:
    """The driver's part of a run of ``n`` sessions into ``out``, with no conversion: each
    session's previous row looked up, its task's result (``skipped`` for ``rerun``, a new
    ``converted`` row for ``first``) committed and recorded, the catalog flushed after each
    one, compacted at the end, the summary built. A Dask client is imported, as a driver has."""
    import distributed  # noqa: F401 - a driver's baseline memory

    from reacture_convert.ingest.bundle import BundleRef
    from reacture_convert.output.catalog import Catalog
    from reacture_convert.output.storage import Output
    from reacture_convert.run.convert import ConvertOptions, SessionResult
    from reacture_convert.run.driver import SessionRunner
    from reacture_convert.run.summary import RunSummary

    output, count, options = Output(out), int(n), ConvertOptions()
    t0 = time.perf_counter()
    catalog = Catalog.load(output)
    runner = SessionRunner(output, catalog, "r1", lambda *task: None)
    t1 = time.perf_counter()
    rows = []
    for i in range(count):
        prefix = f"reacture_{1795600000000 + i}"
        bundle = BundleRef(prefix, f"/data/incoming/2026-11-25/{prefix}", {})
        previous = catalog.live(prefix)
        runner.start((bundle.source, prefix), bundle, options, previous)
        if mode == "rerun":
            assert previous is not None
            entry = replace(
                previous,
                status="skipped",  # type: ignore[arg-type]
                reason="unchanged since last run",
                converted_at=dt.datetime.now(dt.UTC),
                run_id="r1",
            )
        else:
            entry = _row(i, "r1")
        rows.append(runner.finish((bundle.source, prefix), SessionResult(entry)).row)
        catalog.flush()
    t2 = time.perf_counter()
    catalog.flush(final=True)
    summary = RunSummary(out=out, run_id="r1", entries=catalog.entries(rows, ordered=True))
    counts = summary.counts
    t3 = time.perf_counter()
    return {
        "load_s": t1 - t0,
        "sessions_s": t2 - t1,
        "end_s": t3 - t2,
        "ms_per_session": (t3 - t0) * 1000 / count,
        "counts": {str(k): v for k, v in counts.items()},
    }


def _simulated(b: Bench) -> list[Row]:
    rows = []
    rerun_n, first_n = SIMULATED[b.quick]
    for key, mode, n in (("7c", "rerun", rerun_n), ("7d", "first", first_n)):
        out = b.fresh(f"m{key}-catalog")
        if mode == "rerun":
            _write_catalog(out, n)
        else:
            out.mkdir()
        run = b.child(b.child_cmd("batch-driver", mode, n, out))
        got = run.result()
        print(
            f"    {key}: {n:,} sessions, {got['ms_per_session']:.3f} ms each, peak RSS "
            f"{run.max_rss_mb:.0f} MB",
            flush=True,
        )
        what = (
            f"re-run over a catalog of {n:,} rows (all skipped)"
            if mode == "rerun"
            else f"first run of {n:,} sessions (each converted: a log fragment, fsynced)"
        )
        rows.append(
            Row(
                key,
                f"driver path alone: {what}",
                f"peak RSS {run.max_rss_mb:.0f} MB, {got['ms_per_session']:.3f} ms/session",
                "–",
                f"load {got['load_s']:.2f} s, sessions {got['sessions_s']:.1f} s, "
                f"compaction + summary {got['end_s']:.2f} s",
                TARGETS[key],
                run.max_rss_mb <= 300,
                [
                    "catalog load, each session's previous row, commit and record, a flush "
                    "after each session, the final compaction and the summary; no conversion "
                    "and no scheduler (a Dask client is imported, as in a driver)"
                ],
                {**got, "max_rss_mb": run.max_rss_mb, "sessions": n},
            )
        )
    return rows


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"7": measure_batch_scale}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {"batch-driver": child_driver}
