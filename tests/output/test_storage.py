"""Commits that cannot be half-seen: staging, commit, the lock, and a run killed mid-batch that a
re-run finishes into exactly the bytes of a clean run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.errors import LockedError
from reacture_convert.ingest.discover import discover
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import STAGING, Output, lock_output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions, convert_session
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.zarr import BUCKET_SHARD_FRAMES, ZarrOptions
from tests.helpers.paths import REPO

CONVERT = REPO / ".venv" / "bin" / "reacture-convert"
OUTPUT_DIRS = ("zarr", "rows", "frames")
PARTS = ("zarr/{}.zarr", "rows/{}.parquet", "frames/{}.parquet")


def tree_digest(out: Path) -> dict[str, str]:
    """sha256 of every file under OUT/zarr, OUT/rows and OUT/frames, by relative path."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in OUTPUT_DIRS
        if (out / d).exists()
        for p in sorted((out / d).rglob("*"))
        if p.is_file()
    }


def visible(out: Path) -> list[str]:
    """The visible outputs: top-level entries of zarr/, rows/ and frames/."""
    return sorted(
        str(p.relative_to(out))
        for d in OUTPUT_DIRS
        if (out / d).exists()
        for p in (out / d).iterdir()
    )


def assert_no_leftovers(out: Path) -> None:
    """Nothing of a staging area, a trash folder or a half-written file is left or visible."""
    staging = out / STAGING
    assert not staging.exists() or not any(staging.iterdir()), list(staging.rglob("*"))
    assert not (out / ".trash").exists() or not any((out / ".trash").iterdir())
    stray = [
        p
        for p in out.rglob("*")
        if ".tmp" in p.name or (p.name.startswith(STAGING) and p != staging)
    ]
    assert not stray
    for entry in visible(out):
        assert "staging" not in entry and "trash" not in entry, entry


# --- a run killed mid-batch ---------------------------------------------------------------------
def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and the workers it started (its own process group, made for it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _wait_for_commit(out: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "catalog.parquet").exists() or any((out / "zarr").glob("*.zarr")):
            return
        time.sleep(0.002)
    raise AssertionError(f"no session was committed (exit code {proc.poll()})")


def test_killed_run_then_rerun_gives_the_bytes_of_a_clean_run(tmp_path: Path) -> None:
    bundles = [
        write_bundle(
            tmp_path / "in" / f"b{k}",
            BundleSpec(
                n_frames=300, seed=k, prefix=f"reacture_17956000{k:05d}", events_per_frame=1.0
            ),
        )
        for k in range(6)
    ]
    out, clean = tmp_path / "out", tmp_path / "clean"
    proc = subprocess.Popen(
        [str(CONVERT), "convert", *map(str, bundles), "--out", str(out), "-q", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_commit(out, proc)
    finally:
        _kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    # what a killed run leaves: every session in the catalog is complete; nothing is half-seen
    # by a reader that goes through the catalog
    killed_catalog = read_catalog(Output(str(out))) if (out / "catalog.parquet").exists() else []
    for e in killed_catalog:
        assert e.status == "converted"
        assert all((out / p.format(e.session)).exists() for p in PARTS)
    assert len(killed_catalog) < len(bundles)

    summary = run_convert([str(b) for b in bundles], Output(str(out)), scheduler="sync")
    assert summary.ok
    statuses = {e.prefix: e.status for e in summary.entries}
    assert {statuses[e.prefix] for e in killed_catalog} <= {"skipped"}
    assert run_convert([str(b) for b in bundles], Output(str(clean)), scheduler="sync").ok

    assert tree_digest(out) == tree_digest(clean)
    assert len(visible(out)) == 3 * len(bundles)
    assert_no_leftovers(out)
    catalog = read_catalog(Output(str(out)))
    assert sorted((e.prefix, e.status in ("converted", "skipped")) for e in catalog) == sorted(
        (f"reacture_17956000{k:05d}", True) for k in range(6)
    )
    assert verify_dataset(Output(str(out)), sources=True) == (6, [])


# --- staging ------------------------------------------------------------------------------------
def test_staged_session_is_invisible_until_committed(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = make_bundle(n_frames=20)
    out = tmp_path / "out"
    seen: dict[str, Any] = {}

    def crash_before_commit(self: Output, session: str, parts: list[str]) -> None:
        staged = Path(self.staging(session))
        seen["staged"] = sorted(
            str(p.relative_to(staged)) for p in staged.iterdir() for p in p.iterdir()
        )
        seen["visible"] = visible(out)
        seen["verify"] = verify_dataset(self) if (out / "catalog.parquet").exists() else None
        raise RuntimeError("power cut during commit")

    monkeypatch.setattr(Output, "commit", crash_before_commit)
    summary = run_convert([str(folder)], Output(str(out)), scheduler="sync")
    monkeypatch.undo()
    # while staged: complete in staging, nothing of it visible
    assert seen["staged"] == [
        "frames/reacture_1795600000000.parquet",
        "rows/reacture_1795600000000.parquet",
        "zarr/reacture_1795600000000.zarr",
    ]
    assert seen["visible"] == [] and seen["verify"] in (None, (0, []))
    # after the failure: a catalog row that says so, still nothing visible, staging cleared
    (entry,) = summary.entries
    assert entry.status == "failed" and "power cut" in (entry.reason or "")
    assert [f.code for f in entry.findings if f.severity == "error"] == ["CONVERT_FAILED"]
    assert visible(out) == [] and read_catalog(Output(str(out)))[0].status == "failed"
    assert_no_leftovers(out)
    # and the next run converts it
    again = run_convert([str(folder)], Output(str(out)), scheduler="sync")
    assert [e.status for e in again.entries] == ["converted"]
    assert verify_dataset(Output(str(out)), sources=True) == (1, [])


def test_leftovers_of_an_interrupted_run_are_cleared(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    folder = make_bundle(n_frames=5)
    out = tmp_path / "out"
    junk = out / STAGING / "reacture_1795600000099" / "zarr" / "reacture_1795600000099.zarr"
    junk.mkdir(parents=True)
    (junk / "zarr.json").write_text("{}")
    assert run_convert([str(folder)], Output(str(out)), scheduler="sync").ok
    assert not junk.exists()
    assert visible(out) == [p.format("reacture_1795600000000") for p in sorted(PARTS)]
    assert_no_leftovers(out)


def test_commit_replaces_an_older_copy_whole(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    for version in ("old", "new"):
        staged = Path(out.staging("s"))
        (staged / "zarr" / "s.zarr" / "frames").mkdir(parents=True)
        (staged / "zarr" / "s.zarr" / "zarr.json").write_text(version)
        if version == "old":
            (staged / "zarr" / "s.zarr" / "frames" / "only-in-old").write_text("x")
        (staged / "rows").mkdir()
        (staged / "rows" / "s.parquet").write_text(version)
        out.commit("s", ["zarr/s.zarr", "rows/s.parquet"])
        assert not staged.exists()
    root = tmp_path / "out"
    assert (root / "zarr" / "s.zarr" / "zarr.json").read_text() == "new"
    assert (root / "rows" / "s.parquet").read_text() == "new"
    assert not (root / "zarr" / "s.zarr" / "frames" / "only-in-old").exists()
    assert_no_leftovers(root)


def test_write_bytes_atomic_leaves_no_partial_file(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    out.write_bytes_atomic("catalog.parquet", b"first")
    out.write_bytes_atomic("catalog.parquet", b"second")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["catalog.parquet"]
    assert (tmp_path / "out" / "catalog.parquet").read_bytes() == b"second"


@pytest.fixture
def memory_out() -> Iterator[Output]:
    out = Output("memory://reacture-storage-test/out")
    yield out
    fsspec.filesystem("memory").rm("/reacture-storage-test", recursive=True)


def test_object_store_output_holds_the_same_bytes(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    memory_out: Output,
) -> None:
    """An OUT without rename (fsspec memory://) takes the copy path: same files, same bytes."""
    folders = [
        make_bundle(n_frames=n, seed=n, prefix=f"reacture_17956000000{n:02d}") for n in (1, 12)
    ]
    local = tmp_path / "out"
    bucket_layout = ConvertOptions(zarr=ZarrOptions(shard_frames=BUCKET_SHARD_FRAMES))
    local_out = Output(str(local))
    assert run_convert([str(f) for f in folders], local_out, bucket_layout, scheduler="sync").ok
    assert run_convert([str(f) for f in folders], memory_out, scheduler="sync").ok
    fs, root = memory_out.fs, memory_out.root
    remote = {
        p[len(root) + 1 :]: hashlib.sha256(fs.cat_file(p)).hexdigest()
        for p in fs.find(root)
        if p[len(root) + 1 :].split("/")[0] in OUTPUT_DIRS
    }
    assert remote == tree_digest(local)
    assert not fs.exists(memory_out.path(STAGING)) or not fs.find(memory_out.path(STAGING))
    assert verify_dataset(memory_out, sources=True) == (2, [])
    again = run_convert([str(f) for f in folders], memory_out, scheduler="sync")
    assert {e.status for e in again.entries} == {"skipped"}


def test_object_store_commit_copies_the_group_root_last(
    make_bundle: Callable[..., Path],
    memory_out: Output,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without rename, a reader must see no Zarr group until every chunk is in place."""
    folder = make_bundle(n_frames=10)
    fs = memory_out.fs
    copied: list[str] = []
    original = type(fs).copy

    def record(self: Any, src: str, dst: str, *args: Any, **kw: Any) -> Any:
        copied.append(dst[len(memory_out.root) + 1 :])
        return original(self, src, dst, *args, **kw)

    monkeypatch.setattr(type(fs), "copy", record)
    assert run_convert([str(folder)], memory_out, scheduler="sync").ok
    group = [c for c in copied if c.startswith("zarr/")]
    assert group[-1] == "zarr/reacture_1795600000000.zarr/zarr.json"
    assert len(group) > 3 and "zarr/reacture_1795600000000.zarr/zarr.json" not in group[:-1]


# --- the lock -----------------------------------------------------------------------------------
def test_second_run_on_a_locked_output_refuses_with_exit_3(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    folder = make_bundle(n_frames=5)
    out = Output(str(tmp_path / "out"))
    with lock_output(out):
        result = CliRunner().invoke(
            cli, ["convert", str(folder), "--out", out.url, "--scheduler", "sync"]
        )
        assert result.exit_code == 3, result.output
        assert "another reacture-convert run" in result.output and "--wait" in result.output
        with pytest.raises(LockedError):
            run_convert([str(folder)], out, scheduler="sync")
        assert visible(Path(out.url)) == [] and not (Path(out.url) / "catalog.parquet").exists()
    result = CliRunner().invoke(
        cli, ["convert", str(folder), "--out", out.url, "--scheduler", "sync"]
    )
    assert result.exit_code == 0, result.output


def test_wait_queues_behind_the_lock(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_bundle(n_frames=5)
    out = Output(str(tmp_path / "out"))
    results: list[Any] = []
    with lock_output(out):
        worker = threading.Thread(
            target=lambda: results.append(
                run_convert([str(folder)], out, scheduler="sync", wait_for_lock=True)
            )
        )
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and not results  # queued, wrote nothing
        assert not (Path(out.url) / "catalog.parquet").exists()
    worker.join(timeout=60)
    assert [e.status for e in results[0].entries] == ["converted"]


def test_an_output_path_that_cannot_be_a_folder_exits_3(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """A file on the way to OUT: OUT cannot be made (a file where OUT itself should be is a
    usage error, exit 2: tests/run/test_out_folder.py)."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    out = in_the_way / "out"
    result = CliRunner().invoke(
        cli, ["convert", str(make_bundle(n_frames=3)), "--out", str(out), "--scheduler", "sync"]
    )
    assert result.exit_code == 3, result.output
    assert "cannot write the output here" in result.output
    assert in_the_way.read_text() == "not a folder"


def test_a_session_converted_into_an_object_store_is_sharded_by_default(
    make_bundle: Callable[..., Path], memory_out: Output
) -> None:
    """``convert_session`` itself (what ``run_convert`` and ``watch`` both run) settles the
    Zarr layout for its OUT: sharded on an object store unless asked otherwise."""
    folder = make_bundle(n_frames=12, seed=3, prefix="reacture_1795600000303")
    (bundle,) = discover([str(folder)]).bundles
    for options, sharded in ((ConvertOptions(), True), (NO_SHARDS, False)):
        result = convert_session(bundle, memory_out, options)
        assert result.entry.status == "converted"
        (meta,) = [p for p in memory_out.fs.find(memory_out.root) if p.endswith("frames/zarr.json")]
        codecs = json.loads(memory_out.fs.cat_file(meta))["codecs"]
        assert (codecs[0]["name"] == "sharding_indexed") is sharded
        memory_out.fs.rm(memory_out.root, recursive=True)


NO_SHARDS = ConvertOptions(zarr=ZarrOptions(shard_frames=None))
