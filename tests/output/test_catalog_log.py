"""The catalog's log and its compaction: recording a row costs O(1) (amortised), a reader sees
every recorded row at once, a driver killed at any point loses none of them, and what is finally
in catalog.parquet is exactly what ``merge_entries`` gives for the same rows."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reacture_convert.output.catalog import (
    LOG_DIR,
    Catalog,
    CatalogEntry,
    merge_entries,
    read_catalog,
    write_catalog,
)
from reacture_convert.output.catalog import core as catalog_module
from reacture_convert.output.catalog import log as catalog_log
from reacture_convert.output.catalog.store import EntryView, RowStore
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from tests.helpers.catalog import entries_strategy, entry


@pytest.fixture
def eager() -> Iterator[pytest.MonkeyPatch]:
    """Every flush logs what was recorded, compactions come by row counts only (not by time),
    from 2 rows on: small examples go through every path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog_module, "GROUP_ROWS", 1)
        mp.setattr(catalog_module, "COMPACT_MIN_ROWS", 2)
        mp.setattr(catalog_module, "COMPACT_SECONDS", 1e9)
        yield mp


def file_rows(out: Path) -> list[CatalogEntry]:
    """catalog.parquet alone, as a reader that knows nothing of the log reads it."""
    return [CatalogEntry.from_record(r) for r in pq.read_table(out / "catalog.parquet").to_pylist()]


def fragments(out: Path) -> list[str]:
    return sorted(p.name for p in (out / LOG_DIR).glob("*")) if (out / LOG_DIR).exists() else []


# (kind, payload): record an entry, drop a (source, prefix, status), kill the driver and start
# again (Catalog.load replays the log), or end a run (final compaction)
steps_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("record"), entries_strategy),
        st.tuples(
            st.just("drop"),
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.sampled_from(["reacture_1", "reacture_2"]),
                st.sampled_from(list(Status)),
            ),
        ),
        st.tuples(st.just("kill"), st.none()),
        st.tuples(st.just("end"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps_strategy)
def test_log_and_compaction_equal_a_direct_merge(steps: list[tuple[str, object]]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(catalog_module, "GROUP_ROWS", 1)
        mp.setattr(catalog_module, "COMPACT_MIN_ROWS", 2)
        mp.setattr(catalog_module, "COMPACT_SECONDS", 1e9)
        root = Path(tmp) / "out"
        out = Output(str(root))
        direct: list[CatalogEntry] = []  # the catalog as merge_entries keeps it
        catalog = Catalog.load(out)
        for kind, payload in steps:
            if kind == "record":
                assert isinstance(payload, CatalogEntry)
                catalog.record(payload)
                catalog.flush()
                direct = merge_entries(direct, [payload])
            elif kind == "drop":
                source, prefix, status = payload  # type: ignore[misc]
                catalog.drop((source, prefix), status)
                catalog.flush()
                direct = merge_entries(
                    [e for e in direct if not (e.key == (source, prefix) and e.status is status)],
                    [],
                )
            elif kind == "kill":  # the driver dies: only what is on disk counts
                catalog = Catalog.load(out)
                if direct:  # a run that starts after a crash compacts what the log held
                    assert file_rows(root) == direct and fragments(root) == []
            else:
                catalog.flush(final=True)
                if direct:
                    assert file_rows(root) == direct and fragments(root) == []
            # a reader sees every recorded row at once, whatever was compacted
            assert read_catalog(out) == direct
        catalog.flush(final=True)
        assert read_catalog(out) == direct
        if direct:
            assert file_rows(root) == direct


def test_a_compaction_killed_before_it_deleted_the_log_loses_and_repeats_nothing(
    tmp_path: Path, eager: pytest.MonkeyPatch
) -> None:
    eager.setattr(catalog_module, "COMPACT_MIN_ROWS", 10**6)  # only the first and ours
    out = Output(str(tmp_path / "out"))
    catalog = Catalog.load(out)
    for k in range(5):
        catalog.record(entry(f"s{k}", "converted", prefix=f"reacture_{k}"))
        catalog.flush()
    assert len(fragments(tmp_path / "out")) == 4  # the first row made catalog.parquet
    # the next compaction writes catalog.parquet, then the process dies before the deletion
    eager.setattr(catalog_module, "delete_fragments", lambda out, seqs: None)
    catalog.record(entry("s9", "rejected", prefix="reacture_9"))
    catalog.compact()
    assert len(fragments(tmp_path / "out")) == 4  # folded into catalog.parquet, still there
    assert len(read_catalog(out)) == 6  # not applied twice
    eager.undo()
    again = Catalog.load(out)  # ignores them (catalog.parquet's seq covers them), deletes them
    assert fragments(tmp_path / "out") == []
    assert again.rows() == file_rows(tmp_path / "out") == read_catalog(out)
    assert sorted(e.source for e in again.rows()) == ["s0", "s1", "s2", "s3", "s4", "s9"]


def test_compaction_costs_o1_per_row_amortised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written by all compactions of a run, over rows recorded: bounded (geometric
    schedule), however many rows there are."""
    monkeypatch.setattr(catalog_module, "COMPACT_SECONDS", 1e9)
    monkeypatch.setattr(catalog_module, "COMPACT_MIN_ROWS", 16)  # more doublings in fewer rows
    written: list[int] = []
    real = catalog_log.write_compacted

    def counting(out: Output, tables: Iterator[object], seq: int, previous: object) -> object:
        tables = list(tables)  # type: ignore[arg-type]
        written.append(sum(t.num_rows for t in tables))  # type: ignore[attr-defined]
        return real(out, tables, seq, previous)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog_module, "write_compacted", counting)
    out = Output(str(tmp_path / "out"))
    catalog = Catalog.load(out)
    n = 1000
    for k in range(n):
        catalog.record(entry(f"/in/{k}", "converted", prefix=f"reacture_{k}"))
        catalog.flush()
    catalog.flush(final=True)
    assert len(read_catalog(out)) == n
    assert sum(written) <= 3 * n, written  # 1 + 16 + 32 + ... + 512 + the final one
    assert len(written) <= 9, written


def test_skipped_rows_are_logged_in_groups_and_stored_as_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run that skips everything writes no fragment per session, and keeps each skipped
    row as a reference to the row it repeats."""
    monkeypatch.setattr(catalog_module, "GROUP_SECONDS", 1e9)
    monkeypatch.setattr(catalog_module, "COMPACT_SECONDS", 1e9)
    out = Output(str(tmp_path / "out"))
    first = Catalog.load(out)
    rows = [entry(f"/in/{k}", "converted", prefix=f"reacture_{k}") for k in range(50)]
    for e in rows:
        first.record(e)
    first.flush(final=True)

    again = Catalog.load(out)
    recorded = []
    for e in rows:
        previous = again.live(e.session or "")
        assert previous == e
        skipped = CatalogEntry(**{**_fields(previous), "status": "skipped", "reason": "same"})
        recorded.append(again.record(skipped))
        again.flush()
    assert fragments(tmp_path / "out") == []  # grouped: none yet (under GROUP_ROWS, 1 s)
    assert all(again.store.repeats(r) for r in recorded)  # references, not copies
    view = again.entries(recorded)
    assert [e.status for e in view] == ["skipped"] * 50 and list(view.statuses()) == [
        Status.SKIPPED
    ] * 50
    again.flush(final=True)
    assert {e.status for e in read_catalog(out)} == {Status.SKIPPED}
    assert [e.reason for e in file_rows(tmp_path / "out")] == ["same"] * 50


def _fields(e: CatalogEntry) -> dict[str, object]:
    return {f: getattr(e, f) for f in CatalogEntry.__dataclass_fields__}


def test_rows_read_back_from_memory_equal_the_entries_recorded() -> None:
    """The compact store is lossless: entries come back equal, times to the microsecond."""
    import datetime as dt

    from reacture_convert.findings import finding

    store = RowStore()
    at = dt.datetime(2026, 11, 25, 20, 0, 0, 123456, tzinfo=dt.UTC)
    entries = [
        CatalogEntry(
            session=f"reacture_{k}",
            source=f"/in/{k}",
            prefix=f"reacture_{k}",
            status="converted" if k % 3 else "rejected",
            hashes={"frames.npy": f"h{k}", "frames.json": f"j{k}"} if k % 2 else {},
            findings=(finding("TS_GAP", "x_timestamps.npy", "a pause", frame=k),),
            outputs=(f"zarr/reacture_{k}.zarr",),
            converted_at=at,
            run_id="r1",
            n_frames=k,
        )
        for k in range(2500)  # a few sealed batches and some pending rows
    ]
    rows = [store.add(e) for e in entries]
    view = EntryView(store, rows)
    assert list(view) == entries
    assert view[1234] == entries[1234] and list(view[10:12]) == entries[10:12]
    table = store.table(rows[::-1])
    assert [CatalogEntry.from_record(r) for r in table.to_pylist()] == entries[::-1]


def test_write_catalog_replaces_what_the_log_held(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    catalog = Catalog.load(out)
    catalog.record(entry("a", "converted"))
    catalog.flush(final=True)
    catalog.record(entry("b", "rejected", prefix="reacture_2"))
    catalog.flush()  # logged, not compacted
    assert len(read_catalog(out)) == 2
    write_catalog(out, [entry("c", "converted", prefix="reacture_3")])
    assert [e.source for e in read_catalog(out)] == ["c"]
