"""Catalogs larger than one chunk of the row store, one row group of catalog.parquet and one
slice of a compaction (4,096 rows each): compaction, the log replayed over it and a reader all
give back exactly the rows recorded."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reacture_convert.output.catalog import Catalog, CatalogEntry, read_catalog
from reacture_convert.output.catalog import core as catalog_module
from reacture_convert.output.storage import Output
from tests.helpers.catalog import entry

N = 2 * 4096 + 1234  # three chunks, the last one partial


def _entries(n: int, first: int = 0) -> list[CatalogEntry]:
    return [
        entry(
            f"/in/{k:06d}",
            "converted" if k % 7 else "rejected",
            hashes=f"h{k}",
            prefix=f"reacture_{k:06d}",
            n_frames=k,
            reason=None if k % 7 else f"reason {k}",
        )
        for k in range(first, first + n)
    ]


def _order(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """Catalog order: by session, source, prefix, status."""
    return sorted(entries, key=lambda e: (e.session, e.source, e.prefix, e.status.value))


def test_a_catalog_of_more_than_4096_rows_compacts_and_reads_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "COMPACT_SECONDS", 1e9)
    root = tmp_path / "out"
    out = Output(str(root))
    rows = _entries(N)
    catalog = Catalog.load(out)
    for e in reversed(rows):  # recorded out of catalog order: the compaction sorts
        catalog.record(e)
    catalog.flush(final=True)

    want = _order(rows)
    on_disk = pq.ParquetFile(root / "catalog.parquet")
    assert on_disk.metadata.num_rows == N and on_disk.metadata.num_row_groups == 3
    assert [CatalogEntry.from_record(r) for r in on_disk.read().to_pylist()] == want
    assert read_catalog(out) == want

    # a run that loads it (every row group), logs more rows and is killed before compacting:
    # a reader replays the log over the big file; the next run compacts both
    again = Catalog.load(out)
    assert again.rows() == want
    more = _entries(40, first=N)
    changed = [*more, entry("/in/000005", "converted", hashes="new", prefix="reacture_000005")]
    for e in changed:
        again.record(e)
        again.flush()
    assert list((root / ".catalog").glob("*.arrow"))  # logged, not compacted yet
    want = _order([e for e in rows if e.source != "/in/000005"] + changed)
    assert read_catalog(out) == want
    third = Catalog.load(out)
    assert not (root / ".catalog").exists() or not list((root / ".catalog").glob("*.arrow"))
    assert third.rows() == want
    assert [
        CatalogEntry.from_record(r) for r in pq.read_table(root / "catalog.parquet").to_pylist()
    ] == want
