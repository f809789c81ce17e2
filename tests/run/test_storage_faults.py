"""OUT's storage failing in the middle of ``convert`` ends the run, not a session: disk full while
a session is written or while the shards are merged, OUT made read-only, the object store
refusing writes. Each fault is real (a small tmpfs filled to its last byte, folders made
read-only for a process without CAP_DAC_OVERRIDE, a proxy in front of the moto server answering
``AccessDenied``) and comes exactly at a phase of a real ``python -m reacture_convert convert``
(``REACTURE_PAUSE_AT`` stops the run there while the test makes the fault, then it goes on).

What must hold: exit 3, one or two lines on stderr naming OUT and what to do, no traceback, the
``--json`` error document; the sessions committed before the fault stay committed, recorded and
verified; the session in flight has no row (no ``failed``: the bundle is fine); nothing is left
in staging; and once the fault is gone, the same command finishes the job with every session
exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from reacture_convert.formats.wds.index import read_index
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.layout import STAGING
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.faults import small_tmpfs, unprivileged, wait_stopped
from tests.helpers.s3 import S3

PREFIXES = tuple(f"reacture_179562000000{k}" for k in range(3))  # session-name order
FRAMES = 16


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-bundles")
    for k, prefix in enumerate(PREFIXES):
        write_bundle(root / f"b{k}", BundleSpec(n_frames=FRAMES, seed=k, prefix=prefix))
    return root


@dataclass(frozen=True)
class Ran:
    code: int
    stderr: str
    doc: dict[str, object] | None  # the --json document (the summary, or the error's)


def convert(
    inputs: Path | Sequence[Path],
    out: str,
    fmt: str,
    *extra: str,
    pause_at: str = "",
    meanwhile: Callable[[], None] = lambda: None,
    prefix: tuple[str, ...] = (),
    marker: Path | None = None,
    command: str = "convert",
) -> Ran:
    """The real command (``--json``, in session-name order; ``command``: ``convert``, or
    ``watch`` with ``extra`` options that make it one pass). ``pause_at``: the run stops at that
    phase (``phases.reached``), ``meanwhile()`` makes the fault, then the run goes on."""
    env = {k: v for k, v in os.environ.items() if k != "REACTURE_DEBUG"}
    if pause_at:
        assert marker is not None
        env |= {"REACTURE_PAUSE_AT": pause_at, "REACTURE_PHASE_FILE": str(marker)}
    paths = [str(p) for p in ([inputs] if isinstance(inputs, Path) else inputs)]
    args = [command, *paths, "--out", out, "--format", fmt, "--scheduler", "sync"]
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "reacture_convert", *args, *extra, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if pause_at:
        assert marker is not None
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"the run ended before {pause_at}: {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"{pause_at} was never reached"
            time.sleep(0.01)
        wait_stopped(proc.pid)  # (the marker is written just before the stop)
        meanwhile()
        os.kill(proc.pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=300)
    lines = stdout.strip().splitlines()  # (watch: JSON lines, the error last)
    doc = json.loads(lines[-1] if command == "watch" else stdout) if lines else None
    return Ran(proc.returncode, stderr, doc)


def assert_stopped_by_the_fault(ran: Ran, out: str, kind: str, says: str) -> None:
    """Exit 3, one or two lines naming OUT, what failed and what to do; the error document."""
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
    assert ran.code == 3, ran.stderr
    err = ran.stderr.strip().splitlines()
    assert 1 <= len(err) <= 2 and err[0].startswith(f"Error: {out}: {says}"), ran.stderr
    assert "run the same command again" in err[0], ran.stderr
    assert ran.doc is not None and set(ran.doc) == {"error"}, ran.doc
    error = ran.doc["error"]
    assert isinstance(error, dict)
    assert (error["code"], error["kind"]) == (3, kind), error
    assert error["message"] in ran.stderr


def live_rows(out: Output) -> list[tuple[str | None, str]]:
    out.fs.invalidate_cache()  # (an object store's listings, cached by s3fs, are stale now)
    return sorted((e.session, e.status) for e in read_catalog(out))


def assert_finished_once(
    ran: Ran, out: Output, fmt: str, sessions: Sequence[str] = PREFIXES
) -> None:
    """The re-run: exit 0, every session once (converted or kept), no other row, verified."""
    assert ran.code == 0, ran.stderr[-3000:]
    rows = live_rows(out)
    assert [s for s, _ in rows] == list(sessions), rows
    assert {status for _, status in rows} <= {"converted", "skipped"}, rows
    assert verify_dataset(out, sources=True) == (len(sessions), [])
    if "wds" in fmt:
        index = read_index(out)
        assert index is not None and index.total_samples == FRAMES * len(sessions)
        assert [s.session for s in index.sessions] == list(sessions)


def leftovers(out: Path) -> list[str]:
    """Staged or temporary files a run left under ``out``."""
    staged = (
        [p for p in (out / STAGING).rglob("*") if p.is_file()] if (out / STAGING).exists() else []
    )
    temporary = [p for p in out.rglob("*") if ".tmp-" in p.name]
    return sorted(str(p.relative_to(out)) for p in staged + temporary)


# --- disk full ------------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a whole run fits, until ``fill`` takes its last byte."""
    with small_tmpfs(tmp_path / "disk", "16m") as mount:
        yield mount


def fill(mount: Path) -> None:
    """Take every free byte of ``mount`` (a file ``filler``)."""
    with open(mount / "filler", "wb", buffering=0) as f, pytest.raises(OSError) as full:
        while True:
            f.write(b"\0" * (1 << 16))
    assert full.value.errno == 28  # ENOSPC
    with open(mount / "filler", "ab", buffering=0) as f, pytest.raises(OSError):
        for _ in range(64):  # the last pages a 64 KiB write could not take
            f.write(b"\0" * 4096)


# (format, where the disk fills: the second session starting to read, or the shard merge)
DISK_FULL = [("zarr", f"reading:{PREFIXES[1]}", 1), ("zarr,wds", "shard-merge", 3)]


@pytest.mark.parametrize(("fmt", "phase", "committed"), DISK_FULL, ids=["session", "shard-merge"])
def test_disk_full_mid_run_stops_cleanly_and_the_rerun_finishes(
    bundles: Path, tmpfs: Path, tmp_path: Path, fmt: str, phase: str, committed: int
) -> None:
    out_dir = tmpfs / "out"
    out = Output(str(out_dir))
    ran = convert(
        bundles, str(out_dir), fmt, pause_at=phase, meanwhile=lambda: fill(tmpfs),
        marker=tmp_path / "phase",
    )  # fmt: skip

    assert_stopped_by_the_fault(ran, str(out_dir), "disk_full", "no space left on the device")
    assert "free some space" in ran.stderr
    # the sessions committed before the fault: recorded and whole; the one in flight: no row
    assert live_rows(out) == [(p, "converted") for p in PREFIXES[:committed]]
    assert verify_dataset(out) == (committed, [])
    assert leftovers(out_dir) == []
    assert read_index(out) is None  # no shards were half made visible

    (tmpfs / "filler").unlink()
    assert_finished_once(convert(bundles, str(out_dir), fmt), out, fmt)
    assert leftovers(out_dir) == []


def test_a_watcher_stops_on_a_full_disk_too(bundles: Path, tmpfs: Path, tmp_path: Path) -> None:
    out_dir = tmpfs / "out"
    out = Output(str(out_dir))
    once = ("--once", "--settle", "0s")
    ran = convert(
        bundles, str(out_dir), "zarr", *once, pause_at=f"reading:{PREFIXES[1]}",
        meanwhile=lambda: fill(tmpfs), marker=tmp_path / "phase", command="watch",
    )  # fmt: skip

    assert_stopped_by_the_fault(ran, str(out_dir), "disk_full", "no space left on the device")
    assert all(status == "converted" for _, status in live_rows(out))
    assert PREFIXES[1] not in dict(live_rows(out))
    assert leftovers(out_dir) == []

    (tmpfs / "filler").unlink()
    again = convert(bundles, str(out_dir), "zarr", *once, command="watch")
    assert again.code == 0, again.stderr[-3000:]
    assert [s for s, _ in live_rows(out)] == list(PREFIXES)
    assert verify_dataset(out) == (len(PREFIXES), [])


# --- permission denied ----------------------------------------------------------------------


def _folders_mode(root: Path, mode: int) -> None:
    for folder, _, _ in os.walk(root):
        os.chmod(folder, mode)


def test_out_made_read_only_mid_run_stops_cleanly_and_the_rerun_finishes(
    bundles: Path, tmp_path: Path
) -> None:
    prefix = unprivileged()
    out_dir = tmp_path / "out"
    out = Output(str(out_dir))
    try:
        ran = convert(
            bundles, str(out_dir), "zarr", pause_at=f"reading:{PREFIXES[1]}",
            meanwhile=lambda: _folders_mode(out_dir, 0o555), prefix=prefix,
            marker=tmp_path / "phase",
        )  # fmt: skip
    finally:
        _folders_mode(out_dir, 0o755)

    assert_stopped_by_the_fault(ran, str(out_dir), "permission", "permission denied")
    assert str(out_dir / STAGING) in ran.stderr  # the file it could not write
    assert live_rows(out) == [(PREFIXES[0], "converted")]
    assert verify_dataset(out) == (1, [])
    assert leftovers(out_dir) == [], ran.stderr[-3000:]

    assert_finished_once(convert(bundles, str(out_dir), "zarr", prefix=prefix), out, "zarr")


# --- the object store refusing writes -------------------------------------------------------


def test_object_store_refusing_writes_mid_run_stops_cleanly_and_the_rerun_finishes(
    bundles: Path, moto_s3: S3
) -> None:
    """A proxy in front of the moto server answers ``AccessDenied`` to every write of the second
    session (as a bucket policy denying the prefix would), then lets them through. (Two
    sessions: each request to moto costs tens of milliseconds.)"""
    url = "s3://datasets/faults"
    inputs = [bundles / "b0", bundles / "b1"]

    def second_session_writes(method: str, path: str) -> bool:
        return method in ("PUT", "POST") and PREFIXES[1] in path

    with LatencyProxy(moto_s3.endpoint, refuse=second_session_writes) as proxy:
        out = Output(url, {"client_kwargs": {"endpoint_url": proxy.url}})
        options = ("--storage-option", f"client_kwargs.endpoint_url={proxy.url}")
        ran = convert(inputs, url, "zarr", *options)

        assert_stopped_by_the_fault(ran, url, "permission", "permission denied")
        assert "access to the bucket" in ran.stderr
        assert live_rows(out) == [(PREFIXES[0], "converted")]
        assert verify_dataset(out) == (1, [])
        assert moto_s3.fs.find(f"datasets/faults/{STAGING}") == []

        proxy.refuse = None
        assert_finished_once(convert(inputs, url, "zarr", *options), out, "zarr", PREFIXES[:2])


def test_an_unreadable_input_stays_that_bundles_failure(bundles: Path, tmp_path: Path) -> None:
    """Permission denied on an INPUT is not OUT's storage failing: that bundle's row says it,
    the others convert, exit 1."""
    prefix = unprivileged()
    inputs = tmp_path / "in"
    shutil.copytree(bundles, inputs)
    unreadable = inputs / "b1" / f"{PREFIXES[1]}_data.jsonl"
    unreadable.chmod(0)
    out = Output(str(tmp_path / "out"))
    ran = convert(inputs, out.url, "zarr", prefix=prefix)

    assert ran.code == 1, ran.stderr
    rows = dict(live_rows(out))
    assert rows.pop(PREFIXES[1]) in ("failed", "rejected")
    assert rows == {PREFIXES[0]: "converted", PREFIXES[2]: "converted"}
