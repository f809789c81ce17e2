"""Conversion to Zarr + Parquet (issue 3): exact round trips on every real fixture, a property
over generated bundles, readers that are not ours, Zarr options, and what a batch does with
rejected, duplicate, conflicting and unchanged bundles."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reacture_convert import __version__
from reacture_convert.cli import cli
from reacture_convert.formats.rows import rebuild_row
from reacture_convert.ingest.bundle import ROLES
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.catalog import HASH_COLUMNS, CatalogEntry, read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.summary import RunSummary
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.zarr import ZarrOptions
from tests.helpers.paths import CHECKER, REPO, needs_checker

PYTHON = REPO / ".venv" / "bin" / "python"
NPY_DATA_OFFSET = 129  # where the game's .npy data starts (docs/bundle-format.md)
FRAME_REF = re.compile(r"frame_(\d+)\.npy$")
OUTPUT_DIRS = ("zarr", "rows", "frames")


# --- helpers ------------------------------------------------------------------------------------
def convert(paths: list[Path], out: Path, **options: Any) -> RunSummary:
    """run_convert in this process (the sync scheduler: fast, and what a debugger sees)."""
    return run_convert(
        [str(p) for p in paths], Output(str(out)), ConvertOptions(**options), scheduler="sync"
    )


def cli_convert(*args: str | Path) -> Any:
    return CliRunner().invoke(cli, ["convert", *map(str, args), "--scheduler", "sync", "-q"])


def one(folder: Path, role: str) -> Path:
    (path,) = folder.glob(f"*_{role}")
    return path


def source_frames(folder: Path) -> np.ndarray:
    data = np.fromfile(one(folder, "frames.npy"), dtype=np.uint8, offset=NPY_DATA_OFFSET)
    return data.reshape(-1, 128, 128, 3)


def source_timestamps(folder: Path) -> np.ndarray:
    return np.fromfile(one(folder, "timestamps.npy"), dtype="<f4", offset=NPY_DATA_OFFSET)


def source_rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in one(folder, "data.jsonl").read_bytes().split(b"\n")]


def same_json(a: Any, b: Any) -> bool:
    """Equal as parsed JSON and of the same JSON types (1 and 1.0 differ; key order does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def tree_digest(out: Path) -> dict[str, str]:
    """sha256 of every file under OUT/zarr, OUT/rows and OUT/frames, by relative path."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in OUTPUT_DIRS
        if (out / d).exists()
        for p in sorted((out / d).rglob("*"))
        if p.is_file()
    }


def visible(out: Path, session: str) -> list[str]:
    """Every visible output path of ``session``."""
    return sorted(
        str(p.relative_to(out))
        for d in OUTPUT_DIRS
        if (out / d).exists()
        for p in (out / d).glob(f"{session}.*")
    )


def by_source(out: Path) -> dict[str, CatalogEntry]:
    return {Path(e.source).name: e for e in read_catalog(Output(str(out)))}


def zarr_group(out: Path, session: str) -> zarr.Group:
    return zarr.open_group(str(out / "zarr" / f"{session}.zarr"), mode="r")


def rows_table(out: Path, session: str) -> list[dict[str, Any]]:
    return pq.read_table(out / "rows" / f"{session}.parquet").to_pylist()


def frames_table(out: Path, session: str) -> list[dict[str, Any]]:
    return pq.read_table(out / "frames" / f"{session}.parquet").to_pylist()


def assert_round_trip(folder: Path, out: Path, session: str) -> None:
    """Frames, timestamps and rows of ``session`` in OUT are exactly the bundle's."""
    group = zarr_group(out, session)
    frames = source_frames(folder)
    assert np.array_equal(group["frames"][:], frames)
    assert np.asarray(group["timestamps"][:]).tobytes() == source_timestamps(folder).tobytes()
    lines = source_rows(folder)
    rebuilt = [rebuild_row(r) for r in rows_table(out, session)]
    assert len(rebuilt) == len(lines)
    for i, (got, want) in enumerate(zip(rebuilt, lines, strict=True)):
        assert got == want, f"row {i}"
        assert same_json(got, want), f"row {i}: a JSON type changed"


# --- every real fixture, converted once per test session ----------------------------------------
_CONVERTED: dict[Path, tuple[Path, RunSummary]] = {}


@pytest.fixture
def converted_real(
    real_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, CatalogEntry]:
    """(bundle folder, OUT, its catalog entry) for each real fixture, converted into a temp OUT."""
    if real_bundle not in _CONVERTED:
        out = tmp_path_factory.mktemp("real") / "out"
        _CONVERTED[real_bundle] = (out, convert([real_bundle], out))
    out, summary = _CONVERTED[real_bundle]
    (entry,) = summary.entries
    return real_bundle, out, entry


def test_real_frames_and_timestamps_are_bit_exact(
    converted_real: tuple[Path, Path, CatalogEntry],
) -> None:
    folder, out, entry = converted_real
    group = zarr_group(out, entry.session or "")
    frames, ts = source_frames(folder), source_timestamps(folder)
    assert group["frames"].dtype == np.uint8 and group["frames"].shape == frames.shape
    assert np.asarray(group["frames"][:]).tobytes() == frames.tobytes()
    assert group["timestamps"].dtype == np.float32 and group["timestamps"].shape == ts.shape
    assert np.asarray(group["timestamps"][:]).tobytes() == ts.tobytes()


def test_real_rows_rebuild_every_source_line(
    converted_real: tuple[Path, Path, CatalogEntry],
) -> None:
    folder, out, entry = converted_real
    assert_round_trip(folder, out, entry.session or "")


def test_real_rows_leading_columns(converted_real: tuple[Path, Path, CatalogEntry]) -> None:
    folder, out, entry = converted_real
    table = pq.read_table(out / "rows" / f"{entry.session}.parquet")
    assert str(table.schema.field("timestamp_ms").type) == "int64"
    assert str(table.schema.field("frame_index").type) == "int32"
    for i, (rec, src) in enumerate(zip(table.to_pylist(), source_rows(folder), strict=True)):
        assert rec["session"] == entry.session and rec["row_index"] == i
        if src["type"] == "player_action":
            assert (rec["kind"], rec["timestamp_ms"]) == ("action", src["timestamp"])
        else:
            kind = "periodic" if "visual_frame_path" in src else "event"
            assert (rec["kind"], rec["timestamp_ms"]) == (kind, src["timestamp_ms"])
        ref = FRAME_REF.search(src.get("visual_frame_path", ""))
        assert rec["frame_index"] == (int(ref.group(1)) if ref else None), f"row {i}"


def test_real_alignment_table(converted_real: tuple[Path, Path, CatalogEntry]) -> None:
    folder, out, entry = converted_real
    frames, ts, lines = source_frames(folder), source_timestamps(folder), source_rows(folder)
    table = frames_table(out, entry.session or "")
    assert [r["frame_index"] for r in table] == list(range(len(frames)))
    for r in table:
        i = r["frame_index"]
        assert r["session"] == entry.session
        assert r["frame_sha256"] == hashlib.sha256(frames[i].tobytes()).hexdigest(), f"frame {i}"
        assert np.float32(r["timestamp_ms"]).tobytes() == ts[i].tobytes(), f"frame {i}"
        row = lines[r["row_index"]]  # the periodic row that names this frame
        assert row["event"] == "periodic_update_10hz"
        assert row["visual_frame_path"] == f"frames/frame_{i:06d}.npy"


def test_real_catalog_row(converted_real: tuple[Path, Path, CatalogEntry]) -> None:
    folder, out, entry = converted_real
    (record,) = pq.read_table(out / "catalog.parquet").to_pylist()
    meta = json.loads(one(folder, "metadata.json").read_text())
    prefix = one(folder, "metadata.json").name.removesuffix("_metadata.json")
    assert record["status"] == "converted"
    assert (record["session"], record["prefix"]) == (prefix, prefix)
    assert record["metadata_session_id"] == meta["session_id"]
    assert record["source"] == str(folder)
    assert record["n_frames"] == len(source_frames(folder)) == meta["data_stats"]["total_frames"]
    assert record["n_rows"] == len(source_rows(folder)) == meta["data_stats"]["total_samples"]
    for role in ROLES:  # a five-file bundle: its five files; sha256_frames_json is for legacy
        column = HASH_COLUMNS[role]
        assert record[column] == hashlib.sha256(one(folder, role).read_bytes()).hexdigest(), role
    assert record["sha256_frames_json"] is None
    assert record["outputs"] == [
        f"zarr/{prefix}.zarr",
        f"rows/{prefix}.parquet",
        f"frames/{prefix}.parquet",
    ]
    assert record["converter_version"] == __version__
    assert record["converted_at"] is not None and record["n_errors"] == 0
    # every validation finding, as the validator reports it
    (bundle,) = discover([str(folder)]).bundles
    assert read_catalog(Output(str(out)))[0].findings == validate_bundle(bundle).findings
    assert {f["code"] for f in record["findings"]} >= {"NPY_GAME_HEADER", "META_SESSION_ID"}


@needs_checker
def test_real_output_passes_the_conformance_checker(
    converted_real: tuple[Path, Path, CatalogEntry],
) -> None:
    folder, out, _ = converted_real
    done = subprocess.run(
        [str(PYTHON), str(CHECKER), str(out), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 bundles exact" in done.stdout


# --- a property over generated bundles ----------------------------------------------------------
bundle_specs = st.builds(
    lambda n, seed, events, interval, pauses, blank: BundleSpec(
        n_frames=n,
        seed=seed,
        events_per_frame=events,
        interval_ms=interval,
        blank=blank,
        pauses=tuple((i % n, gap) for i, gap in pauses) if n else (),
    ),
    n=st.one_of(st.just(1), st.just(0), st.integers(1, 40)),
    seed=st.integers(0, 2**31),
    events=st.sampled_from([0.0, 0.3, 1.0, 3.0]),  # rows of other kinds between two frames
    interval=st.sampled_from([100, 250, 500]),
    pauses=st.lists(st.tuples(st.integers(0, 40), st.integers(1_000, 60_000)), max_size=3),
    blank=st.booleans(),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=bundle_specs, chunk=st.sampled_from([1, 7, 64]))
def test_generated_bundles_convert_verify_and_rebuild(spec: BundleSpec, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bundle(Path(tmp) / "in", spec)
        out = Path(tmp) / "out"
        summary = convert([folder], out, zarr=ZarrOptions(chunk_frames=chunk))
        assert [e.status for e in summary.entries] == ["converted"]
        checked, problems = verify_dataset(Output(str(out)), sources=True)
        assert (checked, problems) == (1, [])
        assert_round_trip(folder, out, spec.prefix)
        table = frames_table(out, spec.prefix)
        assert len(table) == spec.n_frames
        assert all(r["row_index"] is not None for r in table)


# --- readers that are not ours ------------------------------------------------------------------
READER_SPECS = {
    "reacture_1795600000001": 13,
    "reacture_1795600000002": 1,
    "reacture_1795600000003": 40,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """Three generated sessions (13, 1 and 40 frames) converted into one OUT."""
    root = tmp_path_factory.mktemp("readers")
    folders = {
        prefix: write_bundle(
            root / "in" / prefix,
            BundleSpec(n_frames=n, seed=n, prefix=prefix, pauses=((n // 2, 5000),)),
        )
        for prefix, n in READER_SPECS.items()
    }
    summary = convert(list(folders.values()), root / "out")
    assert summary.ok
    return root / "out", folders


def test_duckdb_reads_rows_and_frames(dataset: tuple[Path, dict[str, Path]]) -> None:
    import duckdb

    out, folders = dataset
    rows, frames = f"'{out}/rows/*.parquet'", f"'{out}/frames/*.parquet'"
    n_rows = sum(len(source_rows(f)) for f in folders.values())
    assert duckdb.sql(f"select count(*) from {rows}").fetchall() == [(n_rows,)]
    n_frames = sum(READER_SPECS.values())
    assert duckdb.sql(f"select count(*) from {frames}").fetchall() == [(n_frames,)]
    xs = duckdb.sql(
        f"select session, row_index, robot.position.x from {rows} order by session, row_index"
    ).fetchall()
    want = [
        (p, i, r["robot"]["position"]["x"])
        for p, f in sorted(folders.items())
        for i, r in enumerate(source_rows(f))
    ]
    assert xs == want
    joined = duckdb.sql(
        f"select f.session, f.frame_index, r.frame_index, r.kind from {frames} f "
        f"left join {rows} r on f.session = r.session and f.row_index = r.row_index"
    ).fetchall()
    assert len(joined) == sum(READER_SPECS.values())
    assert all(fi == ri and kind == "periodic" for _, fi, ri, kind in joined)
    kinds = dict(duckdb.sql(f"select kind, count(*) from {rows} group by kind").fetchall())
    assert set(kinds) <= {"periodic", "event", "action"}
    assert kinds["periodic"] == sum(READER_SPECS.values())


def test_polars_reads_rows_and_frames(dataset: tuple[Path, dict[str, Path]]) -> None:
    import polars as pl

    out, folders = dataset
    rows = pl.read_parquet(out / "rows" / "*.parquet")
    frames = pl.read_parquet(out / "frames" / "*.parquet")
    assert rows.height == sum(len(source_rows(f)) for f in folders.values())
    assert frames.height == sum(READER_SPECS.values())
    assert rows.schema["timestamp_ms"] == pl.Int64 and frames.schema["timestamp_ms"] == pl.Float32
    x = (
        rows.sort("session", "row_index")
        .select(pl.col("robot").struct.field("position").struct.field("x"))
        .to_series()
        .to_list()
    )
    assert x == [
        r["robot"]["position"]["x"] for _, f in sorted(folders.items()) for r in source_rows(f)
    ]
    joined = frames.join(rows, on=["session", "row_index"], how="left", suffix="_row")
    assert joined.height == frames.height
    assert (
        joined.filter(
            (pl.col("kind") != "periodic") | (pl.col("frame_index") != pl.col("frame_index_row"))
        ).height
        == 0
    )


def test_xarray_opens_each_session(dataset: tuple[Path, dict[str, Path]]) -> None:
    import xarray as xr

    out, folders = dataset
    for prefix, folder in folders.items():
        ds = xr.open_zarr(out / "zarr" / f"{prefix}.zarr", consolidated=False)
        n = READER_SPECS[prefix]
        assert ds["frames"].shape == (n, 128, 128, 3) and ds["frames"].dtype == np.uint8
        assert ds["frames"].dims[0] == ds["timestamps"].dims[0]
        assert np.array_equal(ds["frames"].values, source_frames(folder))
        assert ds["timestamps"].values.tobytes() == source_timestamps(folder).tobytes()
        assert ds.attrs["frames"]["orientation"] == "bottom-up"
        assert ds.attrs["metadata"] == json.loads(one(folder, "metadata.json").read_text())


@pytest.mark.zarr_compat
def test_zarr_python_opens_each_session(dataset: tuple[Path, dict[str, Path]]) -> None:
    out, folders = dataset
    for prefix, folder in folders.items():
        group = zarr.open_group(out / "zarr" / f"{prefix}.zarr", mode="r")
        assert group.metadata.zarr_format == 3
        frames, ts = group["frames"], group["timestamps"]
        assert isinstance(frames, zarr.Array) and isinstance(ts, zarr.Array)
        assert (frames.shape, frames.dtype) == ((READER_SPECS[prefix], 128, 128, 3), np.uint8)
        assert (ts.shape, ts.dtype) == ((READER_SPECS[prefix],), np.float32)
        attrs = group.attrs.asdict()
        assert attrs["frames"]["orientation"] == "bottom-up"
        assert attrs["session"] == attrs["prefix"] == prefix
        assert (
            attrs["provenance"]["sha256"]["frames.npy"]
            == hashlib.sha256(one(folder, "frames.npy").read_bytes()).hexdigest()
        )
        assert np.array_equal(frames[0], source_frames(folder)[0])


# --- Zarr options -------------------------------------------------------------------------------
@pytest.mark.zarr_compat
@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_every_codec_round_trips(
    make_bundle: Callable[..., Path], tmp_path: Path, codec: str
) -> None:
    folder = make_bundle(n_frames=23, seed=5)
    out = tmp_path / "out"
    result = cli_convert(folder, "--out", out, "--codec", codec, "--chunk-frames", "8")
    assert result.exit_code == 0, result.output
    assert_round_trip(folder, out, "reacture_1795600000000")
    meta = json.loads(
        (out / "zarr" / "reacture_1795600000000.zarr" / "frames" / "zarr.json").read_text()
    )
    names = [c["name"] for c in meta["codecs"]]
    assert names == {"none": ["bytes"], "lz4": ["bytes", "blosc"], "zstd": ["bytes", "zstd"]}[codec]
    assert verify_dataset(Output(str(out)), sources=True) == (1, [])


@pytest.mark.zarr_compat
@pytest.mark.parametrize(
    ("chunk", "n_frames", "want"),
    [(8, 23, 8), (1, 5, 1), (64, 10, 10)],
    ids=["chunk-8", "chunk-1", "chunk-longer-than-session"],
)
def test_frames_are_chunked_along_time_as_asked(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    chunk: int,
    n_frames: int,
    want: int,
) -> None:
    folder = make_bundle(n_frames=n_frames)
    out = tmp_path / "out"
    assert convert([folder], out, zarr=ZarrOptions(chunk_frames=chunk, codec="none")).ok
    frames = zarr_group(out, "reacture_1795600000000")["frames"]
    assert frames.chunks == (want, 128, 128, 3)
    chunk_files = list((out / "zarr" / "reacture_1795600000000.zarr" / "frames" / "c").rglob("0"))
    assert len([p for p in chunk_files if p.is_file()]) == -(-n_frames // want)
    assert_round_trip(folder, out, "reacture_1795600000000")


@pytest.mark.zarr_compat
def test_sharded_frames_are_few_objects_and_round_trip(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    folder = make_bundle(n_frames=60, seed=9)
    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    assert cli_convert(folder, "--out", plain, "--chunk-frames", "4").exit_code == 0
    result = cli_convert(folder, "--out", sharded, "--chunk-frames", "4", "--shard-frames", "32")
    assert result.exit_code == 0, result.output
    frames = zarr_group(sharded, "reacture_1795600000000")["frames"]
    assert frames.chunks == (4, 128, 128, 3) and frames.shards == (32, 128, 128, 3)

    def objects(out: Path) -> int:
        return sum(
            p.is_file()
            for p in (out / "zarr" / "reacture_1795600000000.zarr" / "frames").rglob("*")
        )

    assert objects(plain) == 15 + 1  # 60 / 4 chunks and zarr.json
    assert objects(sharded) == 2 + 1  # two shards and zarr.json
    assert_round_trip(folder, sharded, "reacture_1795600000000")
    assert verify_dataset(Output(str(sharded)), sources=True) == (1, [])
    assert frames_table(sharded, "reacture_1795600000000") == frames_table(
        plain, "reacture_1795600000000"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard-frames", "10", "--chunk-frames", "4"], "multiple of --chunk-frames"),
        (["--codec", "gzip"], "gzip"),
        (["--chunk-frames", "0"], "0"),
    ],
    ids=["shard-not-multiple", "unknown-codec", "zero-chunk"],
)
def test_bad_zarr_options_are_usage_errors(
    make_bundle: Callable[..., Path], tmp_path: Path, args: list[str], message: str
) -> None:
    result = cli_convert(make_bundle(n_frames=3), "--out", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out" / "zarr").exists()


# --- batches: rejected, mixed, duplicate, unchanged, changed ------------------------------------
def _truncate(role: str, n: int) -> Callable[[Path], None]:
    def cut(folder: Path) -> None:
        path = one(folder, role)
        path.write_bytes(path.read_bytes()[:-n])

    return cut


def _bad_json_line(folder: Path) -> None:
    path = one(folder, "data.jsonl")
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][:-5]
    path.write_bytes(b"\n".join(lines))


def _drop_readme(folder: Path) -> None:
    one(folder, "README.md").unlink()


def _frame_ref_out_of_range(folder: Path) -> None:
    path = one(folder, "data.jsonl")
    path.write_text(path.read_text().replace("frame_000002.npy", "frame_000999.npy"))


BROKEN = [
    (_truncate("frames.npy", 100), "NPY_TRUNCATED", "frames.npy"),
    (_truncate("timestamps.npy", 4), "NPY_TRUNCATED", "timestamps.npy"),
    (_bad_json_line, "JSONL_BAD_JSON", "data.jsonl"),
    (_drop_readme, "BUNDLE_MISSING_FILE", None),
    (_frame_ref_out_of_range, "FRAME_REF_OUT_OF_RANGE", "data.jsonl"),
]


@pytest.mark.parametrize(
    ("breakage", "code", "file"),
    BROKEN,
    ids=[
        "frames-truncated",
        "timestamps-truncated",
        "bad-json",
        "missing-readme",
        "frame-ref-out-of-range",
    ],
)
def test_rejected_bundle_gets_a_catalog_row_and_nothing_else(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    breakage: Callable[[Path], None],
    code: str,
    file: str | None,
) -> None:
    folder = make_bundle(n_frames=10)
    breakage(folder)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "out"
    summary = convert([folder], out)
    (entry,) = read_catalog(Output(str(out)))
    assert entry.status == "rejected" and summary.entries[0].status == "rejected"
    assert entry.outputs == () and entry.reason and code in entry.reason
    hits = [f for f in entry.findings if f.code == code]
    assert hits and all(f.severity == "error" for f in hits)
    if file is not None:
        assert any(f.file.endswith(file) for f in hits)
    assert visible(out, "reacture_1795600000000") == []
    assert {p: p.read_bytes() for p in folder.iterdir()} == before  # sources left as they were


def test_mixed_batch_converts_the_good_ones_and_exits_1(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    good = [
        make_bundle(f"good{i}", n_frames=12, seed=i, prefix=f"reacture_179560000000{i}")
        for i in range(2)
    ]
    broken = make_bundle("broken", n_frames=12, prefix="reacture_1795600000009")
    _truncate("frames.npy", 1)(broken)
    out = tmp_path / "out"
    result = cli_convert(good[0], broken, good[1], "--out", out)
    assert result.exit_code == 1, result.output
    entries = by_source(out)
    assert {k: e.status for k, e in entries.items()} == {
        "good0": "converted",
        "good1": "converted",
        "broken": "rejected",
    }
    assert visible(out, "reacture_1795600000009") == []
    for folder in good:
        assert_round_trip(folder, out, folder_prefix(folder))
    assert verify_dataset(Output(str(out)), sources=True) == (2, [])


def folder_prefix(folder: Path) -> str:
    return one(folder, "metadata.json").name.removesuffix("_metadata.json")


def test_same_bundle_in_two_places_is_converted_once(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    first = make_bundle("a", n_frames=12)
    second = tmp_path / "copy" / "b"
    shutil.copytree(first, second)
    out = tmp_path / "out"
    result = cli_convert(first, second, "--out", out)
    assert result.exit_code == 0, result.output
    entries = by_source(out)
    assert (entries["a"].status, entries["b"].status) == ("converted", "duplicate")
    assert entries["b"].outputs == ()
    assert [f.code for f in entries["b"].findings] == ["DUPLICATE_BUNDLE"]
    assert visible(out, "reacture_1795600000000") == [
        "frames/reacture_1795600000000.parquet",
        "rows/reacture_1795600000000.parquet",
        "zarr/reacture_1795600000000.zarr",
    ]
    # and on a re-run: the first is skipped, the copy still a duplicate
    again = convert([first, second], out)
    assert sorted(e.status for e in again.entries) == ["duplicate", "skipped"]


def test_rerun_skips_every_session_and_changes_no_byte(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    folders = [
        make_bundle(n_frames=n, seed=n, prefix=f"reacture_17956000000{n:02d}") for n in (1, 17, 30)
    ]
    out = tmp_path / "out"
    assert convert(folders, out).ok
    before = tree_digest(out)
    result = cli_convert(*folders, "--out", out)
    assert result.exit_code == 0, result.output
    # the catalog keeps the rows it had: a re-run that changes nothing writes nothing
    assert {e.status for e in read_catalog(Output(str(out)))} == {"converted"}
    assert tree_digest(out) == before
    assert len(before) > 3 * 3


def test_changed_bundle_is_a_conflict_until_forced(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    folder = make_bundle("a", n_frames=12, seed=1)
    out = tmp_path / "out"
    assert convert([folder], out).ok
    before = tree_digest(out)
    write_bundle(folder, BundleSpec(n_frames=15, seed=2))  # same prefix, other bytes
    for _ in range(2):  # a second run without --force must still refuse
        result = CliRunner().invoke(
            cli, ["convert", str(folder), "--out", str(out), "--json", "--scheduler", "sync"]
        )
        assert result.exit_code == 1, result.output
        (session,) = json.loads(result.output)["sessions"]
        assert session["status"] == "conflict"
        assert [f["code"] for f in session["findings"]] == ["CONFLICT"]
        assert "--force" in session["reason"]
        assert tree_digest(out) == before  # the converted session is untouched
        assert verify_dataset(Output(str(out))) == (1, [])
        live = [e for e in read_catalog(Output(str(out))) if e.status == "converted"]
        assert len(live) == 1 and live[0].n_frames == 12
    result = cli_convert(folder, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert_round_trip(folder, out, "reacture_1795600000000")
    assert [(e.status, e.n_frames) for e in read_catalog(Output(str(out)))] == [("converted", 15)]
    assert verify_dataset(Output(str(out)), sources=True) == (1, [])


def test_forced_bundle_from_another_place_leaves_one_live_row(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    old = make_bundle("old", n_frames=12, seed=1)
    new = make_bundle("new", n_frames=15, seed=2)  # same prefix, other bytes
    out = tmp_path / "out"
    assert convert([old], out).ok
    refused = convert([new], out)
    assert [e.status for e in refused.entries] == ["conflict"]
    assert convert([new], out, force=True).ok
    entries = by_source(out)
    assert (entries["old"].status, entries["new"].status) == ("conflict", "converted")
    assert entries["old"].outputs == ()
    assert verify_dataset(Output(str(out)), sources=True) == (1, [])
    # the replaced bundle is now the one in conflict
    again = {Path(e.source).name: e.status for e in convert([old, new], out).entries}
    assert again == {"old": "conflict", "new": "skipped"}


@pytest.mark.parametrize("given", ["missing", "empty", "dataset"])
def test_cli_convert_without_bundles_exits_1_and_writes_nothing(
    tmp_path: Path, sample_dir: Path, given: str
) -> None:
    """A mistyped path, an empty folder, or a folder that is itself a converted dataset: no
    bundle found, exit 1 (as `validate`), the reason said, and OUT neither created nor given a
    catalog row that would stay for ever."""
    source = tmp_path / "in"
    if given == "empty":
        source.mkdir()
    elif given == "dataset":
        assert cli_convert(sample_dir, "--out", source).exit_code == 0
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, ["convert", str(source), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "no bundle found" in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    code = {"missing": "INPUT_NOT_FOUND", "empty": None, "dataset": "INPUT_IS_DATASET"}[given]
    if code is not None:
        assert code in result.output


def test_cli_convert_refuses_an_input_inside_the_output(tmp_path: Path, sample_dir: Path) -> None:
    """Converting a folder into itself works once and never again (a dataset's folder is not
    read as input): refused up front as a usage error, before anything is written."""
    folder = tmp_path / "both"
    shutil.copytree(sample_dir, folder)
    for out in (folder, tmp_path):
        result = cli_convert(folder, "--out", out)
        assert result.exit_code == 2, result.output
        assert "keep the bundles outside --out" in result.output
    assert not (folder / "catalog.parquet").exists()
