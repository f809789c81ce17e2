"""The catalog's ``files`` column (every output file's size and sha256) and the digest in
``catalog.parquet``'s footer: rows keep their digests through the log, compaction and a reread;
a fragment or a ``catalog.parquet`` of an older version (no ``files``) still reads; the footer
digest covers the row groups and the footer is checked against the rows."""

from __future__ import annotations

import datetime as dt
import io
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.output.catalog import Catalog, CatalogEntry, read_catalog, write_catalog
from reacture_convert.output.catalog.log import (
    DIGEST_KEY,
    FRAGMENT_SCHEMA,
    compacted_damage,
    decode_fragment,
)
from reacture_convert.output.digests import FileDigest
from reacture_convert.output.storage import Output

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def row(i: int, files: int = 2) -> CatalogEntry:
    s = f"reacture_{i:013d}"
    return CatalogEntry(
        session=s,
        source=f"/in/{s}",
        prefix=s,
        status="converted",
        outputs=(f"zarr/{s}.zarr", f"rows/{s}.parquet"),
        converted_at=NOW,
        files=tuple(FileDigest(f"rows/{s}.parquet", i + k, f"{k:064x}") for k in range(files)),
    )


def test_digests_survive_the_log_compaction_and_a_reread(tmp_path: Path) -> None:
    out = Output(str(tmp_path))
    catalog = Catalog.load(out)
    rows = [row(i) for i in range(5)] + [row(5, files=0)]
    for e in rows:
        catalog.record(e)
    catalog.flush()
    assert read_catalog(out) == rows  # from catalog.parquet and the log
    catalog.compact()
    assert read_catalog(out) == rows
    table = pq.read_table(tmp_path / "catalog.parquet")
    assert table.column("files").to_pylist()[-1] is None  # no digests: null, not []


def test_an_older_fragment_without_the_files_column_reads(tmp_path: Path) -> None:
    old = pa.schema([f for f in FRAGMENT_SCHEMA if f.name != "files"])
    record = {"session": "s", "source": "/in/s", "prefix": "s", "status": "converted", "op": None}
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, old) as writer:
        writer.write_table(pa.Table.from_pylist([record], schema=old))
    table = decode_fragment(Output(str(tmp_path)), 1, sink.getvalue())
    assert table.schema == FRAGMENT_SCHEMA and table.column("files").to_pylist() == [None]


def test_the_footer_digest_covers_every_byte_before_the_footer(tmp_path: Path) -> None:
    out = Output(str(tmp_path))
    write_catalog(out, [row(i) for i in range(5000)])  # two row groups
    path = tmp_path / "catalog.parquet"
    data = path.read_bytes()
    assert pq.ParquetFile(path).num_row_groups == 2
    assert DIGEST_KEY in (pq.ParquetFile(path).metadata.metadata or {})
    assert compacted_damage(data) == (None, None)
    (length,) = struct.unpack("<I", data[-8:-4])
    footer_at = len(data) - 8 - length
    for at in (4, footer_at // 2, footer_at - 1):  # the row groups
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        damage, _ = compacted_damage(bytes(flipped))
        assert damage is not None, at
    flipped = bytearray(data)
    flipped[footer_at + length // 2] ^= 0x01  # the footer
    assert compacted_damage(bytes(flipped))[0] is not None


def test_a_catalog_written_without_the_digest_is_said_not_failed(tmp_path: Path) -> None:
    write_catalog(Output(str(tmp_path)), [row(1)])
    path = tmp_path / "catalog.parquet"
    pq.write_table(pq.read_table(path), path)  # as another writer (or an older version) writes it
    damage, note = compacted_damage(path.read_bytes())
    assert damage is None and note is not None and "not checked" in note
