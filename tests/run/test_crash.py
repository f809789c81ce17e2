"""Crash safety with real processes: kill -9 at random moments, two runs on one OUT, fsync order.

- **Kill at each phase**: for every phase of a run (``reacture_convert.phases``: reading,
  staging, renaming, catalog, and with shards shard-merge and index), both formats where the
  phase exists, ``--scheduler sync`` and ``processes``: the run is started with
  ``REACTURE_PAUSE_AT=<phase>``, the process that reaches the phase says so and stops itself,
  the test checks the phase was reached and SIGKILLs the group there; then as below.
- **Kill trials**: ``reacture-convert convert`` is started as a process group and SIGKILLed after
  a seeded random delay (formats ``zarr`` and ``zarr,wds`` in turn, ``--scheduler sync`` or
  ``processes --workers 2``; the group holds the Dask workers too). What the killed run left
  must hold nothing half-written: every visible output entry is byte-identical to the clean
  run's entry of the same name. A re-run must then give exactly the clean run's bytes (Zarr,
  rows, frames, shards, ``index.json``; the catalog without its clock and run-id columns),
  one live catalog row per bundle, no temporary, staging or orphan file, and a dataset that
  ``verify_dataset`` proves against its sources.
- **Two runs at once**: the first run is frozen (SIGSTOP) while it holds the lock; the second
  either refuses (exit 3 and the lock message) or waits in ``flock`` (seen in /proc/locks)
  without touching OUT; then both finish and OUT equals the clean run's.
- **No recorded row is lost**: while a killed run works, the test reads its catalog as a
  reader would (``read_catalog``: ``catalog.parquet`` plus the log in ``.catalog/``) again and
  again; every live row it ever saw is still there after the kill, whether the kill came
  during a log append or a compaction.
- **Durable commits**: the task that wrote a session fsyncs every staged file and folder, and
  the driver's commit renames them into place and fsyncs the destination folder after it (it
  fsyncs no file itself: the driver only renames and records).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.formats.wds.index import read_index
from reacture_convert.ingest.discover import discover
from reacture_convert.output.catalog import LOG_DIR, read_catalog
from reacture_convert.output.storage import LOCK, STAGING, TRASH, Output
from reacture_convert.phases import PHASES
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.convert import ConvertOptions, commit_result, convert_session
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.paths import REPO

CONVERT = REPO / ".venv" / "bin" / "reacture-convert"
FRAMES = (60, 100, 140, 80, 120)  # five small bundles: ~500 frames, a run of about a second
OPTIONS = ["--shard-size", "2MB", "--chunk-frames", "16", "-q"]  # several shards, many chunks
OUTPUT_DIRS = ("zarr", "rows", "frames", "wds")
VOLATILE = ("converted_at", "run_id")
TRIALS = 10
SOAK_TRIALS = int(os.environ.get("REACTURE_SOAK_TRIALS", "8"))  # more: a longer soak


# --- the inputs and the clean runs --------------------------------------------------------------


@dataclass(frozen=True)
class World:
    inputs: tuple[str, ...]
    clean: dict[str, Path]  # format -> OUT of a clean, uninterrupted run
    seconds: dict[tuple[str, str], float]  # (format, scheduler) -> how long a clean run takes

    def run_length(self, fmt: str, scheduler: str) -> float:
        """About how long a whole run of this mode takes (two of the four are measured)."""
        if scheduler == "processes":
            return self.seconds[("zarr,wds", "processes")]
        return self.seconds[("zarr", "sync")] * (1.4 if "wds" in fmt else 1.0)


def convert_args(
    inputs: tuple[str, ...], out: Path, fmt: str, scheduler: str, *extra: str
) -> list[str]:
    workers = ["--workers", "2"] if scheduler == "processes" else []
    return [
        "convert",
        *inputs,
        "--out",
        str(out),
        "--format",
        fmt,
        "--scheduler",
        scheduler,
        *workers,
        *OPTIONS,
        *extra,
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("crash")
    inputs = tuple(
        str(
            write_bundle(
                root / "in" / f"b{k}",
                BundleSpec(
                    n_frames=n, seed=k, prefix=f"reacture_17956100{k:05d}", events_per_frame=1.0
                ),
            )
        )
        for k, n in enumerate(FRAMES)
    )
    clean: dict[str, Path] = {}
    seconds: dict[tuple[str, str], float] = {}
    for fmt, scheduler in (("zarr", "sync"), ("zarr,wds", "processes")):
        out = root / f"clean-{fmt}"
        started = time.perf_counter()
        proc = subprocess.run(
            [str(CONVERT), *convert_args(inputs, out, fmt, scheduler)],
            capture_output=True,
            timeout=300,
        )
        seconds[(fmt, scheduler)] = time.perf_counter() - started
        assert proc.returncode == 0, proc.stderr[-3000:]
        clean[fmt] = out
    return World(inputs, clean, seconds)


# --- what a dataset holds -----------------------------------------------------------------------


def tree(path: Path) -> dict[str, str]:
    """sha256 of every file at or under ``path``, by path relative to ``path``."""
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def dataset_files(out: Path) -> dict[str, str]:
    return {
        f"{d}/{k}": v for d in OUTPUT_DIRS if (out / d).exists() for k, v in tree(out / d).items()
    }


def catalog_rows(out: Path) -> list[dict[str, Any]]:
    """The catalog without when and by which run; a row skipped by a re-run is the row that
    converted it (the same bundle, bytes and outputs)."""
    rows = pq.read_table(out / "catalog.parquet").drop_columns(list(VOLATILE)).to_pylist()
    for row in rows:
        if row["status"] == "skipped":
            row["status"], row["reason"] = "converted", None
    return rows


def assert_nothing_half_written(out: Path, clean: Path) -> None:
    """What a killed run leaves: each visible entry (a Zarr group, a Parquet file, a shard, the
    index) is complete, byte for byte the clean run's; the catalog, if any, verifies."""
    for d in ("zarr", "rows", "frames"):
        for entry in sorted((out / d).iterdir()) if (out / d).exists() else ():
            assert tree(entry) == tree(clean / d / entry.name), f"{d}/{entry.name} differs"
    for entry in sorted((out / "wds").iterdir()) if (out / "wds").exists() else ():
        if ".tmp-" in entry.name and entry.name.startswith("index.json"):
            continue  # an index being written when the kill came: replaced by the re-run
        if entry.name.startswith("README.md"):
            continue  # the dataset card: rewritten at the end of every run
        assert tree(entry) == tree(clean / "wds" / entry.name), f"wds/{entry.name} differs"
    if (out / "catalog.parquet").exists():
        checked, problems = verify_dataset(Output(str(out)))
        assert problems == []
        assert checked == sum(
            e.status in ("converted", "skipped") for e in read_catalog(Output(str(out)))
        )


def assert_same_as_clean(out: Path, clean: Path, n_bundles: int) -> None:
    """A finished dataset: the clean run's bytes, one live row per bundle, no leftovers."""
    assert dataset_files(out) == dataset_files(clean)
    assert catalog_rows(out) == catalog_rows(clean)
    catalog = read_catalog(Output(str(out)))
    live = [e for e in catalog if e.status in ("converted", "skipped")]
    assert len(catalog) == len(live) == len({(e.source, e.prefix) for e in live}) == n_bundles
    leftovers = [
        str(p.relative_to(out))
        for p in out.rglob("*")
        if ".tmp-" in p.name or p.name.endswith(".tmp")
    ]
    assert leftovers == []
    for hidden in (STAGING, TRASH):
        assert not (out / hidden).exists() or not any((out / hidden).iterdir()), hidden
    allowed = {*OUTPUT_DIRS, "catalog.parquet", "README.md", LOCK, STAGING}
    assert {p.name for p in out.iterdir()} <= allowed
    assert not (out / LOG_DIR).exists()  # all compacted, the log's folder removed
    for group in sorted((out / "zarr").iterdir()):
        opened = zarr.open_group(str(group), mode="r")
        assert {"frames", "timestamps"} <= set(opened.array_keys())
    index = read_index(Output(str(out)))
    shards = sorted(p.name for p in (out / "wds").glob("*")) if (out / "wds").exists() else []
    listed = [] if index is None else sorted([s.url for s in index.shards] + ["index.json"])
    if index is not None and index.shards:
        listed = sorted([*listed, "README.md"])  # the shards' dataset card
    assert shards == listed  # no orphan shard, none missing
    assert verify_dataset(Output(str(out)), sources=True) == (n_bundles, [])


# --- killing a process group ----------------------------------------------------------------------


def _group_alive(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (read from /proc)."""
    alive = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            alive.append(int(stat_file.parent.name))
    return alive


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and every process it started (its own group), and wait until none is
    left: no straggling worker may write while the next run works."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while alive := _group_alive(proc.pid):
        assert time.monotonic() < deadline, f"processes {alive} survived SIGKILL"
        time.sleep(0.02)


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as sink:
        return subprocess.Popen(
            [str(CONVERT), *args], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def live_rows(out: Path) -> set[tuple[str, str | None]]:
    """The bundles with a live row a reader sees now (catalog.parquet and the log). A live row
    may turn from converted into skipped (a re-run), never into nothing."""
    try:
        catalog = read_catalog(Output(str(out)))
    except OSError:  # OUT itself not there yet
        return set()
    return {e.key for e in catalog if e.status.is_live}


def killed_run(
    world: World, out: Path, fmt: str, scheduler: str, rng: random.Random, log: Path
) -> float:
    """Start a run and SIGKILL its group after a random delay; a run that finished first is
    started again (into a fresh OUT) with a shorter delay. Meanwhile its catalog is read again
    and again: every live row seen before the kill must still be there after it. Returns the
    delay that killed it."""
    length = world.run_length(fmt, scheduler)
    delay = rng.uniform(0.05, 0.9) * length
    for _ in range(6):
        before = live_rows(out)
        proc = start(convert_args(world.inputs, out, fmt, scheduler), log)
        deadline = time.monotonic() + delay
        seen = set(before)
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= live_rows(out)
        if proc.poll() is None:
            kill_group(proc)
            lost = seen - live_rows(out)
            assert not lost, f"rows recorded before the kill are gone: {sorted(lost)}"
            return delay
        assert proc.returncode == 0, log.read_text()[-3000:]
        kill_group(proc)  # its workers, if any were still exiting
        shutil.rmtree(out)
        delay *= rng.uniform(0.3, 0.7)
    raise AssertionError(f"the run always finished before {delay:.2f} s")


def crash_trial(
    world: World, tmp_path: Path, trial: int, processes: tuple[int, ...], cycle: int
) -> None:
    """One trial: kill (twice for every third trial), check, finish the run, compare. The
    format alternates; trials whose number modulo ``cycle`` is in ``processes`` run on local
    Dask worker processes (their cluster start makes them the slow ones)."""
    rng = random.Random(trial)
    fmt = ("zarr", "zarr,wds")[trial % 2]
    scheduler = "processes" if trial % cycle in processes else "sync"
    out, log = tmp_path / f"out-{trial}", tmp_path / f"trial-{trial}.log"
    for _ in range(2 if trial % 3 == 0 else 1):
        killed_run(world, out, fmt, scheduler, rng, log)
        assert_nothing_half_written(out, world.clean[fmt])
    result = CliRunner().invoke(
        cli, convert_args(world.inputs, out, fmt, "sync"), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert_same_as_clean(out, world.clean[fmt], len(world.inputs))


# Every phase of a run (reacture_convert.phases), for each format it belongs to, in this process
# (sync); the phases a worker runs (reading, staging) on local worker processes too (the driver's
# phases are the same code whichever scheduler ran the sessions; the random trials below kill
# runs on worker processes at any moment): the kill comes exactly there.
WORKER_PHASES = ("reading", "staging")
PHASE_TRIALS = [
    (phase, fmt, scheduler)
    for fmt in ("zarr", "zarr,wds")
    for phase in PHASES
    if fmt == "zarr,wds" or phase not in ("shard-merge", "index")
    for scheduler in ("sync", "processes")
    if scheduler == "sync" or phase in WORKER_PHASES
]


def killed_at(world: World, out: Path, phase: str, fmt: str, scheduler: str, log: Path) -> str:
    """Run until a process of the run reaches ``phase`` and stops there (SIGSTOP, by
    ``REACTURE_PAUSE_AT``), then SIGKILL the whole group. Returns the marker line: which phase,
    in which process, for what."""
    marker = out.parent / f"{out.name}.phase"
    env = {**os.environ, "REACTURE_PAUSE_AT": phase, "REACTURE_PHASE_FILE": str(marker)}
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            [str(CONVERT), *convert_args(world.inputs, out, fmt, scheduler)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    deadline = time.monotonic() + 120
    try:
        while not marker.exists():
            assert proc.poll() is None, f"the run ended before {phase}: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{phase} was never reached"
            time.sleep(0.01)
        time.sleep(0.05)  # the marker is written just before the stop
    finally:
        kill_group(proc)
    return marker.read_text()


@pytest.mark.parametrize(
    ("phase", "fmt", "scheduler"), PHASE_TRIALS, ids=["-".join(t) for t in PHASE_TRIALS]
)
def test_killed_at_each_phase_then_rerun_equals_a_clean_run(
    world: World, tmp_path: Path, phase: str, fmt: str, scheduler: str
) -> None:
    out, log = tmp_path / "out", tmp_path / "run.log"
    hit = killed_at(world, out, phase, fmt, scheduler, log)
    assert hit.split()[0] == phase, hit
    assert_nothing_half_written(out, world.clean[fmt])
    result = CliRunner().invoke(
        cli, convert_args(world.inputs, out, fmt, "sync"), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert_same_as_clean(out, world.clean[fmt], len(world.inputs))


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_run_then_rerun_equals_a_clean_run(world: World, tmp_path: Path, trial: int) -> None:
    crash_trial(world, tmp_path, trial, processes=(2, 3), cycle=4)  # zarr and zarr,wds


def test_temporaries_of_a_killed_atomic_write_are_cleared(world: World, tmp_path: Path) -> None:
    """A kill inside ``write_bytes_atomic`` (catalog, its log, wds index) leaves
    ``NAME.tmp-<hex>``; the next run, holding the lock, removes it."""
    out = tmp_path / "out"
    (out / "wds").mkdir(parents=True)
    (out / LOG_DIR).mkdir()
    for name in (
        "catalog.parquet.tmp-0123abcd",
        "wds/index.json.tmp-0123abcd",
        f"{LOG_DIR}/000000000001.arrow.tmp-0123abcd",
    ):
        (out / name).write_bytes(b"half a file")
    result = CliRunner().invoke(
        cli, convert_args(world.inputs, out, "zarr,wds", "sync"), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert_same_as_clean(out, world.clean["zarr,wds"], len(world.inputs))


# --- two runs on one OUT ---------------------------------------------------------------------


def lock_holders(out: Path) -> tuple[set[int], set[int]]:
    """(pids holding, pids waiting for) the flock on OUT/.lock, from /proc/locks."""
    try:
        inode = (out / LOCK).stat().st_ino
    except FileNotFoundError:
        return set(), set()
    holding, waiting = set(), set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        blocked = fields[1] == "->"
        fields = fields[2:] if blocked else fields[1:]
        if fields[0] == "FLOCK" and fields[4].rsplit(":", 1)[-1] == str(inode):
            (waiting if blocked else holding).add(int(fields[3]))
    return holding, waiting


def all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is in state T (stopped)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, IndexError):
            continue
    return bool(states) and all(s in ("T", "t") for s in states)


def wait_until(
    check: Callable[[], bool], procs: list[subprocess.Popen[bytes]], what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        exited = [p.args for p in procs if p.poll() is not None]
        assert not exited, f"{exited} exited while waiting for: {what}"
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.01)


@pytest.fixture
def frozen_first_run(
    world: World, tmp_path: Path
) -> Iterator[Callable[[bool], subprocess.Popen[bytes]]]:
    """``start_first(wait)``: a run that holds the lock on OUT, then is frozen (SIGSTOP)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start_first(wait: bool) -> subprocess.Popen[bytes]:
        out = tmp_path / "out"
        proc = start(
            convert_args(
                world.inputs, out, "zarr", "sync", "--json", *(["--wait"] if wait else [])
            ),
            tmp_path / "first.log",
        )
        procs.append(proc)
        wait_until(lambda: proc.pid in lock_holders(out)[0], [proc], "the first run's lock")
        os.kill(proc.pid, signal.SIGSTOP)
        # SIGSTOP is delivered asynchronously: wait until every thread is really stopped, so
        # no write of the frozen run can race the snapshot the test takes next
        wait_until(lambda: all_threads_stopped(proc.pid), [proc], "the first run to stop")
        return proc

    yield start_first
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            kill_group(proc)


@pytest.mark.parametrize("first_waits", [False, True], ids=["first-plain", "first-wait"])
@pytest.mark.parametrize("second_waits", [False, True], ids=["second-refuses", "second-waits"])
def test_two_runs_on_one_output_never_interleave(
    world: World,
    tmp_path: Path,
    frozen_first_run: Callable[[bool], subprocess.Popen[bytes]],
    first_waits: bool,
    second_waits: bool,
) -> None:
    out = tmp_path / "out"
    first = frozen_first_run(first_waits)
    before = {p: os.lstat(p).st_mtime_ns for p in [out, *out.rglob("*")]}
    second = subprocess.Popen(
        [
            str(CONVERT),
            *convert_args(
                world.inputs, out, "zarr", "sync", "--json", *(["--wait"] if second_waits else [])
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if second_waits:  # queued in flock behind the frozen first run, touching nothing
            wait_until(
                lambda: second.pid in lock_holders(out)[1],
                [second],
                "the second run to wait for the lock",
            )
            time.sleep(0.3)
            assert second.poll() is None
        else:  # refuses at once, touching nothing
            _, err = second.communicate(timeout=120)
            assert second.returncode == 3, err
            assert b"another reacture-convert run is writing to this output" in err
            assert b"--wait" in err
        assert {p: os.lstat(p).st_mtime_ns for p in [out, *out.rglob("*")]} == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=120) == 0
    if second_waits:
        stdout, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        summary = json.loads(stdout)
        assert {s["status"] for s in summary["sessions"]} == {"skipped"}
    assert_same_as_clean(out, world.clean["zarr"], len(world.inputs))


# --- durable commits -------------------------------------------------------------------------


@pytest.mark.parametrize("replacing", [False, True], ids=["new", "replacing-an-older-copy"])
def test_staged_files_are_fsynced_by_the_task_before_the_driver_renames_them(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    replacing: bool,
) -> None:
    """The real split: ``convert_session`` (a worker's half) writes and fsyncs the staged
    session; ``commit_result`` (the driver's half) renames each output into place, fsyncs the
    folder it now sits in, and fsyncs no file itself."""
    spec = BundleSpec(n_frames=40, seed=7, prefix="reacture_1795610009999")
    (bundle,) = discover([str(write_bundle(tmp_path / "in" / "b", spec))]).bundles
    out = Output(str(tmp_path / "out"))
    root = Path(out.root).resolve()
    session = spec.prefix
    if replacing:
        (root / "zarr" / f"{session}.zarr" / "old").mkdir(parents=True)
        (root / "rows").mkdir()
        (root / "rows" / f"{session}.parquet").write_bytes(b"old")

    events: list[tuple[str, str, str, str]] = []  # (phase, kind, path, destination)
    phase = "task"
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        events.append((phase, "fsync", os.readlink(f"/proc/self/fd/{fd}"), ""))
        real_fsync(fd)

    def rename(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        events.append((phase, "rename", os.path.realpath(src), os.path.realpath(dst)))
        real_rename(src, dst, *args, **kw)

    def replace(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        events.append((phase, "rename", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst, *args, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    result = convert_session(bundle, out, ConvertOptions(), None, "run")
    staged = Path(out.staging(result.stage_key)).resolve()
    parts = list(result.staged)
    assert parts == [f"zarr/{session}.zarr", f"rows/{session}.parquet", f"frames/{session}.parquet"]
    expected = {
        part: {
            p: p.read_bytes() if p.is_file() else None
            for p in [staged / part, *(staged / part).rglob("*")]
        }
        for part in parts
    }
    phase = "commit"
    entry = commit_result(out, result)
    monkeypatch.undo()
    assert entry.status == "converted"

    committing = [e for e in events if e[0] == "commit"]
    for _, kind, path, _ in committing:
        assert kind != "fsync" or os.path.isdir(path), f"the driver fsynced a file: {path}"
    for part in parts:
        src, dst = staged / part, root / part
        [at] = [i for i, e in enumerate(events) if e[1:] == ("rename", str(src), str(dst))]
        synced_before = {path for _, kind, path, _ in events[:at] if kind == "fsync"}
        for path in expected[part]:  # every file and folder of the part...
            assert str(path) in synced_before, f"{path} not fsynced before {part} is visible"
        assert str(src.parent) in synced_before  # the staging folder that held it
        synced_after = {path for _, kind, path, _ in events[at:] if kind == "fsync"}
        assert str(dst.parent) in synced_after, f"{dst.parent} not fsynced after the rename"
        for path, data in expected[part].items():  # and what became visible is what was staged
            if data is not None:
                shown = dst / path.relative_to(src) if path != src else dst
                assert shown.read_bytes() == data
    assert not (root / "zarr" / f"{session}.zarr" / "old").exists()
