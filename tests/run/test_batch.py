"""Batches: every scheduler gives the serial result byte for byte, and bad sessions are rows.

The cluster is real (``dask_cluster`` in conftest: a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1); so are the local ``threads``/``processes`` clusters, the CLI, the
files and the failures (truncated frames, a bad JSON line, an output path that cannot be
written).
"""

from __future__ import annotations

import errno
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.errors import ConfigError, InputError, InputNotFoundError, is_transient
from reacture_convert.formats.wds.index import read_index
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.progress import SessionDone
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.paths import SAMPLE_DIR

OPTIONS = ["--format", "zarr,wds", "--shard-size", "1MB", "--chunk-frames", "16"]
OUTPUT_DIRS = ("zarr", "rows", "frames", "wds")
VOLATILE = ("converted_at", "run_id")  # when and in which run: differ between any two runs


def convert_cli(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``reacture-convert convert ... --json``; return the exit code and the summary."""
    result = CliRunner().invoke(cli, ["convert", *args, "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def dataset_files(root: Path) -> dict[str, bytes]:
    """Every output file of a dataset, by its path relative to the dataset."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for d in OUTPUT_DIRS
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def catalog_rows(root: Path) -> list[dict[str, Any]]:
    return pq.read_table(root / "catalog.parquet").drop_columns(list(VOLATILE)).to_pylist()


def assert_same_dataset(got: Path, want: Path) -> None:
    a, b = dataset_files(got), dataset_files(want)
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []
    assert catalog_rows(got) == catalog_rows(want)


# --- one batch, every scheduler ------------------------------------------------------------

SYNTH = [
    ("s1", BundleSpec(prefix="reacture_1795600000001", seed=1, n_frames=30)),
    ("s2", BundleSpec(prefix="reacture_1795600000002", seed=2, n_frames=45, events_per_frame=1.5)),
    ("s3", BundleSpec(prefix="reacture_1795600000003", seed=3, n_frames=1)),
]
ZIPPED = BundleSpec(prefix="reacture_1795600000004", seed=4, n_frames=20, blank=True)


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three synthetic bundle folders, a .zip holding a fourth, and the real sample."""
    root = tmp_path_factory.mktemp("batch-inputs")
    for name, spec in SYNTH:
        write_bundle(root / "bundles" / name, spec)
    zipped = write_bundle(root / "zip-src" / "s4", ZIPPED)
    with zipfile.ZipFile(root / "bundles" / "upload.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(zipped.iterdir()):
            zf.write(f, f"s4/{f.name}")
    return [str(root / "bundles"), str(SAMPLE_DIR)]


@pytest.fixture(scope="module")
def sync_dataset(batch_inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the batch converted serially, in this process."""
    out = tmp_path_factory.mktemp("sync") / "ds"
    code, summary = convert_cli(*batch_inputs, "--out", str(out), *OPTIONS, "--scheduler", "sync")
    assert code == 0, summary
    assert summary["counts"] == {"converted": 5}
    assert summary["wds"]["shards"] > 1  # the merge really spans shards
    return out


def test_dask_cluster_run_equals_sync_run(
    dask_cluster: str, batch_inputs: list[str], sync_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    code, summary = convert_cli(
        *batch_inputs, "--out", str(out), *OPTIONS, "--scheduler", dask_cluster
    )
    assert code == 0, summary
    assert summary["counts"] == {"converted": 5}
    assert_same_dataset(out, sync_dataset)
    assert not (out / ".staging").exists()


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_dask_run_equals_sync_run(
    scheduler: str, batch_inputs: list[str], sync_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    code, summary = convert_cli(
        *batch_inputs, "--out", str(out), *OPTIONS, "--scheduler", scheduler, "--workers", "2"
    )
    assert code == 0, summary
    assert summary["counts"] == {"converted": 5}
    assert_same_dataset(out, sync_dataset)


def test_sync_reference_is_complete(sync_dataset: Path) -> None:
    """The reference itself: every session verifies, the index holds every frame."""
    checked, problems = verify_dataset(Output(str(sync_dataset)))
    assert (checked, problems) == (5, [])
    index = read_index(Output(str(sync_dataset)))
    assert index is not None
    assert index.total_samples == 30 + 45 + 1 + 20 + 92
    sources = [r["source"] for r in catalog_rows(sync_dataset)]
    assert sum(s.endswith("upload.zip!s4") for s in sources) == 1  # the zipped bundle


# --- fault isolation ---------------------------------------------------------------------


def _truncate_frames(folder: Path, prefix: str) -> None:
    frames = folder / f"{prefix}_frames.npy"
    with open(frames, "r+b") as f:
        f.truncate(frames.stat().st_size - 1000)


def _break_json_line(folder: Path, prefix: str, line: int) -> None:
    data = folder / f"{prefix}_data.jsonl"
    lines = data.read_text().split("\n")
    lines[line - 1] = '{"type": "robot_state", "timestamp_ms": 5,'
    data.write_text("\n".join(lines))


def test_bad_bundles_are_rows_with_reasons_and_the_batch_finishes(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    good = {"reacture_1795600000011": 12, "reacture_1795600000012": 15}
    for k, (prefix, n) in enumerate(good.items()):
        make_bundle(f"good{k}", prefix=prefix, seed=k, n_frames=n)
    _truncate_frames(
        make_bundle("trunc", prefix="reacture_1795600000021", seed=5), "reacture_1795600000021"
    )
    _break_json_line(
        make_bundle("badjson", prefix="reacture_1795600000022", seed=6), "reacture_1795600000022", 5
    )
    # a valid bundle whose output cannot be written: an I/O error, not bad input
    make_bundle("unwritable", prefix="reacture_1795600000031", seed=7, n_frames=10)
    out = tmp_path / "out"
    blocker = out / "zarr" / "reacture_1795600000031.zarr"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the session's Zarr group must go")

    code, summary = convert_cli(
        str(tmp_path / "bundles"),
        "--out",
        str(out),
        "--format",
        "zarr,wds",
        "--scheduler",
        "processes",
        "-j",
        "2",
    )

    assert code == 1
    assert summary["ok"] is False
    assert summary["counts"] == {"converted": 2, "rejected": 2, "failed": 1}
    rows = {r["session"]: r for r in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert {s: r["status"] for s, r in rows.items()} == {
        "reacture_1795600000011": "converted",
        "reacture_1795600000012": "converted",
        "reacture_1795600000021": "rejected",
        "reacture_1795600000022": "rejected",
        "reacture_1795600000031": "failed",
    }
    assert rows["reacture_1795600000021"]["reason"].startswith("NPY_TRUNCATED at ")
    assert (
        rows["reacture_1795600000022"]["reason"]
        == "JSONL_BAD_JSON at reacture_1795600000022_data.jsonl:5"
    )
    assert rows["reacture_1795600000031"]["reason"].startswith("NotADirectoryError: ")
    for bad in ("reacture_1795600000021", "reacture_1795600000022", "reacture_1795600000031"):
        assert rows[bad]["outputs"] == []
        assert any(f["severity"] == "error" for f in rows[bad]["findings"])
    # the good sessions are complete, and only they are in the shards
    checked, problems = verify_dataset(Output(str(out)))
    assert (checked, problems) == (2, [])
    index = read_index(Output(str(out)))
    assert index is not None and index.total_samples == sum(good.values())
    assert blocker.read_text().startswith("a file")  # nothing of ours was written over it
    assert not (out / ".staging").exists()

    # once the obstacle is gone, a re-run converts the failed session and skips the rest
    blocker.unlink()
    code, again = convert_cli(
        str(tmp_path / "bundles"), "--out", str(out), "--format", "zarr", "--scheduler", "sync"
    )
    assert code == 1  # the rejected bundles are still rejected
    assert again["counts"] == {"converted": 1, "skipped": 2, "rejected": 2}


@pytest.mark.parametrize("bad_position", [0, 1], ids=["first", "second"])
def test_stop_on_error_starts_nothing_after_the_first_bad_bundle(
    bad_position: int, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    prefixes = [f"reacture_179560000010{k}" for k in range(4)]  # session-name order
    for k, prefix in enumerate(prefixes):
        folder = make_bundle(f"b{k}", prefix=prefix, seed=k, n_frames=8)
        if k == bad_position:
            _truncate_frames(folder, prefix)
    out = Output(str(tmp_path / "out"))
    seen: list[tuple[str, int, int]] = []
    summary = run_convert(
        [str(tmp_path / "bundles")],
        out,
        ConvertOptions(formats=("zarr", "wds")),
        scheduler="sync",
        stop_on_error=True,
        progress=lambda ev: (
            isinstance(ev, SessionDone) and seen.append((ev.entry.status, ev.done, ev.total))
        ),
    )
    statuses = ["converted"] * bad_position + ["rejected"]
    assert [e.status for e in summary.entries] == statuses
    assert [e.session for e in summary.entries] == prefixes[: bad_position + 1]
    assert seen == [(s, k + 1, 4) for k, s in enumerate(statuses)]
    not_started = 4 - bad_position - 1
    assert summary.extra["stopped"] == f"on_error=stop: {not_started} bundle(s) not started"
    assert [e.session for e in read_catalog(out)] == prefixes[: bad_position + 1]
    assert read_index(out) is None  # no shards from a stopped run


def test_without_stop_every_bundle_is_tried(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    for k in range(3):
        folder = make_bundle(f"b{k}", prefix=f"reacture_179560000020{k}", seed=k, n_frames=8)
        if k == 0:
            _truncate_frames(folder, f"reacture_179560000020{k}")
    summary = run_convert(
        [str(tmp_path / "bundles")], Output(str(tmp_path / "out")), scheduler="sync"
    )
    assert summary.counts == {"rejected": 1, "converted": 2}
    assert "stopped" not in summary.extra


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, transient",
    [
        (OSError(errno.EIO, "I/O error"), True),
        (ConnectionResetError(errno.ECONNRESET, "connection reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (BrokenPipeError(errno.EPIPE, "broken pipe"), True),
        (OSError("s3: SlowDown, please reduce your request rate"), True),
        (FileNotFoundError(errno.ENOENT, "no such file"), False),
        (PermissionError(errno.EACCES, "access denied"), False),
        (IsADirectoryError(errno.EISDIR, "is a directory"), False),
        (NotADirectoryError(errno.ENOTDIR, "not a directory"), False),
        (InputNotFoundError("bundle vanished"), False),
        (InputError("frames.npy is truncated"), False),
        (ConfigError("bad option"), False),
        (ValueError("bad value"), False),
        (KeyError("frames.npy"), False),
        (MemoryError(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_only_transient_io_errors_are_retried(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_missing_input_beside_a_good_one_is_said_not_recorded(
    tmp_path: Path, sample_dir: Path
) -> None:
    """The good input converts; the missing one is an error finding of the run (exit 1), not a
    catalog row: a typo must not stay in the catalog for ever."""
    out = tmp_path / "out"
    missing = str(tmp_path / "nowhere")
    code, summary = convert_cli(str(sample_dir), missing, "--out", str(out), "--scheduler", "sync")
    assert code == 1 and not summary["ok"]
    assert summary["counts"] == {"converted": 1}
    assert [(f["code"], f["file"]) for f in summary["findings"]] == [("INPUT_NOT_FOUND", missing)]
    assert [e.source for e in read_catalog(Output(str(out)))] == [str(sample_dir)]


# --- re-runs ---------------------------------------------------------------------------------


def test_a_rerun_on_workers_skips_what_is_unchanged_and_converts_what_changed(
    tmp_path: Path,
) -> None:
    """A re-run on local workers (where sessions with a live row go several to a task): the
    unchanged sessions are skipped, a changed one (with --force) converted, every session
    reported once, and the dataset is the one a serial run of the same inputs gives."""
    specs = [
        BundleSpec(prefix=f"reacture_17956000070{k:02d}", seed=k, n_frames=10) for k in range(8)
    ]
    folders = [write_bundle(tmp_path / "in" / f"b{k}", spec) for k, spec in enumerate(specs)]
    out = Output(str(tmp_path / "out"))
    first = run_convert([str(tmp_path / "in")], out, scheduler="sync")
    assert first.counts == {"converted": 8}
    write_bundle(folders[3], BundleSpec(prefix=specs[3].prefix, seed=99, n_frames=14))

    seen: list[tuple[str | None, int]] = []
    again = run_convert(
        [str(tmp_path / "in")],
        out,
        ConvertOptions(force=True),
        scheduler="threads",
        workers=2,
        progress=lambda ev: (
            isinstance(ev, SessionDone) and seen.append((ev.entry.session, ev.total))
        ),
    )
    assert again.counts == {"skipped": 7, "converted": 1}
    assert [e.session for e in again.entries if e.status == "converted"] == [specs[3].prefix]
    assert sorted(s for s, _ in seen) == [s.prefix for s in specs] and {t for _, t in seen} == {8}

    serial = tmp_path / "serial"
    assert run_convert([str(tmp_path / "in")], Output(str(serial)), scheduler="sync").ok
    a, b = dataset_files(tmp_path / "out"), dataset_files(serial)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    rows = [{**r, "status": "converted", "reason": None} for r in catalog_rows(tmp_path / "out")]
    assert rows == catalog_rows(serial)
