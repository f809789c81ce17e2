"""The watcher as people run it: ``reacture-convert watch`` in its own process on a drop folder
(and on a bucket of the local S3-compatible server), fed the way uploads arrive.

- Uploads in progress are never touched: real bundles copied in file by file, the last file
  written in two halves, a zip written in two halves; nothing of a bundle is converted (no
  catalog row, no Zarr group) until its last byte has been still for ``--settle``.
- An upload that stays incomplete (or an archive that stays unreadable) gets a ``rejected``
  catalog row after ``--incomplete-timeout``, and is converted once it is completed.
- Restart-safe: a watcher killed with SIGKILL mid-session and restarted gives byte for byte what
  a plain ``convert`` gives, and nothing done by the first is converted (or rewritten) again.
- One watcher per OUT (exit 3, or ``--wait``); SIGTERM (and Ctrl-C to the process group) lets
  the session in flight finish and exits 0; a second signal aborts with nothing half-visible.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from reacture_convert.cli import cli
from reacture_convert.errors import ConfigError
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run import settle
from reacture_convert.run.jobs import load_job
from reacture_convert.run.settle import quiet_since
from reacture_convert.run.watch import (
    WatchOptions,
    WatchStatus,
    parse_duration,
    run_watch,
)
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.zarr import BUCKET_SHARD_FRAMES
from tests.helpers.paths import REPO, SAMPLE_DIR
from tests.helpers.real import REAL_BUNDLES
from tests.helpers.s3 import S3

CLI = [sys.executable, "-m", "reacture_convert"]
WATCH = [*CLI, "watch"]
FAST = ["--settle", "1s", "--poll", "0.2s"]
SETTLE = 1.0
VOLATILE = ("converted_at", "run_id")
BIG = BundleSpec(prefix="reacture_1795600000301", seed=3, n_frames=2000)
SMALL = BundleSpec(prefix="reacture_1795600000302", seed=4, n_frames=40)
ZIPPED = BundleSpec(prefix="reacture_1795600000303", seed=5, n_frames=30)
LAST = "frames.npy"  # the file written last, in two halves


# --- running watchers ----------------------------------------------------------------------------


class Watcher:
    """One ``reacture-convert watch ... --json`` process (its own process group); its JSON
    lines are read back as events."""

    def __init__(self, args: list[str], logs: Path, env: dict[str, str] | None = None) -> None:
        n = len(list(logs.glob("watch-*.jsonl")))
        self.log, self.err = logs / f"watch-{n}.jsonl", logs / f"watch-{n}.err"
        with open(self.log, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [*WATCH, *args, "--json"],
                stdout=out,
                stderr=err,
                cwd=REPO,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines(keepends=True)
        found = [json.loads(line) for line in lines if line.endswith("\n")]
        return [e for e in found if kind is None or e["event"] == kind]

    def wait_for(self, kind: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events(kind):
                if all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no {kind} {match} event; exit {self.proc.poll()}\n"
                    f"{self.log.read_text()[-3000:]}{self.err.read_text()[-3000:]}"
                )
            time.sleep(0.05)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running\n{self.log.read_text()[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL to the whole group (the watcher and whatever it started)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def paused_in_staging(session: str, marker: Path, seconds: float | None = None) -> dict[str, str]:
    """The environment that holds ``session``'s task at its first staged frames (its thread
    sleeps there, for good or ``seconds``; ``reacture_convert.phases``) and says so in
    ``marker``."""
    return {
        "REACTURE_PAUSE_AT": f"staging:{session}",
        "REACTURE_PAUSE_HOW": "sleep" if seconds is None else f"sleep:{seconds}",
        "REACTURE_PHASE_FILE": str(marker),
    }


def wait_for_file(path: Path, w: Watcher, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert w.proc.poll() is None, f"the watcher exited: {w.err.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
    return path.read_text()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Watcher]]:
    """Start watchers; any still running at the end are killed."""
    started: list[Watcher] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def run(*args: str, env: dict[str, str] | None = None) -> Watcher:
        w = Watcher([*args], logs, env)
        started.append(w)
        return w

    yield run
    for w in started:
        w.kill()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2000-frame bundle: a couple of seconds of conversion, time to signal or kill."""
    return write_bundle(tmp_path_factory.mktemp("big") / "z-big", BIG)


def link_tree(src: Path, dst: Path) -> Path:
    """``src``'s files hard-linked (or copied) into ``dst``, keeping their old modification
    times: an upload that finished long ago."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:  # another filesystem
            shutil.copy2(f, dst / f.name)
    return dst


def copy_bundle(src: Path, dst: Path, pause: float, check: Callable[[], None]) -> float:
    """Copy a bundle file by file, ``check()`` after each write, the last file in two halves
    with a pause between; returns the time just before its last write began."""
    dst.mkdir(parents=True)
    files = sorted(src.iterdir(), key=lambda f: (f.name.endswith(LAST), f.name))
    for f in files[:-1]:
        (dst / f.name).write_bytes(f.read_bytes())
        check()
        time.sleep(pause)
    data = files[-1].read_bytes()
    with open(dst / files[-1].name, "wb") as sink:
        sink.write(data[: len(data) // 2])
        sink.flush()
        check()
        time.sleep(pause * 2)
        check()
        before_last = time.time()
        sink.write(data[len(data) // 2 :])
    return before_last


def zip_bytes(folder: Path, inner: str) -> bytes:
    path = folder.parent / f"{inner}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{inner}/{f.name}")
    return path.read_bytes()


def catalog(out: Path) -> list[dict[str, Any]]:
    """The catalog as a reader sees it while the watcher runs: catalog.parquet and the rows
    recorded since (read_catalog)."""
    return [e.to_record() for e in read_catalog(Output(str(out)))]


def is_converted(out: Path, session: str) -> bool:
    return (out / "zarr" / f"{session}.zarr").exists() or any(
        r["session"] == session for r in catalog(out)
    )


def when(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["time"]).timestamp()


def plain_convert(inputs: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(
        cli, ["convert", str(inputs), "--out", str(out), "--scheduler", "sync", "-q", *extra]
    )
    assert result.exit_code == 0, result.output


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for part in ("zarr", "rows", "frames")
        if (root / part).exists()
        for p in sorted((root / part).rglob("*"))
        if p.is_file()
    }


def assert_same_dataset(got: Path, want: Path) -> None:
    """Byte for byte: every Zarr, rows and frames file; the catalog but for clock and run."""
    a, b = tree(got), tree(want)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    drop = list(VOLATILE)
    assert (
        pq.read_table(got / "catalog.parquet").drop_columns(drop).to_pylist()
        == pq.read_table(want / "catalog.parquet").drop_columns(drop).to_pylist()
    )
    assert not any((got / ".staging").glob("**/*"))


# --- uploads in progress -------------------------------------------------------------------------


def test_uploads_are_converted_only_once_complete_and_settled(
    tmp_path: Path, start: Callable[..., Watcher]
) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    w = start(str(incoming), "--out", str(out), *FAST, "--scheduler", "sync")
    w.wait_for("started")
    last_write: dict[str, float] = {}
    for src in REAL_BUNDLES:
        session = src.name

        def untouched(session: str = session) -> None:
            assert not is_converted(out, session), f"{session} converted while uploading"

        last_write[session] = copy_bundle(src, incoming / session, 0.1, untouched)

    synth = write_bundle(tmp_path / "src" / "upload", ZIPPED)
    data = zip_bytes(synth, "upload")
    with open(incoming / "upload.zip", "wb") as sink:
        sink.write(data[: len(data) // 2])
        sink.flush()
        w.wait_for("incomplete", source=str(incoming / "upload.zip"))  # seen, unreadable
        assert not is_converted(out, ZIPPED.prefix)
        last_write[ZIPPED.prefix] = time.time()
        sink.write(data[len(data) // 2 :])

    for session, t in last_write.items():
        converted = w.wait_for("converted", session=session)
        started = w.wait_for("converting", session=session)
        assert when(started) >= t + SETTLE - 0.01, f"{session} started before it settled"
        assert converted["frames"] > 0
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 0
    assert [e["event"] for e in w.events()][-1] == "stopped"

    plain = tmp_path / "plain"
    plain_convert(incoming, plain)
    assert_same_dataset(out, plain)


def test_an_upload_that_stays_incomplete_is_reported_then_converted_when_completed(
    tmp_path: Path, start: Callable[..., Watcher]
) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    session = SAMPLE_DIR.name
    held = ("timestamps.npy", "frames.npy")
    written = time.time()
    (incoming / session).mkdir(parents=True)
    for f in SAMPLE_DIR.iterdir():
        if not f.name.endswith(held):
            shutil.copy(f, incoming / session / f.name)
    data = zip_bytes(write_bundle(tmp_path / "src" / "upload", ZIPPED), "upload")
    (incoming / "upload.zip").write_bytes(data[: len(data) // 3])

    w = start(
        str(incoming),
        "--out",
        str(out),
        "--settle",
        "0.5s",
        "--poll",
        "0.2s",
        "--incomplete-timeout",
        "1.5s",
        "--scheduler",
        "sync",
    )
    rejected = w.wait_for("rejected", session=session)
    assert when(rejected) >= written + 1.5 - 0.01
    assert rejected["errors"] == [f"BUNDLE_MISSING_FILE at {session}_{r}" for r in sorted(held)]
    w.wait_for("rejected", source=str(incoming / "upload.zip"))
    rows = {(r["source"], r["status"]): r for r in catalog(out)}
    bundle_row = rows[(str(incoming / session), "rejected")]
    assert {f["code"] for f in bundle_row["findings"]} == {"BUNDLE_MISSING_FILE"}
    archive_row = rows[(str(incoming / "upload.zip"), "rejected")]
    assert [f["code"] for f in archive_row["findings"]] == ["ARCHIVE_UNREADABLE"]
    assert not (out / "zarr").exists()

    for name in held:  # the upload goes on: watched again, converted once settled
        shutil.copy(SAMPLE_DIR / f"{session}_{name}", incoming / session)
    (incoming / "upload.zip").write_bytes(data)
    w.wait_for("converted", session=session)
    w.wait_for("converted", session=ZIPPED.prefix)
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 0
    assert sorted((r["session"], r["status"]) for r in catalog(out)) == sorted(
        [(session, "converted"), (ZIPPED.prefix, "converted")]
    )  # no stale rows


# --- restarts, one watcher per OUT, signals ------------------------------------------------------


def test_a_watcher_killed_mid_session_and_restarted_equals_a_plain_convert(
    tmp_path: Path, start: Callable[..., Watcher], big: Path
) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    link_tree(SAMPLE_DIR, incoming / SAMPLE_DIR.name)  # sorted first: converted before the kill
    link_tree(big, incoming / "z-big")
    write_bundle(incoming / "zz-small", SMALL)
    common = [str(incoming), "--out", str(out), "--settle", "0.2s", "--poll", "0.2s"]

    marker = tmp_path / "phase"
    first = start(
        *common,
        "--scheduler",
        "threads",
        "--workers",
        "1",
        env=paused_in_staging(BIG.prefix, marker),
    )
    first.wait_for("converted", session=SAMPLE_DIR.name)
    assert wait_for_file(marker, first).startswith("staging ")  # killed while writing it
    first.kill()
    assert [r["session"] for r in catalog(out)] == [SAMPLE_DIR.name]
    assert not (out / "zarr" / f"{BIG.prefix}.zarr").exists()  # nothing half-visible
    before = {r["session"]: r for r in catalog(out)}

    second = start(*common, "--once", "--scheduler", "threads", "--workers", "2")
    assert second.wait() == 0
    assert {
        e["session"]: e["event"] for e in second.events() if e["event"] in ("converted", "skipped")
    } == {SAMPLE_DIR.name: "skipped", BIG.prefix: "converted", SMALL.prefix: "converted"}
    rows = {r["session"]: r for r in catalog(out)}
    assert rows[SAMPLE_DIR.name] == before[SAMPLE_DIR.name]  # not rewritten by the restart

    plain = tmp_path / "plain"
    plain_convert(incoming, plain)
    assert_same_dataset(out, plain)


def test_one_watcher_per_output(tmp_path: Path, start: Callable[..., Watcher]) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    first = start(str(incoming), "--out", str(out), *FAST, "--scheduler", "sync")
    first.wait_for("started")
    second = start(str(incoming), "--out", str(out), "--once", "--scheduler", "sync")
    assert second.wait() == 3
    assert "another reacture-convert run is writing to this output" in second.err.read_text()
    queued = start(str(incoming), "--out", str(out), "--once", "--wait", "--scheduler", "sync")
    time.sleep(1.0)
    assert queued.proc.poll() is None and not queued.events()  # waiting for the lock
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    assert queued.wait() == 0
    assert queued.events("stopped")[0]["reason"] == "once"


@pytest.mark.parametrize(
    ("scheduler", "ctrl_c"),
    [("threads", False), ("processes", True)],
    ids=["sigterm-threads", "ctrl-c-to-group-processes"],
)
def test_a_stop_signal_lets_the_session_in_flight_finish(
    tmp_path: Path, start: Callable[..., Watcher], big: Path, scheduler: str, ctrl_c: bool
) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    link_tree(big, incoming / "a-big")
    write_bundle(incoming / "b-small", SMALL)  # queued behind the big one: never started
    w = start(
        str(incoming),
        "--out",
        str(out),
        "--settle",
        "0.2s",
        "--scheduler",
        scheduler,
        "--workers",
        "1",
        env=paused_in_staging(BIG.prefix, tmp_path / "phase", seconds=2),
    )
    wait_for_file(tmp_path / "phase", w)  # in flight for 2 s more: signalled while converting
    if ctrl_c:  # a terminal's Ctrl-C reaches the whole group: Dask's workers too
        os.killpg(w.proc.pid, signal.SIGINT)
    else:
        w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 0
    kinds = [e["event"] for e in w.events()]
    assert kinds.index("stopping") < kinds.index("converted") < kinds.index("stopped")
    assert w.events("stopped")[0]["reason"] == "signal"
    assert [(r["session"], r["status"]) for r in catalog(out)] == [(BIG.prefix, "converted")]
    checked, problems = verify_dataset(Output(str(out)), sources=True)
    assert (checked, problems) == (1, [])


def test_a_second_signal_aborts_leaving_nothing_half_visible(
    tmp_path: Path, start: Callable[..., Watcher], big: Path
) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    link_tree(big, incoming / "big")
    marker = tmp_path / "phase"
    w = start(
        str(incoming),
        "--out",
        str(out),
        "--settle",
        "0.2s",
        "--scheduler",
        "sync",
        env=paused_in_staging(BIG.prefix, marker),
    )
    wait_for_file(marker, w)  # the session is in flight, and stays so
    w.proc.send_signal(signal.SIGTERM)
    w.wait_for("stopping")
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 130  # interrupted
    assert w.events("stopped")[0]["reason"] == "abort"
    assert catalog(out) == []
    assert not any((out / part).exists() for part in ("zarr", "rows", "frames"))


# --- a bucket ------------------------------------------------------------------------------------


def test_a_bucket_prefix_is_watched_like_a_folder(
    tmp_path: Path, start: Callable[..., Watcher], moto_s3: S3
) -> None:
    """Objects appear whole, but a bundle's files one by one and an object may be replaced:
    a truncated frames.npy replaced by the full one, a truncated zip replaced by the whole."""
    fs, session = moto_s3.fs, SAMPLE_DIR.name
    incoming, out = "s3://raw/watch-in", "s3://datasets/watched"
    w = start(incoming + "/", "--out", out, *FAST, "--scheduler", "sync", *moto_s3.cli_options)
    w.wait_for("started")

    def untouched() -> None:
        fs.invalidate_cache()
        assert not fs.exists(f"datasets/watched/zarr/{session}.zarr")
        assert not fs.exists("datasets/watched/catalog.parquet")

    files = sorted(SAMPLE_DIR.iterdir(), key=lambda f: (f.name.endswith(LAST), f.name))
    for f in files:
        key = f"raw/watch-in/{session}/{f.name}"
        data = f.read_bytes()
        if f.name.endswith(LAST):
            fs.pipe(key, data[: len(data) // 2])
            time.sleep(0.5)
            untouched()
        last = time.time()
        fs.pipe(key, data)
        untouched()
        time.sleep(0.1)
    data = zip_bytes(write_bundle(tmp_path / "src" / "upload", ZIPPED), "upload")
    fs.pipe("raw/watch-in/upload.zip", data[: len(data) // 2])
    w.wait_for("incomplete", source=f"{incoming}/upload.zip")
    zipped = time.time()
    fs.pipe("raw/watch-in/upload.zip", data)

    for name, t in ((session, last), (ZIPPED.prefix, zipped)):
        w.wait_for("converted", session=name)
        assert when(w.wait_for("converting", session=name)) >= t + SETTLE - 0.01
    w.proc.send_signal(signal.SIGTERM)
    assert w.wait() == 0

    fs.invalidate_cache()
    catalog_bytes = fs.cat_file("datasets/watched/catalog.parquet")
    again = start(
        incoming + "/",
        "--out",
        out,
        "--once",
        "--settle",
        "1s",
        "--scheduler",
        "sync",
        *moto_s3.cli_options,
    )
    assert again.wait() == 0
    assert sorted(e["event"] for e in again.events() if e.get("session")) == [
        "converting",
        "converting",
        "ready",
        "ready",
        "skipped",
        "skipped",
    ]
    fs.invalidate_cache()
    assert fs.cat_file("datasets/watched/catalog.parquet") == catalog_bytes  # no churn

    local = tmp_path / "local-in"
    link_tree(SAMPLE_DIR, local / session)
    (local / "upload.zip").write_bytes(data)
    plain = tmp_path / "plain"
    plain_convert(local, plain, "--shard-frames", str(BUCKET_SHARD_FRAMES))  # the bucket's layout
    for name in (session, ZIPPED.prefix):
        for table in ("rows", "frames"):
            assert (
                fs.cat_file(f"datasets/watched/{table}/{name}.parquet")
                == (plain / table / f"{name}.parquet").read_bytes()
            )
        remote = zarr.open_array(
            f"{out}/zarr/{name}.zarr/frames", mode="r", storage_options=moto_s3.options
        )
        mine = zarr.open_array(str(plain / "zarr" / f"{name}.zarr" / "frames"), mode="r")
        np.testing.assert_array_equal(remote[:], mine[:])
    with fs.open("datasets/watched/catalog.parquet", "rb") as f:
        got = pq.read_table(f).drop_columns([*VOLATILE, "source"]).to_pylist()
    want = pq.read_table(plain / "catalog.parquet").drop_columns([*VOLATILE, "source"]).to_pylist()

    def sourceless(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows without the digest of each group's zarr.json: its provenance names the
        source, which differs (a bucket prefix, a local folder) like the ``source`` column."""
        return [
            {**r, "files": [f for f in r["files"] if not f["path"].endswith(".zarr/zarr.json")]}
            for r in rows
        ]

    assert sourceless(got) == sourceless(want)
    assert all(len(r["files"]) > 3 for r in got)  # every object of the session, recorded


# --- the pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("1.5h", 5400.0),
        ("2", 2.0),
        (3, 3.0),
        (" 0.2 s ", 0.2),
        ("1min", 60.0),
    ],
    ids=["s", "ms", "m", "h", "bare", "int", "spaces", "min"],
)
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "s", "5 sec", "-1s", "1d", "five", True, -2],
    ids=["empty", "unit-only", "sec", "negative", "days", "word", "bool", "negative-number"],
)
def test_bad_durations_say_what_is_expected(text: str | int) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(
        [("", 1.0), ("ms", 0.001), ("s", 1.0), ("m", 60.0), ("min", 60.0), ("h", 3600.0)]
    ),
)
def test_every_written_duration_reads_back(millis: int, unit: tuple[str, float]) -> None:
    text = f"{millis / 1000:.3f}{unit[0]}"
    assert parse_duration(text) == pytest.approx(millis / 1000 * unit[1])


def test_settling_counts_from_the_newest_modification_time() -> None:
    now, wall = 1000.0, 5_000.5
    assert quiet_since([("a", 1, 4_990.5, None)], now, wall) == pytest.approx(990.0)
    # the newest file decides; a time ahead of our clock counts as now
    assert quiet_since(
        [("a", 1, 4_990.5, None), ("b", 1, 4_999.5, None)], now, wall
    ) == pytest.approx(999.0)
    assert quiet_since([("a", 1, 5_010.5, None)], now, wall) == now
    assert quiet_since([("a", 1, None, None)], now, wall) == now
    # a whole second may be truncated (S3): the latest it could be
    assert quiet_since([("a", 1, 4_999.0, None)], now, wall) == pytest.approx(999.5)


def test_job_files_can_watch(tmp_path: Path) -> None:
    job = tmp_path / "watch.toml"
    job.write_text(
        '[job]\ninputs = ["in"]\nout = "out"\nwatch = true\nsettle = "2s"\n'
        'poll = 0.5\nincomplete_timeout = "15m"\n'
    )
    loaded = load_job(job)
    assert loaded.watch and loaded.watch_options == WatchOptions(2.0, 0.5, 900.0)
    assert load_job(job, {"settle": "3s"}).watch_options.settle == 3.0  # the CLI overrides


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('settle = "2s"\n', "settle only apply with watch = true"),
        ('watch = "yes"\n', "watch must be true or false"),
        ('watch = true\npoll = "0s"\n', "poll must be more than 0 seconds"),
        ('watch = true\nsettle = "soon"\n', "is not a duration"),
    ],
    ids=["settle-without-watch", "not-a-bool", "zero-poll", "bad-duration"],
)
def test_bad_watch_jobs_say_what_is_wrong(tmp_path: Path, extra: str, message: str) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[job]\ninputs = ["in"]\nout = "out"\n' + extra)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_job(job)


def test_a_watch_job_runs_as_a_watcher(tmp_path: Path, sample_dir: Path) -> None:
    link_tree(sample_dir, tmp_path / "in" / sample_dir.name)
    (tmp_path / "job.toml").write_text(
        '[job]\ninputs = ["in"]\nout = "out"\nwatch = true\nsettle = "0s"\nscheduler = "sync"\n'
    )
    proc = subprocess.run(
        [*CLI, "run", "job.toml", "--once", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == [
        "started",
        "ready",
        "converting",
        "converted",
        "stopped",
    ]
    assert [r["status"] for r in catalog(tmp_path / "out")] == ["converted"]


def test_the_library_api_runs_in_a_thread_and_stops_on_an_event(tmp_path: Path) -> None:
    """Embedded use: ``run_watch`` in a thread (no signal handlers), stopped by an Event; two
    uploads of one session never run at once, the second becomes its duplicate."""
    import threading

    incoming, out = tmp_path / "in", tmp_path / "out"
    link_tree(SAMPLE_DIR, incoming / "a" / SAMPLE_DIR.name)
    link_tree(SAMPLE_DIR, incoming / "b" / SAMPLE_DIR.name)
    events: list[dict[str, Any]] = []
    statuses: list[WatchStatus] = []
    stop = threading.Event()
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_watch(
                [str(incoming)],
                Output(str(out)),
                watch=WatchOptions(settle=0.2, poll=0.1),
                scheduler="threads",
                workers=2,
                on_event=events.append,
                on_status=statuses.append,
                stop=stop,
                handle_signals=False,
            )
        )
    )
    thread.start()
    deadline = time.monotonic() + 30
    while len([e for e in events if e["event"] in ("converted", "duplicate")]) < 2:
        assert time.monotonic() < deadline and thread.is_alive(), events
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    summary = result[0]
    assert summary.stopped == "signal" and summary.counts == {"converted": 1, "duplicate": 1}
    assert [e["source"] for e in events if e["event"] == "converted"] == [
        str(incoming / "a" / SAMPLE_DIR.name)
    ]  # found first, wins the name
    assert statuses[-1].done == 2 and statuses[-1].line().startswith("0 waiting · 0 queued")
    assert sorted(r["status"] for r in catalog(out)) == ["converted", "duplicate"]


def test_a_poll_costs_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stamps come from the poll's one listing (no request per file), and an archive is opened
    again only when its stamp changed; bundles that were handled stay handled."""
    incoming = tmp_path / "in"
    link_tree(SAMPLE_DIR, incoming / SAMPLE_DIR.name)
    (incoming / "upload.zip").write_bytes(
        zip_bytes(write_bundle(tmp_path / "src" / "upload", ZIPPED), "upload")
    )
    asked: list[str] = []

    def stamp_of(url: str, opts: Any) -> Any:
        asked.append(url)
        raise AssertionError("a stamp asked of the store, not read from the listing")

    monkeypatch.setattr(settle, "stamp_of", stamp_of)
    seen = settle.Incoming(
        [str(incoming)],
        {},
        WatchOptions(settle=0.0),
        "run",
        emit=lambda kind, **fields: None,
        report=lambda entry: None,
        drop=lambda key: None,
    )
    now = time.monotonic()
    seen.poll(now, time.time(), running=())
    assert seen.opened == 1 and len(seen.ready) == 2 and asked == []
    for key in list(seen.ready):  # converted: their results are recorded
        seen.mark(key, seen.tracks[key], "handled")
    seen.ready.clear()
    for _ in range(3):
        seen.poll(now, time.time(), running=())
        assert seen.opened == 0 and not seen.ready  # nothing reopened, nothing to do
    again = BundleSpec(prefix=ZIPPED.prefix, seed=9, n_frames=20)  # a new upload of the archive
    (incoming / "upload.zip").write_bytes(
        zip_bytes(write_bundle(tmp_path / "src2" / "upload", again), "upload")
    )
    seen.poll(now, time.time(), running=())
    assert seen.opened == 1 and [k[0] for k in seen.ready] == [f"{incoming}/upload.zip!upload"]


def test_a_watcher_with_shards_appends_each_new_upload_as_new_shards(tmp_path: Path) -> None:
    """formats zarr,wds: what a watcher converts is added to the shard set as new shards, the
    old ones byte for byte as they were, one index.json committed; the set verifies and
    webdataset's own reader streams every sample of it once."""
    import webdataset

    from reacture_convert.formats.wds.index import read_index

    incoming, out = tmp_path / "in", tmp_path / "out"
    link_tree(SAMPLE_DIR, incoming / "first")
    once = [*WATCH, str(incoming), "--out", str(out), "--once", "--settle", "0", "--json"]
    once += ["--format", "zarr,wds", "--scheduler", "sync"]
    done = subprocess.run(once, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    first = read_index(Output(str(out)))
    assert first is not None and [s.session for s in first.sessions] == [SAMPLE_DIR.name]
    old = {s.url: (out / "wds" / s.url).read_bytes() for s in first.shards}

    write_bundle(incoming / "second", SMALL)
    done = subprocess.run(once, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["sessions"] for e in events if e["event"] == "shards"] == [[SMALL.prefix]]
    index = read_index(Output(str(out)))
    assert index is not None
    assert sorted(s.session for s in index.sessions) == sorted([SAMPLE_DIR.name, SMALL.prefix])
    assert {url: (out / "wds" / url).read_bytes() for url in old} == old  # untouched
    assert len(index.shards) > len(first.shards)
    assert verify_dataset(Output(str(out))) == (2, [])

    urls = [str(out / "wds" / s.url) for s in index.shards]
    keys = [s["__key__"] for s in webdataset.WebDataset(urls, shardshuffle=False)]
    assert len(keys) == len(set(keys)) == index.total_samples == 92 + SMALL.n_frames
