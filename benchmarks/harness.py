"""The benchmark harness: child processes, statistics, the results table, the workspace.

Every measurement runs in child processes and is the median of ``--reps`` repetitions that
alternate product and baseline, with min-max; ratios come from the same run. Peak RSS is the
child's ``ru_maxrss`` (``wait4``), taken by a small runner process in between (see ``_RUNNER``).
Before each timed child, dirty pages are flushed (``os.sync``) so that one step's writeback is
not billed to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reacture_convert.testing.synth import BundleSpec, write_bundle  # noqa: E402

FRAME_BYTES = 128 * 128 * 3
NPY_OFFSET = 129  # the game's .npy header is 129 bytes
REAL_ARCHIVE = REPO / "tests" / "data" / "real.tar.gz"
REAL_FRAMES_MEMBER = (
    "real/variant_preserve_drawing_buffer/reacture_1795637148842/reacture_1795637148842_frames.npy"
)
MIN_FREE_FOR_LARGEST = 20e9  # bytes: below this the 120-minute session is skipped
FRAMES_PER_MINUTE = 600  # 10 Hz

TARGETS = {
    "1": "≤ 3× cp+fsync",
    "2": "≤ 1.5× tar",
    "3": "≥ 1.0× DuckDB (same threads), lossless",
    "3b": "≥ 1.0× DuckDB (same threads), end to end",
    "4": "≤ 300 MB at 120 min",
    "5": "≥ 1.8×",
    "6": "≥ 50 % of plain PyTorch over mmap (then ≥ 100 %)",
}


@dataclass(frozen=True)
class Sizes:
    """Input sizes of one benchmark run, in frames."""

    session: int  # the "10-minute" session of measurements 1, 2, 3, 6
    rows_heavy: tuple[int, float]  # measurement 3b: frames, MB of JSONL
    rss: tuple[int, ...]  # measurement 4: 10, 60, 120 minutes
    batch: tuple[int, int]  # measurement 5: sessions, frames each (10-minute sessions)
    random_reads: int  # measurement 6: random accesses per repetition


FULL = Sizes(
    session=6_000,
    rows_heavy=(1_000, 67.0),
    rss=(6_000, 36_000, 72_000),
    batch=(8, 6_000),
    random_reads=500,
)
QUICK = Sizes(session=40, rows_heavy=(40, 1.0), rss=(40, 80, 120), batch=(8, 10), random_reads=20)


# --- child processes ----------------------------------------------------------------------------
class ChildFailed(RuntimeError):
    """A child process exited with a non-zero status."""


@dataclass(frozen=True)
class ChildRun:
    """One child process: wall time, its peak RSS and CPU time (``wait4``), what it printed."""

    seconds: float
    max_rss_mb: float
    stdout: str
    cpu_s: float = 0.0  # user + system, all threads

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
               "cpu_s": usage.ru_utime + usage.ru_stime,
               "status": os.waitstatus_to_exitcode(status)}, f)
"""


def run_child(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, flush: bool = True
) -> ChildRun:
    """Run ``cmd`` to completion through the runner: wall time from spawn to exit, its peak
    RSS, its stdout. ``flush`` first writes back dirty pages so earlier steps are not billed."""
    if flush:
        os.sync()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            proc = subprocess.run(
                [sys.executable, "-S", "-c", _RUNNER, str(report), *cmd],
                stdout=out,
                stderr=err,
                env={**os.environ, **(env or {})},
            )
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        done = json.loads(report.read_text()) if report.exists() else {"status": proc.returncode}
    if proc.returncode != 0 or done["status"] != 0:
        raise ChildFailed(f"{' '.join(cmd)} exited {done['status']}: {stderr.strip()[-2000:]}")
    return ChildRun(done["seconds"], done["max_rss_kb"] / 1024, stdout, done["cpu_s"])


def alternate(
    reps: int, contenders: Sequence[tuple[str, Callable[[int], ChildRun]]]
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
    return Stat(
        statistics.median(a) / statistics.median(b),
        min(per_round),
        max(per_round),
        tuple(per_round),
    )


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
        cells = [
            self.key,
            self.measurement,
            self.product,
            self.baseline,
            self.result,
            self.target,
            met,
        ]
        return "| " + " | ".join(cells) + " |"


TABLE_HEAD = (
    "| # | measurement | product | baseline | result | target | met |\n"
    "|---|---|---|---|---|---|---|"
)


def minutes(frames: int) -> str:
    return f"{frames:,} frames ({frames / FRAMES_PER_MINUTE:.3g} min)"


# --- workspace: bundles and converted outputs ---------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) that process ``pid`` has spent so far (the S3 server's,
    in the object-store measurements)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


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
            write_bundle(
                folder, BundleSpec(n_frames=n_frames, seed=seed, prefix=prefix, interval_ms=100)
            )
            took = time.perf_counter() - t0
            print(
                f"  generated {folder.name}: {minutes(n_frames)}, {du(folder) / 1e6:,.0f} MB "
                f"in {took:.1f} s ({n_frames / took:,.0f} frames/s)",
                flush=True,
            )
            self._bundles[str(folder)] = folder
        return folder

    def drop_bundle(self, folder: Path) -> None:
        self._bundles.pop(str(folder), None)
        shutil.rmtree(folder, ignore_errors=True)

    def files(self, folder: Path) -> dict[str, Path]:
        """The five files of a bundle folder by role (``frames.npy``, ``data.jsonl``, ...)."""
        return {p.name.split("_", 2)[-1]: p for p in folder.iterdir()}

    def convert_cmd(self, src: Path, out: Path, fmt: str, *extra: str) -> list[str]:
        return [
            *self.cli,
            "convert",
            str(src),
            "--out",
            str(out),
            "--format",
            fmt,
            "--quiet",
            *extra,
        ]

    def converted(self) -> Path:
        """The session bundle converted to Zarr and shards once (for the readers, untimed)."""
        if self._converted is None:
            out = self.fresh("readers-out")
            run_child(
                self.convert_cmd(
                    self.bundle(self.sizes.session), out, "zarr,wds", "--scheduler", "sync"
                ),
                flush=False,
            )
            self._converted = out
        return self._converted

    def child_cmd(self, mode: str, *args: object) -> list[str]:
        return [
            sys.executable,
            str(Path(__file__).resolve().with_name("run.py")),
            "--child",
            mode,
            *map(str, args),
        ]


# --- the generator against the real frames ------------------------------------------------------
def zstd_ratio(frames: np.ndarray, chunk: int = 64) -> float:
    """Compression ratio of zstd level 1 over ``chunk``-frame chunks (the Zarr default)."""
    from numcodecs import Zstd

    codec = Zstd(level=1)
    packed = sum(
        len(codec.encode(np.ascontiguousarray(frames[a : a + chunk])))
        for a in range(0, len(frames), chunk)
    )
    return frames.nbytes / packed


def frames_of(path: Path) -> np.ndarray:
    n = (path.stat().st_size - NPY_OFFSET) // FRAME_BYTES
    return np.memmap(path, np.uint8, "r", offset=NPY_OFFSET, shape=(n, 128, 128, 3))


def real_frames() -> np.ndarray:
    """The frames of the real recording that holds pictures (the variant), from tests/data."""
    with tarfile.open(REAL_ARCHIVE) as tar:
        member = tar.extractfile(REAL_FRAMES_MEMBER)
        assert member is not None, REAL_FRAMES_MEMBER
        data = member.read()
    n = (len(data) - NPY_OFFSET) // FRAME_BYTES
    return np.frombuffer(data, np.uint8, offset=NPY_OFFSET).reshape(n, 128, 128, 3)


def compression_check(b: Bench) -> dict[str, Any]:
    synth = frames_of(b.files(b.bundle(b.sizes.session))["frames.npy"])
    out: dict[str, Any] = {"generator": zstd_ratio(synth), "generator_frames": len(synth)}
    real = real_frames()
    out.update(real=zstd_ratio(real), real_frames=len(real))
    return out


# --- report -------------------------------------------------------------------------------------
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
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_at_start": os.getloadavg(),
    }


def render(rows: Sequence[Row], info: dict[str, Any]) -> str:
    m = info["machine"]
    comp = info.get("compression") or {}
    kind = (
        "quick smoke run: the numbers mean nothing"
        if info["quick"]
        else f"{info['reps']} alternating repetitions"
    )
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
        real = (
            f"{comp['real']:.1f}× (real variant fixture, {comp['real_frames']} frames)"
            if "real" in comp
            else "real variant fixture not found"
        )
        lines.append(
            f"Frames: zstd level 1 over 64-frame chunks compresses the generator's "
            f"frames {comp['generator']:.1f}× ({comp['generator_frames']:,} frames) vs "
            f"{real}."
        )
    lines += [
        "",
        "Medians with [min–max]; ratios are ratios of medians with the range of the "
        "per-round ratios.",
        "",
        TABLE_HEAD,
        *(r.markdown() for r in rows),
        "",
        "Notes:",
        "",
    ]
    for r in rows:
        lines += [f"- {r.key}: {n}" for n in r.notes]
    return "\n".join(lines) + "\n"
