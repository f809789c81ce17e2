"""The catalog on disk: ``catalog.parquet`` and the log of what was recorded since it was written.

```
OUT/catalog.parquet          every row, sorted: what readers read (Parquet metadata
                             ``reacture.catalog.seq``: the last log fragment folded into it)
OUT/.catalog/<seq>.arrow     log fragments: the rows recorded after it, in order (Arrow IPC)
```

A driver appends a fragment (one small file, or one object created with ``If-None-Match``)
when a session is committed, or for a group of skipped ones, and now and then *compacts*:
writes every row into ``catalog.parquet`` (atomically; on S3 ``If-Match`` its last version), then
deletes the fragments it folded in. The catalog is ``catalog.parquet`` plus the fragments after
its ``seq``, replayed in order (``catalog.Catalog``); a kill -9 at any moment leaves one or the
other. Fragment numbers have no holes, so a reader that meets one (a compaction between its
read of ``catalog.parquet`` and its listing) reads again.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.errors import LockedError, OutputError
from reacture_convert.output.catalog.entry import CATALOG_SCHEMA
from reacture_convert.output.catalog.store import STORE_SCHEMA, conform
from reacture_convert.output.layout import CATALOG, LOG_DIR, fragment_name
from reacture_convert.output.lease import PreconditionFailed
from reacture_convert.output.storage import Output

__all__ = [
    "CATALOG",
    "FRAGMENT_SCHEMA",
    "LOG_DIR",
    "Compacted",
    "delete_fragments",
    "encode_compacted",
    "list_log",
    "read_compacted",
    "read_fragment",
    "read_snapshot",
    "remove_log_dir",
    "write_compacted",
    "write_fragment",
]

SEQ_KEY = b"reacture.catalog.seq"
# ``op``: null for a recorded row; "drop" forgets the bundle's row with that status.
FRAGMENT_SCHEMA = STORE_SCHEMA.append(pa.field("op", pa.string()))
_FRAGMENT = re.compile(r"(\d{12})\.arrow")
_ROW_GROUP = 4096  # rows: what a reader decodes at a time
_SNAPSHOT_TRIES = 20


@dataclass(frozen=True)
class Compacted:
    """What ``catalog.parquet`` holds: its bytes (None when there is no file), the last log
    fragment folded in, and its version (S3 ETag) for a conditional replace."""

    data: bytes | None = None
    seq: int = 0
    etag: str | None = None
    exists: bool = False

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows (``STORE_SCHEMA``), a row group at a time: decoding the whole file at
        once would take twice its memory."""
        if self.data is not None:
            parquet = pq.ParquetFile(pa.BufferReader(self.data))
            for batch in parquet.iter_batches(batch_size=_ROW_GROUP, use_threads=False):
                yield conform(batch)

    def table(self) -> pa.Table:
        return pa.Table.from_batches(list(self.batches()), schema=STORE_SCHEMA)


def read_compacted(out: Output) -> Compacted:
    path = out.path(CATALOG)
    try:
        etag = out.version(path)
        with out.fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return Compacted()
    meta = pq.read_schema(pa.BufferReader(data)).metadata or {}
    return Compacted(data, int(meta.get(SEQ_KEY, b"0")), etag, True)


def list_log(out: Output) -> list[int]:
    """The fragment numbers in OUT's log, in order."""
    names = out.list_names(out.path(LOG_DIR))
    return sorted(int(m.group(1)) for n in names if (m := _FRAGMENT.fullmatch(n)))


def _encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, FRAGMENT_SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_fragment(out: Output, seq: int) -> pa.Table:
    """One fragment (``FRAGMENT_SCHEMA``); ``FileNotFoundError`` when it is gone (compacted)."""
    data = out.fs.cat_file(out.path(fragment_name(seq)))
    return pa.ipc.open_file(io.BytesIO(data)).read_all()


def write_fragment(out: Output, seq: int, table: pa.Table) -> None:
    """Append fragment ``seq`` to the log, durably; on S3 only if no other writer has (a run
    that lost its lease gets ``LockedError``)."""
    data = _encode(table)
    try:
        out.write_bytes_atomic(fragment_name(seq), data, create=True)
    except PreconditionFailed as e:
        try:  # our own earlier attempt, whose answer was lost on the way?
            same = out.fs.cat_file(out.path(fragment_name(seq))) == data
        except OSError:
            same = False
        if not same:
            raise LockedError(
                f"{out.url}: another run wrote the catalog log ({fragment_name(seq)} exists); "
                "this run stops writing (run it again when the other is done)"
            ) from e


def encode_compacted(tables: Iterable[pa.Table], seq: int, sink: BinaryIO) -> None:
    """Write ``catalog.parquet`` into ``sink``: ``tables`` (catalog columns, in catalog order),
    with ``seq`` in its metadata."""
    schema = CATALOG_SCHEMA.with_metadata({SEQ_KEY: str(seq).encode()})
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for table in tables:
            if table.num_rows:
                writer.write_table(table.cast(schema, safe=False), row_group_size=_ROW_GROUP)


def write_compacted(
    out: Output, tables: Iterable[pa.Table], seq: int, previous: Compacted
) -> Compacted:
    """Write ``catalog.parquet`` from ``tables`` (``STORE_SCHEMA``, in catalog order) with
    ``seq``, atomically, straight to its file (not through memory); on S3 only over the version
    ``previous`` describes. Returns what the file now is (without its bytes)."""
    try:
        etag = out.write_atomic(
            CATALOG,
            lambda f: encode_compacted(tables, seq, f),
            create=not previous.exists,
            etag=previous.etag,
        )
    except PreconditionFailed as e:
        raise LockedError(
            f"{out.url}: another run replaced {CATALOG} meanwhile; this run stops writing "
            "(run it again when the other is done)"
        ) from e
    return Compacted(None, seq, etag, True)


def delete_fragments(out: Output, seqs: Iterable[int]) -> None:
    """Remove fragments already folded into ``catalog.parquet`` (best effort: one left behind
    is ignored by readers and removed by the next compaction)."""
    paths = [out.path(fragment_name(s)) for s in seqs]
    if not paths:
        return
    try:
        out.remove_files(paths)
    except OSError:
        pass


def remove_log_dir(out: Output) -> None:
    """Remove the log's folder when it is empty (a run's end: OUT at rest has none)."""
    out.remove_empty_dir(out.path(LOG_DIR))


def read_snapshot(out: Output) -> tuple[Compacted, list[tuple[int, pa.Table]]]:
    """``catalog.parquet`` and the fragments after it, as one consistent state: read again while
    a compaction races the reading (a hole in the fragment numbers, a fragment gone)."""
    for attempt in range(_SNAPSHOT_TRIES):
        compacted = read_compacted(out)
        seqs = [s for s in list_log(out) if s > compacted.seq]
        last = attempt == _SNAPSHOT_TRIES - 1
        if not last and seqs and seqs != list(range(compacted.seq + 1, seqs[-1] + 1)):
            continue
        try:
            return compacted, [(s, read_fragment(out, s)) for s in seqs]
        except FileNotFoundError:
            continue
    raise OutputError(
        f"{out.url}: the catalog kept changing while it was read ({_SNAPSHOT_TRIES} tries); "
        "read it again"
    )
