"""Benchmarks of reacture-convert against the physical limit of this machine: ``make bench``.

    .venv/bin/python benchmarks/run.py [--quick] [--only 1,4] [--reps N] [--workdir DIR]
                                       [--results DIR] [--keep]

1. ``convert --format zarr`` of a 10-minute session (6,000 frames) vs ``cp -r`` + fsync;
2. ``convert --format wds`` of the same vs ``tar cf`` of the same bytes + fsync;
3. JSONL -> Parquet alone (``iter_jsonl`` + ``write_rows``), MB/s of JSONL, vs DuckDB's
   ``read_json_auto`` and polars' ``read_ndjson`` (one thread each), and what each keeps of the
   rows (every row round-tripped and compared with the JSON, types included);
4. peak RSS of ``convert`` for 10-, 60- and 120-minute sessions (6k, 36k, 72k frames);
5. 8 sessions with ``--scheduler processes --workers 1`` vs ``--workers 2``: speedup;
6. training read: frames/s through ``torch_data.FrameDataset`` / ``ShardDataset`` vs the
   memory-mapped source frames.npy, sequential and random access.

Bundles come from ``reacture_convert.testing.synth`` (the real exporter's file format; game-like frames
whose zstd ratio is printed next to the real variant fixture's), at 100 ms a frame, written to a
temporary folder on the same disk as the outputs. Every measurement runs in child processes and
is the median of ``--reps`` repetitions (default 5) that alternate product and baseline, with
min-max; ratios come from the same run. Peak RSS is the child's ``ru_maxrss`` (``wait4``),
taken by a small runner process in between (see ``_RUNNER``).
Before each timed child, dirty pages are flushed (``os.sync``) so that one step's writeback is
not billed to the next. Sources are in the page cache for product and baseline alike (they were
just written): the baselines are the physical limit of copying those bytes to disk durably.

Prints a Markdown table and writes it to ``benchmarks/results.md`` (and ``results.json``).
``--quick`` uses tiny inputs and one repetition: a smoke test, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reacture_convert.testing.synth import BundleSpec, write_bundle  # noqa: E402

FRAME_BYTES = 128 * 128 * 3
NPY_OFFSET = 129  # the game's .npy header is 129 bytes
REAL_FRAMES = (REPO.parent / "shared" / "fixtures" / "real" / "variant_preserve_drawing_buffer"
               / "reacture_1795637148842" / "reacture_1795637148842_frames.npy")
MIN_FREE_FOR_LARGEST = 20e9  # bytes: below this the 120-minute session is skipped
FRAMES_PER_MINUTE = 600  # 10 Hz

TARGETS = {
    "1": "≤ 3× cp+fsync",
    "2": "≤ 1.5× tar",
    "3": "≥ 100 MB/s, lossless",
    "4": "≤ 300 MB at 120 min",
    "5": "≥ 1.8×",
    "6": "≥ 80 % of raw mmap",
}


@dataclass(frozen=True)
class Sizes:
    """Input sizes of one benchmark run, in frames."""

    session: int  # the "10-minute" session of measurements 1, 2, 3, 6
    rss: tuple[int, ...]  # measurement 4: 10, 60, 120 minutes
    batch: tuple[int, int]  # measurement 5: sessions, frames each
    random_reads: int  # measurement 6: random accesses per repetition


FULL = Sizes(session=6_000, rss=(6_000, 36_000, 72_000), batch=(8, 1_500), random_reads=500)
QUICK = Sizes(session=40, rss=(40, 80, 120), batch=(8, 10), random_reads=20)


# --- child processes ----------------------------------------------------------------------------
class ChildFailed(RuntimeError):
    """A child process exited with a non-zero status."""


@dataclass(frozen=True)
class ChildRun:
    """One child process: wall time, its peak RSS (``wait4``), and what it printed."""

    seconds: float
    max_rss_mb: float
    stdout: str

    def result(self) -> dict[str, Any]:
        """The JSON document a ``--child`` mode printed last."""
        loaded: dict[str, Any] = json.loads(self.stdout.strip().splitlines()[-1])
        return loaded


# A tiny process between this one and the measured command. ``ru_maxrss`` of a child starts at
# the high-water RSS of the process it was forked from (Linux carries the old mm's peak across
# fork and exec), and this process holds frames and parsed rows: measured directly, every child
# would "peak" at least at this process's peak. The runner is a fresh ``python -S`` of a few MB;
# it spawns the command, waits for it with ``wait4`` and writes wall time and peak RSS to a file.
_RUNNER = """
import json, os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
with open(report, "w") as f:
    json.dump({"seconds": seconds, "max_rss_kb": usage.ru_maxrss,
               "status": os.waitstatus_to_exitcode(status)}, f)
"""


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None,
              flush: bool = True) -> ChildRun:
    """Run ``cmd`` to completion through the runner: wall time from spawn to exit, its peak
    RSS, its stdout. ``flush`` first writes back dirty pages so earlier steps are not billed."""
    if flush:
        os.sync()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            proc = subprocess.run([sys.executable, "-S", "-c", _RUNNER, str(report), *cmd],
                                  stdout=out, stderr=err, env={**os.environ, **(env or {})})
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        done = json.loads(report.read_text()) if report.exists() else {"status": proc.returncode}
    if proc.returncode != 0 or done["status"] != 0:
        raise ChildFailed(f"{' '.join(cmd)} exited {done['status']}: {stderr.strip()[-2000:]}")
    return ChildRun(done["seconds"], done["max_rss_kb"] / 1024, stdout)


def alternate(reps: int, contenders: Sequence[tuple[str, Callable[[int], ChildRun]]]
              ) -> dict[str, list[ChildRun]]:
    """Run the contenders in turn, ``reps`` rounds: A, B, A, B, ..."""
    runs: dict[str, list[ChildRun]] = {name: [] for name, _ in contenders}
    for r in range(reps):
        for name, fn in contenders:
            runs[name].append(fn(r))
            print(f"    {name} #{r + 1}: {runs[name][-1].seconds:.2f} s", flush=True)
    return runs


# --- statistics and formatting ------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """Median and range of a list of samples."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stat:
        xs = tuple(samples)
        return cls(statistics.median(xs), min(xs), max(xs), xs)

    def fmt(self, unit: str, digits: int = 2) -> str:
        if len(self.samples) == 1:
            return f"{self.median:.{digits}f} {unit}"
        return f"{self.median:.{digits}f} {unit} [{self.low:.{digits}f}–{self.high:.{digits}f}]"


def seconds(runs: Sequence[ChildRun]) -> Stat:
    return Stat.of(r.seconds for r in runs)


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> Stat:
    """Ratio of medians, with the range of the per-round ratios."""
    per_round = [x / y for x, y in zip(a, b, strict=True)]
    return Stat(statistics.median(a) / statistics.median(b), min(per_round), max(per_round),
                tuple(per_round))


@dataclass
class Row:
    """One line of the results table (``data`` holds the raw samples for results.json)."""

    key: str
    measurement: str
    product: str
    baseline: str
    result: str
    target: str
    met: bool | None
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        met = {True: "yes", False: "**no**", None: "–"}[self.met]
        cells = [self.key, self.measurement, self.product, self.baseline, self.result,
                 self.target, met]
        return "| " + " | ".join(cells) + " |"


TABLE_HEAD = ("| # | measurement | product | baseline | result | target | met |\n"
              "|---|---|---|---|---|---|---|")


def minutes(frames: int) -> str:
    return f"{frames:,} frames ({frames / FRAMES_PER_MINUTE:.3g} min)"


# --- workspace: bundles and converted outputs ---------------------------------------------------
def du(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Bench:
    """Where a run keeps its inputs and outputs, and how it calls the product."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.quick: bool = args.quick
        self.sizes = QUICK if args.quick else FULL
        self.reps: int = args.reps or (1 if args.quick else 5)
        self.work = Path(tempfile.mkdtemp(prefix="reacture-bench-", dir=args.workdir))
        self.cli = self.find_cli()
        self._bundles: dict[str, Path] = {}
        self._converted: Path | None = None

    @staticmethod
    def find_cli() -> list[str]:
        exe = Path(sys.executable).parent / "reacture-convert"
        return [str(exe)] if exe.exists() else [sys.executable, "-m", "reacture_convert"]

    def child(self, cmd: Sequence[str], **kw: Any) -> ChildRun:
        return run_child(cmd, flush=not self.quick, **kw)

    def fresh(self, name: str) -> Path:
        """An empty path in the work folder (whatever was there is removed, untimed)."""
        path = self.work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        return path

    def bundle(self, n_frames: int, seed: int = 1, group: str = "bundles") -> Path:
        """The folder of a generated bundle of ``n_frames`` frames (made once per run)."""
        prefix = f"reacture_{1795600000000 + seed * 1_000_003 + n_frames}"
        folder = self.work / group / prefix
        if str(folder) not in self._bundles:
            t0 = time.perf_counter()
            write_bundle(folder, BundleSpec(n_frames=n_frames, seed=seed, prefix=prefix,
                                            interval_ms=100))
            took = time.perf_counter() - t0
            print(f"  generated {folder.name}: {minutes(n_frames)}, {du(folder) / 1e6:,.0f} MB "
                  f"in {took:.1f} s ({n_frames / took:,.0f} frames/s)", flush=True)
            self._bundles[str(folder)] = folder
        return folder

    def drop_bundle(self, folder: Path) -> None:
        self._bundles.pop(str(folder), None)
        shutil.rmtree(folder, ignore_errors=True)

    def files(self, folder: Path) -> dict[str, Path]:
        """The five files of a bundle folder by role (``frames.npy``, ``data.jsonl``, ...)."""
        return {p.name.split("_", 2)[-1]: p for p in folder.iterdir()}

    def convert_cmd(self, src: Path, out: Path, fmt: str, *extra: str) -> list[str]:
        return [*self.cli, "convert", str(src), "--out", str(out), "--format", fmt, "--quiet",
                *extra]

    def converted(self) -> Path:
        """The session bundle converted to Zarr and shards once (for the readers, untimed)."""
        if self._converted is None:
            out = self.fresh("readers-out")
            run_child(self.convert_cmd(self.bundle(self.sizes.session), out, "zarr,wds",
                                       "--scheduler", "sync"), flush=False)
            self._converted = out
        return self._converted

    def child_cmd(self, mode: str, *args: object) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--child", mode,
                *map(str, args)]


# --- 1, 2: convert vs copying the bytes ---------------------------------------------------------
def measure_convert_zarr(b: Bench) -> list[Row]:
    src = b.bundle(b.sizes.session)

    def product(r: int) -> ChildRun:
        return b.child(b.convert_cmd(src, b.fresh("m1-out"), "zarr", "--scheduler", "sync"))

    def baseline(r: int) -> ChildRun:
        dest = b.fresh("m1-cp")
        return b.child(["sh", "-c", 'cp -r "$1" "$2" && sync "$2"/* "$2" "$3"', "sh",
                        str(src), str(dest), str(dest.parent)])

    runs = alternate(b.reps, [("convert --format zarr", product), ("cp -r + fsync", baseline)])
    return [_vs_row("1", f"convert --format zarr, {minutes(b.sizes.session)}", runs, src,
                    limit=3.0)]


def measure_convert_wds(b: Bench) -> list[Row]:
    src = b.bundle(b.sizes.session)

    def product(r: int) -> ChildRun:
        return b.child(b.convert_cmd(src, b.fresh("m2-out"), "wds", "--scheduler", "sync"))

    def baseline(r: int) -> ChildRun:
        dest = b.fresh("m2.tar")
        return b.child(["sh", "-c", 'tar cf "$1" -C "$2" "$3" && sync "$1" "$4"', "sh",
                        str(dest), str(src.parent), src.name, str(dest.parent)])

    runs = alternate(b.reps, [("convert --format wds", product), ("tar cf + fsync", baseline)])
    return [_vs_row("2", f"convert --format wds, {minutes(b.sizes.session)}", runs, src,
                    limit=1.5)]


def _vs_row(key: str, name: str, runs: dict[str, list[ChildRun]], src: Path,
            limit: float) -> Row:
    (pname, prod), (bname, base) = runs.items()
    ratio = paired_ratio([r.seconds for r in prod], [r.seconds for r in base])
    mb = du(src) / 1e6
    return Row(
        key, name, seconds(prod).fmt("s"), f"{bname}: {seconds(base).fmt('s')}",
        ratio.fmt("×"), TARGETS[key], ratio.median <= limit,
        notes=[f"bundle {mb:,.0f} MB: product {mb / seconds(prod).median:,.0f} MB/s, "
               f"baseline {mb / seconds(base).median:,.0f} MB/s; product peak RSS "
               f"{max(r.max_rss_mb for r in prod):,.0f} MB"],
        data={"bundle_mb": mb, "product_s": [r.seconds for r in prod],
              "baseline_s": [r.seconds for r in base],
              "product_rss_mb": [r.max_rss_mb for r in prod], "ratio": ratio.median},
    )


# --- 3: JSONL -> Parquet ------------------------------------------------------------------------
JSONL_READERS = ("product", "duckdb", "polars")


def measure_jsonl(b: Bench) -> list[Row]:
    jsonl = b.files(b.bundle(b.sizes.session))["data.jsonl"]
    mb = jsonl.stat().st_size / 1e6
    outs = {name: b.work / f"m3-{name}.parquet" for name in JSONL_READERS}
    one_thread = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}

    def contender(name: str) -> Callable[[int], ChildRun]:
        return lambda r: b.child(b.child_cmd(f"jsonl-{name}", jsonl, b.fresh(outs[name].name)),
                                 env=one_thread)

    runs = alternate(b.reps, [(name, contender(name)) for name in JSONL_READERS])
    speed = {name: Stat.of(mb / r.result()["seconds"] for r in rs) for name, rs in runs.items()}
    fidelity = {name: compare_rows(jsonl, outs[name], rebuild=name == "product")
                for name in JSONL_READERS}
    lossless = fidelity["product"]["rows_differ"] == 0
    notes = [f"{mb:,.1f} MB of JSONL, {fidelity['product']['rows']:,} rows; MB/s of the work "
             "alone (parse + write, interpreter start and imports excluded), one thread each"]
    for name in JSONL_READERS:
        notes.append(f"{name}: {describe_fidelity(fidelity[name])}")
    base = "; ".join(f"{n}: {speed[n].fmt('MB/s', 0)}" for n in JSONL_READERS[1:])
    return [Row(
        "3", "JSONL → Parquet (rows table alone)", speed["product"].fmt("MB/s", 1), base,
        f"{speed['product'].median:.1f} MB/s, " + ("lossless" if lossless else "**lossy**"),
        TARGETS["3"], speed["product"].median >= 100 and lossless, notes,
        {"jsonl_mb": mb, "mb_per_s": {n: list(s.samples) for n, s in speed.items()},
         "fidelity": fidelity},
    )]


def _type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list",
            dict: "object"}.get(type(v), type(v).__name__)


def diff_values(orig: Any, got: Any, path: str, found: Counter[tuple[str, str]],
                examples: dict[str, str] | None = None) -> None:
    """Count how ``got`` differs from ``orig`` (a parsed JSON value), by kind and path;
    keep the first example of each kind in ``examples``."""
    examples = {} if examples is None else examples
    to, tg = _type(orig), _type(got)

    def seen(kind: str, where: str, example: str | None = None) -> None:
        found[(kind, where)] += 1
        if example is not None:
            examples.setdefault(kind, f"`{where}`: {example}")

    if to != tg:
        seen(f"{to} → {tg}", path, f"{_short(orig)} → {_short(got)}")
    elif to == "object":
        shared = [k for k in orig if k in got]
        if [k for k in got if k in orig] != shared:
            seen("key order changed", path or "(row)",
                 f"{_short(list(orig))} → {_short([k for k in got if k in orig])}")
        for k in orig:
            where = f"{path}.{k}".lstrip(".")
            if k not in got:
                seen("field dropped", where, _short(orig[k]))
            else:
                diff_values(orig[k], got[k], where, found, examples)
        for k in got:
            if k not in orig:
                where = f"{path}.{k}".lstrip(".")
                seen("absent → null" if got[k] is None else "field added", where)
    elif to == "list":
        if len(orig) != len(got):
            seen("list length changed", path, f"{len(orig)} → {len(got)}")
        for o, g in zip(orig, got, strict=False):
            diff_values(o, g, f"{path}[]", found, examples)
    elif orig != got:
        seen("value changed", path, f"{_short(orig)} → {_short(got)}")


def _short(v: Any, width: int = 60) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def compare_rows(jsonl: Path, parquet: Path, rebuild: bool) -> dict[str, Any]:
    """Round-trip every row of ``jsonl`` through ``parquet`` and say what differs."""
    import pyarrow.parquet as pq

    from reacture_convert.writers.rows import rebuild_row

    originals = [json.loads(line) for line in jsonl.read_bytes().split(b"\n") if line.strip()]
    records = pq.read_table(parquet).to_pylist()
    got = [rebuild_row(r) for r in records] if rebuild else records
    found: Counter[tuple[str, str]] = Counter()
    examples: dict[str, str] = {}
    rows_differ = 0
    ignored = {"session", "row_index", "kind", "frame_index", "extra"} if rebuild else set()
    for o, g in zip(originals, got, strict=False):
        before = sum(found.values())
        diff_values(o, {k: v for k, v in g.items() if k not in ignored}, "", found, examples)
        rows_differ += sum(found.values()) > before
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, path), n in sorted(found.items()):
        by_kind.setdefault(kind, {})[path] = n
    return {"rows": len(originals), "rows_read": len(records), "rows_differ": rows_differ,
            "differences": by_kind, "examples": examples}


def describe_fidelity(f: dict[str, Any]) -> str:
    """One line: how many rows differ and how, with the fields concerned."""
    head = f"{f['rows_differ']:,} of {f['rows']:,} rows differ"
    if f["rows_read"] != f["rows"]:
        head += f" ({f['rows_read']:,} rows read back)"
    if not f["differences"]:
        return head + " (lossless, key order and types included)"
    parts = []
    for kind, paths in f["differences"].items():
        names = sorted(paths, key=lambda p: -paths[p])
        shown = ", ".join(f"`{p}` ×{paths[p]:,}" for p in names[:4])
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        example = f" (e.g. {f['examples'][kind]})" if kind in f.get("examples", {}) else ""
        parts.append(f"**{kind}**: {shown}{more}{example}")
    return head + ": " + "; ".join(parts)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def child_jsonl(reader: str, src: str, dest: str) -> dict[str, Any]:
    """Convert ``src`` JSONL to Parquet ``dest`` with one reader; time the work alone."""
    if reader == "product":
        from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
        from reacture_convert.writers.rows import write_rows

        t0 = time.perf_counter()
        with open(src, "rb") as f:
            rows = (r for r in iter_jsonl(f, Path(src).name) if isinstance(r, ParsedRow))
            n = write_rows(rows, "bench", dest)
    elif reader == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads = 1")
        t0 = time.perf_counter()
        con.execute(f"COPY (SELECT * FROM read_json_auto({_sql_text(src)})) "
                    f"TO {_sql_text(dest)} (FORMAT parquet)")
        n = -1
    elif reader == "polars":
        import polars as pl

        t0 = time.perf_counter()
        df = pl.read_ndjson(src)
        df.write_parquet(dest)
        n = df.height
    else:
        raise SystemExit(f"unknown reader {reader}")
    return {"seconds": time.perf_counter() - t0, "rows": n}


# --- 4: peak RSS against session length ---------------------------------------------------------
def measure_rss(b: Bench) -> list[Row]:
    sizes = list(b.sizes.rss)
    notes: list[str] = []
    free = shutil.disk_usage(b.work).free
    if not b.quick and free < MIN_FREE_FOR_LARGEST:
        notes.append(f"{minutes(sizes[-1])} skipped: {free / 1e9:.1f} GB free on the work disk "
                     f"(< {MIN_FREE_FOR_LARGEST / 1e9:.0f} GB)")
        print("  NOTE: " + notes[-1], flush=True)
        sizes = sizes[:-1]
    rss: dict[int, float] = {}
    secs: dict[int, float] = {}
    for n in sizes:
        src = b.bundle(n, seed=4, group=f"rss-{n}")
        run = b.child(b.convert_cmd(src, b.fresh("m4-out"), "zarr", "--scheduler", "sync"))
        rss[n], secs[n] = run.max_rss_mb, run.seconds
        print(f"    {n:,} frames: peak RSS {run.max_rss_mb:,.0f} MB, {run.seconds:.1f} s",
              flush=True)
        if n != b.sizes.session:
            b.drop_bundle(src)
    growth = rss[sizes[-1]] - rss[sizes[0]]
    per_k = 1000 * growth / max(1, sizes[-1] - sizes[0])  # MB per 1,000 frames
    notes.append("one run per size (peak RSS varies by a few MB between runs); convert speed: "
                 + ", ".join(f"{n:,} frames {n / secs[n]:,.0f} frames/s" for n in sizes))
    if per_k > 0.01:
        frames_at_300 = sizes[0] + (300 - rss[sizes[0]]) / per_k * 1000
        notes.append(f"growth {per_k:.2f} MB per 1,000 frames: at that slope a session "
                     f"reaches 300 MB at ~{frames_at_300 / FRAMES_PER_MINUTE / 60:,.1f} h")
    else:
        notes.append("no growth with N")
    largest = sizes[-1] == b.sizes.rss[-1]
    return [Row(
        "4", "peak RSS of convert --format zarr (sync)",
        ", ".join(f"{n // FRAMES_PER_MINUTE if not b.quick else n} "
                  f"{'min' if not b.quick else 'fr'}: {rss[n]:,.0f} MB" for n in sizes),
        "–", f"{growth:+,.0f} MB from shortest to longest ({per_k:+.2f} MB per 1,000 frames)",
        TARGETS["4"], rss[sizes[-1]] <= 300 if largest else None, notes,
        {"frames": sizes, "max_rss_mb": [rss[n] for n in sizes],
         "seconds": [secs[n] for n in sizes]},
    )]


# --- 5: workers --------------------------------------------------------------------------------
def measure_workers(b: Bench) -> list[Row]:
    n_sessions, n_frames = b.sizes.batch
    folder = b.work / "batch"
    for s in range(n_sessions):
        b.bundle(n_frames, seed=100 + s, group="batch")

    def with_workers(w: int) -> Callable[[int], ChildRun]:
        return lambda r: b.child(b.convert_cmd(folder, b.fresh("m5-out"), "zarr", "--scheduler",
                                               "processes", "--workers", str(w)))

    runs = alternate(b.reps, [("1 worker", with_workers(1)), ("2 workers", with_workers(2))])
    one, two = (seconds(runs[k]) for k in ("1 worker", "2 workers"))
    speedup = paired_ratio(one.samples, two.samples)
    return [Row(
        "5", f"{n_sessions} sessions × {n_frames:,} frames, --scheduler processes",
        f"2 workers: {two.fmt('s')}", f"1 worker: {one.fmt('s')}", speedup.fmt("×"),
        TARGETS["5"], speedup.median >= 1.8,
        [f"{n_sessions * n_frames / two.median:,.0f} frames/s with 2 workers, "
         f"{n_sessions * n_frames / one.median:,.0f} with 1 (wall time includes starting the "
         "local Dask cluster)"],
        {"one_s": list(one.samples), "two_s": list(two.samples), "speedup": speedup.median},
    )]


# --- 6: training read --------------------------------------------------------------------------
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
        print(f"    read #{r + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in runs[-1].items()
                                                  if k != "readers"), flush=True)
    fps = {k: Stat.of(run[k] for run in runs) for k in runs[0] if k != "readers"}
    readers = runs[0]["readers"]
    rows = []
    for key, name, product, baseline in READ_CASES:
        share = paired_ratio(fps[product].samples, fps[baseline].samples)
        notes = [f"frames/s; {readers}"]
        if key == "6b":
            notes.append(f"{b.sizes.random_reads:,} random frames of {b.sizes.session:,}")
        if key == "6d":
            notes.append("shards have no random access: shuffle=True streams shards in a "
                         "seeded order through a 256-sample buffer")
        rows.append(Row(
            key, f"read: {name}", fps[product].fmt("fr/s", 0),
            f"mmap {'random' if 'rand' in baseline else 'sequential'}: "
            f"{fps[baseline].fmt('fr/s', 0)}", f"{100 * share.median:.1f} %",
            TARGETS["6"], share.median >= 0.8, notes,
            {"product_fps": list(fps[product].samples),
             "baseline_fps": list(fps[baseline].samples), "share": share.median},
        ))
    return rows


def child_read(out: str, frames_npy: str, n_random: int, seed: int) -> dict[str, Any]:
    """Frames/s of each reader and of the raw memory map, in alternating order."""
    n = (os.path.getsize(frames_npy) - NPY_OFFSET) // FRAME_BYTES
    idx = np.random.default_rng(seed).integers(0, n, n_random).tolist()
    try:
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
    except ImportError:  # no torch (make bench does not install the torch extra)
        import zarr

        def frameds(indices: Sequence[int]) -> int:
            session = next(Path(out, "zarr").glob("*.zarr"))
            a: Any = zarr.open_array(str(session / "frames"), mode="r")
            for i in indices:
                np.asarray(a[i])
            return len(indices)

        def shards(shuffle: bool) -> int:
            import webdataset as wds

            urls = sorted(str(p) for p in Path(out, "wds").glob("*.tar"))
            ds = wds.WebDataset(urls, shardshuffle=False).decode()
            return sum(1 for _ in (ds.shuffle(256) if shuffle else ds))

        readers = ("TODO: reacture_convert.read.torch not importable (torch missing?): read "
                   "Zarr frames with zarr and the shards with webdataset instead")

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


# --- the generator against the real frames ------------------------------------------------------
def zstd_ratio(frames: np.ndarray, chunk: int = 64) -> float:
    """Compression ratio of zstd level 1 over ``chunk``-frame chunks (the Zarr default)."""
    from numcodecs import Zstd

    codec = Zstd(level=1)
    packed = sum(len(codec.encode(np.ascontiguousarray(frames[a : a + chunk])))
                 for a in range(0, len(frames), chunk))
    return frames.nbytes / packed


def frames_of(path: Path) -> np.ndarray:
    n = (path.stat().st_size - NPY_OFFSET) // FRAME_BYTES
    return np.memmap(path, np.uint8, "r", offset=NPY_OFFSET, shape=(n, 128, 128, 3))


def compression_check(b: Bench) -> dict[str, Any]:
    synth = frames_of(b.files(b.bundle(b.sizes.session))["frames.npy"])
    out: dict[str, Any] = {"generator": zstd_ratio(synth), "generator_frames": len(synth)}
    if REAL_FRAMES.exists():
        real = frames_of(REAL_FRAMES)
        out.update(real=zstd_ratio(real), real_frames=len(real))
    return out


# --- report -------------------------------------------------------------------------------------
MEASUREMENTS: dict[int, Callable[[Bench], list[Row]]] = {
    1: measure_convert_zarr,
    2: measure_convert_wds,
    3: measure_jsonl,
    4: measure_rss,
    5: measure_workers,
    6: measure_read,
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "os": platform.platform(), "python": platform.python_version(),
            "load_at_start": os.getloadavg()}


def render(rows: Sequence[Row], info: dict[str, Any]) -> str:
    m = info["machine"]
    comp = info.get("compression") or {}
    kind = ("quick smoke run: the numbers mean nothing" if info["quick"]
            else f"{info['reps']} alternating repetitions")
    lines = [
        "# reacture-convert benchmarks",
        "",
        f"Command: `{info['command']}` ({kind}), {info['started']}, "
        f"took {info['took_s'] / 60:.1f} min.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']}, "
        f"Python {m['python']}; load average at start {m['load_at_start'][0]:.2f}, "
        f"at end {info['load_at_end'][0]:.2f}.",
    ]
    if comp:
        real = (f"{comp['real']:.1f}× (real variant fixture, {comp['real_frames']} frames)"
                if "real" in comp else "real variant fixture not found")
        lines.append(f"Frames: zstd level 1 over 64-frame chunks compresses the generator's "
                     f"frames {comp['generator']:.1f}× ({comp['generator_frames']:,} frames) vs "
                     f"{real}.")
    lines += ["", "Medians with [min–max]; ratios are ratios of medians with the range of the "
              "per-round ratios.", "", TABLE_HEAD, *(r.markdown() for r in rows), "", "Notes:", ""]
    for r in rows:
        lines += [f"- {r.key}: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def parse_only(text: str | None) -> list[int]:
    if not text:
        return sorted(MEASUREMENTS)
    picked = sorted({int(x) for x in text.split(",") if x.strip()})
    unknown = [k for k in picked if k not in MEASUREMENTS]
    if unknown:
        raise SystemExit(f"--only: no measurement {unknown}; choose from 1-{len(MEASUREMENTS)}")
    return picked


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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny inputs, one repetition (smoke)")
    ap.add_argument("--only", help="comma-separated measurement numbers (1-6)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, quick 1)")
    ap.add_argument("--workdir", help="where bundles and outputs go (default: a temp folder "
                    "on the same disk as the results)")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent),
                    help="folder for results.md and results.json (default benchmarks/)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child_mode(args.child)
    picked = parse_only(args.only)
    args.workdir = same_disk_workdir(args.workdir)
    started = time.perf_counter()
    b = Bench(args)
    print(f"work folder {b.work} ({shutil.disk_usage(b.work).free / 1e9:.0f} GB free); "
          f"{b.reps} repetition(s); load {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[Row] = []
    failed = False
    info: dict[str, Any] = {
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": b.quick, "reps": b.reps, "machine": machine(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        info["compression"] = compression_check(b)
        print("  zstd-1 ratio: generator {generator:.1f}x, real {real:.1f}x".format(
            **{"real": float("nan"), **info["compression"]}), flush=True)
        for k in picked:
            print(f"[{k}] {MEASUREMENTS[k].__name__}", flush=True)
            t0 = time.perf_counter()
            try:
                rows += MEASUREMENTS[k](b)
            except ChildFailed as e:
                failed = True
                print(f"  FAILED: {e}", flush=True)
                rows.append(Row(str(k), MEASUREMENTS[k].__name__, "error", "–", "error",
                                TARGETS[str(k)], None, [str(e)[:500]]))
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
    (results / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n",
                                          encoding="utf-8")
    return 1 if failed else 0


def run_child_mode(argv: Sequence[str]) -> int:
    mode, *rest = argv
    if mode.startswith("jsonl-"):
        result = child_jsonl(mode.removeprefix("jsonl-"), rest[0], rest[1])
    elif mode == "read":
        result = child_read(rest[0], rest[1], int(rest[2]), int(rest[3]))
    else:
        raise SystemExit(f"unknown child mode {mode}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
