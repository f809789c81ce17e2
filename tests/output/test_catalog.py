"""OUT/catalog.parquet: the columns docs/output-layout.md asks for, an exact round trip, and a merge
that keeps one truthful live row per session whatever happens to its bundles."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.output.catalog import (
    CATALOG_SCHEMA,
    CatalogEntry,
    merge_entries,
    read_catalog,
    write_catalog,
)
from reacture_convert.output.status import ANCHORS, LIVE
from reacture_convert.output.storage import Output
from reacture_convert.run.batch import run_convert
from tests.helpers.catalog import entries_strategy, entry

LAYOUT_COLUMNS = {
    "session",
    "source",
    "prefix",
    "metadata_session_id",
    "status",
    "n_frames",
    "n_rows",
    "sha256_metadata",
    "sha256_data",
    "sha256_frames",
    "sha256_timestamps",
    "sha256_README",
    "findings",
    "outputs",
    "converter_version",
    "converted_at",
}
T0 = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)


def states(rows: list[CatalogEntry]) -> list[tuple[str, str, str]]:
    return [(e.source, e.status, e.hashes.get("frames.npy", "")) for e in rows]


# --- schema and round trip ----------------------------------------------------------------------
def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rows = [
        CatalogEntry(
            session="reacture_1",
            source="/in/a",
            prefix="reacture_1",
            status="converted",
            metadata_session_id="reacture_1_abcdefghi",
            n_frames=3,
            n_rows=9,
            blank_frames=0,
            hashes={
                "metadata.json": "m",
                "data.jsonl": "d",
                "frames.npy": "f",
                "timestamps.npy": "t",
                "README.md": "r",
            },
            findings=(
                finding("TS_GAP", "x_timestamps.npy", "a pause", frame=2),
                finding("ROW_UNKNOWN_FIELD", "x_data.jsonl", "kept", line=7),
            ),
            outputs=("zarr/reacture_1.zarr", "rows/reacture_1.parquet"),
            converter_version="0.1.0",
            converted_at=T0,
            run_id="r1",
        ),
        CatalogEntry(
            session=None,
            source="/in/broken.zip",
            prefix=None,
            status="rejected",
            reason="ARCHIVE_UNREADABLE at /in/broken.zip",
            findings=(
                Finding(Severity.ERROR, "ARCHIVE_UNREADABLE", "/in/broken.zip", "not a zip"),
            ),
        ),
    ]
    out = Output(str(tmp_path / "out"))
    assert read_catalog(out) == []
    write_catalog(out, rows)
    assert read_catalog(out) == rows
    table = pq.read_table(tmp_path / "out" / "catalog.parquet")
    assert table.schema.equals(CATALOG_SCHEMA, check_metadata=False)
    assert LAYOUT_COLUMNS <= set(table.column_names)
    first = table.to_pylist()[0]
    assert (first["n_errors"], first["n_warnings"]) == (0, 1)
    assert first["findings"][0] == {
        "severity": "warning",
        "code": "TS_GAP",
        "file": "x_timestamps.npy",
        "line": None,
        "frame": 2,
        "message": "a pause",
    }


def test_catalog_of_a_real_run_names_every_bundle(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    good = make_bundle("good", n_frames=6, prefix="reacture_1795600000001")
    bad = make_bundle("bad", n_frames=6, prefix="reacture_1795600000002")
    (jsonl,) = bad.glob("*_data.jsonl")
    lines = jsonl.read_text().split("\n")
    lines[3] = "{not json"
    jsonl.write_text("\n".join(lines))
    archive = tmp_path / "in" / "broken.zip"
    archive.parent.mkdir()
    archive.write_bytes(b"PK\x03\x04 this is not a zip archive")
    out = tmp_path / "out"
    summary = run_convert([str(good), str(bad), str(archive)], Output(str(out)), scheduler="sync")
    rows = {r["source"]: r for r in pq.read_table(out / "catalog.parquet").to_pylist()}
    assert {r["status"] for r in rows.values()} == {"converted", "rejected"}
    assert len(rows) == len(summary.entries) == 3
    assert rows[str(good)]["status"] == "converted"
    assert rows[str(good)]["run_id"] == summary.run_id
    broken = rows[str(bad)]
    assert broken["status"] == "rejected" and broken["outputs"] == []
    assert broken["n_errors"] >= 1 and broken["session"] == "reacture_1795600000002"
    assert all(broken[c] for c in LAYOUT_COLUMNS if c.startswith("sha256_"))
    (bad_line,) = [f for f in broken["findings"] if f["code"] == "JSONL_BAD_JSON"]
    assert bad_line["line"] == 4 and bad_line["severity"] == "error"
    assert bad_line["file"].endswith("_data.jsonl")
    unreadable = rows[str(archive)]
    assert (unreadable["status"], unreadable["session"]) == ("rejected", None)
    assert unreadable["findings"][0]["code"] == "ARCHIVE_UNREADABLE"


# --- merging a run's entries into the catalog ---------------------------------------------------
MERGES = [
    # (old rows, new rows, expected (source, status, hashes) after the merge)
    ([entry("a", "converted")], [entry("a", "skipped")], [("a", "skipped", "h1")]),
    ([entry("a", "rejected")], [entry("a", "converted")], [("a", "converted", "h1")]),
    (
        [entry("a", "converted")],
        [entry("b", "duplicate")],
        [("a", "converted", "h1"), ("b", "duplicate", "h1")],
    ),
    # a changed bundle: the converted row stays (the outputs still hold h1), the conflict beside
    (
        [entry("a", "converted")],
        [entry("a", "conflict", "h2")],
        [("a", "conflict", "h2"), ("a", "converted", "h1")],
    ),
    (
        [entry("a", "converted"), entry("a", "conflict", "h2")],
        [entry("a", "conflict", "h3")],
        [("a", "conflict", "h3"), ("a", "converted", "h1")],
    ),
    (
        [entry("a", "converted"), entry("a", "conflict", "h2")],
        [],
        [("a", "conflict", "h2"), ("a", "converted", "h1")],
    ),
    (
        [entry("a", "converted"), entry("a", "conflict", "h2")],
        [entry("a", "converted", "h2")],
        [("a", "converted", "h2")],
    ),
    (
        [entry("a", "converted")],
        [entry("a", "rejected", "h2")],
        [("a", "converted", "h1"), ("a", "rejected", "h2")],
    ),
    (
        [entry("a", "converted")],
        [entry("a", "failed", "h1")],
        [("a", "converted", "h1"), ("a", "failed", "h1")],
    ),
    # --force from another place: the old place's rows no longer describe the outputs
    (
        [entry("a", "converted"), entry("b", "duplicate")],
        [entry("c", "converted", "h2")],
        [("a", "conflict", "h1"), ("b", "conflict", "h1"), ("c", "converted", "h2")],
    ),
    (
        [entry("a", "converted"), entry("b", "duplicate")],
        [entry("a", "converted", "h1")],
        [("a", "converted", "h1"), ("b", "duplicate", "h1")],
    ),
    (
        [entry("a", "converted"), entry("a", "rejected", "h3")],
        [entry("c", "converted", "h2")],
        [("a", "rejected", "h3"), ("c", "converted", "h2")],
    ),
    # other sessions are left alone
    (
        [entry("a", "converted", prefix="reacture_2")],
        [entry("c", "converted", "h2")],
        [("a", "converted", "h1"), ("c", "converted", "h2")],
    ),
    # removed: replaces the bundle's rows, keeps what wrote nothing beside it, and gives way to
    # a live row (a readmission)
    (
        [entry("a", "converted"), entry("a", "conflict", "h2")],
        [entry("a", "removed")],
        [("a", "removed", "h1")],
    ),
    (
        [entry("a", "removed")],
        [entry("a", "rejected", "h2")],
        [("a", "rejected", "h2"), ("a", "removed", "h1")],
    ),
    (
        [entry("a", "removed"), entry("a", "rejected", "h2")],
        [entry("a", "converted", "h1")],
        [("a", "converted", "h1")],
    ),
    (
        [entry("a", "removed"), entry("b", "duplicate")],
        [entry("c", "converted", "h2")],
        [("a", "removed", "h1"), ("b", "conflict", "h1"), ("c", "converted", "h2")],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "want"),
    MERGES,
    ids=[
        "rerun-replaces",
        "fixed-bundle-replaces-rejection",
        "duplicate-beside",
        "conflict-kept-beside-live-row",
        "newer-conflict-replaces-older",
        "conflict-survives-rerun",
        "forced-replaces-both",
        "forced-rejection-beside",
        "failure-beside",
        "forced-from-elsewhere-demotes",
        "same-bytes-duplicate-stays",
        "forced-from-elsewhere-keeps-newer-state",
        "other-session-untouched",
        "removed-replaces-both",
        "rejection-beside-removed",
        "readmitted-replaces-both",
        "removed-not-demoted",
    ],
)
def test_merge_entries(
    old: list[CatalogEntry], new: list[CatalogEntry], want: list[tuple[str, str, str]]
) -> None:
    merged = merge_entries(old, new)
    assert sorted(states(merged)) == sorted(want)
    demoted = [
        e
        for e in merged
        if e.status == "conflict" and e.source in ("a", "b") and any(n.source == "c" for n in new)
    ]
    for e in demoted:
        assert e.outputs == () and [f.code for f in e.findings] == ["CONFLICT"]
        assert "--force" in (e.reason or "")


def test_merged_catalog_survives_write_and_read(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    rows = merge_entries([entry("a", "converted")], [entry("a", "conflict", "h2")])
    write_catalog(out, rows)
    assert merge_entries(read_catalog(out), []) == rows


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(st.lists(entries_strategy, max_size=5), min_size=1, max_size=4))
def test_merge_invariants(runs: list[list[CatalogEntry]]) -> None:
    catalog: list[CatalogEntry] = []
    for run in runs:
        catalog = merge_entries(catalog, run)
        # every live row of a session describes the same bytes: the ones its outputs hold
        live = {(e.session, e.hashes["frames.npy"]) for e in catalog if e.status in LIVE}
        assert len(live) == len({s for s, _ in live}), catalog
        per_key = Counter(e.key for e in catalog)
        for key, n in per_key.items():  # a second row only beside the live (or removed) row
            assert n == 1 or sorted(e.status in ANCHORS for e in catalog if e.key == key) == [
                False,
                True,
            ]
        assert {e.key for e in run} <= set(per_key)  # every bundle of the run is recorded
        for e in {e.key: e for e in run}.values():  # the newest state that wrote nothing stays
            if e.status not in (*LIVE, "duplicate"):
                assert e in catalog
        assert merge_entries(catalog, []) == catalog  # reading it back changes nothing
    assert catalog == merge_entries([], [e for run in runs for e in run])
