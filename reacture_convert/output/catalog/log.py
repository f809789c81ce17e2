"""The catalog on disk: ``catalog.parquet`` and the log of what was recorded since it was written.

```
OUT/catalog.parquet          every row, sorted: what readers read (Parquet metadata
                             ``reacture.catalog.seq``: the last log fragment folded into it)
OUT/.catalog/<seq>.arrow     log fragments: the rows recorded after it, in order (Arrow IPC)
OUT/.damaged/<when>/...      what was set aside as damaged (never deleted by this package)
```

A driver appends a fragment (one small file, or one object created with ``If-None-Match``)
when a session is committed, or for a group of skipped ones, and now and then *compacts*:
writes every row into ``catalog.parquet`` (atomically; on S3 ``If-Match`` its last version), then
deletes the fragments it folded in. The catalog is ``catalog.parquet`` plus the fragments after
its ``seq``, replayed in order (``catalog.Catalog``); a kill -9 at any moment leaves one or the
other. Fragment numbers have no holes, so a reader that meets one (a compaction between its
read of ``catalog.parquet`` and its listing) reads again.

Damage (docs/output-layout.md, "When the catalog is damaged"): the newest fragment cut short
(its Arrow footer missing: empty, or truncated) is what an interrupted write leaves; it is left
out (``Snapshot.incomplete``: the row it held is lost, and its session's outputs, committed
before it, are leftovers the next run converts again). Anything else (``catalog.parquet`` that
does not decode, an older fragment that does not, a hole in the numbers that stays when read
again) is ``CatalogDamagedError``, naming the file and ``reacture-convert repair OUT``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.errors import LockedError, OutputError
from reacture_convert.output.catalog.entry import CATALOG_SCHEMA
from reacture_convert.output.catalog.store import STORE_SCHEMA, conform
from reacture_convert.output.digests import HashingWriter
from reacture_convert.output.layout import CATALOG, DAMAGED, LOG_DIR, fragment_name
from reacture_convert.output.lease import PreconditionFailed
from reacture_convert.output.storage import Output

__all__ = [
    "CATALOG",
    "FRAGMENT_SCHEMA",
    "LOG_DIR",
    "CatalogDamagedError",
    "Compacted",
    "Snapshot",
    "compacted_damage",
    "damaged",
    "decode_fragment",
    "delete_fragments",
    "incomplete_note",
    "encode_compacted",
    "list_log",
    "read_compacted",
    "read_fragment",
    "read_snapshot",
    "remove_log_dir",
    "salvage",
    "set_aside",
    "write_compacted",
    "write_fragment",
]

SEQ_KEY = b"reacture.catalog.seq"
DIGEST_KEY = b"reacture.catalog.sha256"  # sha256 of every byte before the footer
# ``op``: null for a recorded row; "drop" forgets the bundle's row with that status.
FRAGMENT_SCHEMA = STORE_SCHEMA.append(pa.field("op", pa.string()))
_FRAGMENT = re.compile(r"(\d{12})\.arrow")
_ROW_GROUP = 4096  # rows: what a reader decodes at a time
_SNAPSHOT_TRIES = 20
_ARROW_MAGIC = b"ARROW1"  # an Arrow IPC file ends with it (after its footer)


class CatalogDamagedError(OutputError):
    """The catalog cannot be read as written: ``catalog.parquet`` or a log fragment does not
    decode, or a fragment is missing. ``reacture-convert repair OUT`` rebuilds it."""


def damaged(out: Output, rel: str, what: str) -> CatalogDamagedError:
    """The error for damage ``what`` of the catalog's file ``rel``, with what to do."""
    what = " ".join(what.split())  # one line (a decoder's message may end in a newline)
    return CatalogDamagedError(
        f"{out.url}: the catalog is damaged: {rel}: {what}. Rebuild it from the committed "
        f"outputs with `reacture-convert repair {out.url}` (add --dry-run to see what it "
        "would do first); it sets the damaged files aside, deleting none"
    )


def incomplete_note(seq: int) -> str:
    """What is said when the newest fragment, cut short, is left out."""
    return (
        f"catalog: dropped an incomplete fragment {fragment_name(seq)} left by an interrupted "
        "run (the row it was writing is lost: the next convert converts its session again, "
        "or `reacture-convert repair` re-derives it from the committed outputs)"
    )


@dataclass(frozen=True)
class Compacted:
    """What ``catalog.parquet`` holds: its bytes (None when there is no file), the last log
    fragment folded in, and its version (S3 ETag) for a conditional replace."""

    data: bytes | None = None
    seq: int = 0
    etag: str | None = None
    exists: bool = False
    out: Output | None = field(default=None, compare=False)  # where it was read (for errors)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows (``STORE_SCHEMA``), a row group at a time: decoding the whole file at
        once would take twice its memory. ``CatalogDamagedError`` when a part does not decode."""
        if self.data is None:
            return
        parquet = pq.ParquetFile(pa.BufferReader(self.data))
        batches = parquet.iter_batches(batch_size=_ROW_GROUP, use_threads=False)
        while True:
            try:
                batch = next(batches, None)
            except Exception as e:  # in-memory bytes: whatever fails is damage, not I/O
                assert self.out is not None
                raise damaged(self.out, CATALOG, f"{type(e).__name__}: {e}") from e
            if batch is None:
                return
            yield conform(batch)

    def table(self) -> pa.Table:
        return pa.Table.from_batches(list(self.batches()), schema=STORE_SCHEMA)


def read_compacted(out: Output) -> Compacted:
    path = out.path(CATALOG)
    try:
        data, etag = out.read_versioned(path)
    except FileNotFoundError:
        return Compacted(out=out)
    return Compacted(data, _seq_of(out, data), etag, True, out)


def _seq_of(out: Output, data: bytes | pa.NativeFile) -> int:
    """The log position in ``catalog.parquet``'s metadata (``CatalogDamagedError`` when its
    footer does not decode)."""
    try:
        source = pa.BufferReader(data) if isinstance(data, bytes) else data
        meta = pq.read_schema(source).metadata or {}
        return int(meta.get(SEQ_KEY, b"0"))
    except Exception as e:  # noqa: BLE001 - in-memory bytes: any failure is damage
        raise damaged(out, CATALOG, f"{type(e).__name__}: {e}") from e


def _file_seq(out: Output) -> int | None:
    """``catalog.parquet``'s log position now (its footer only); None when it is gone."""
    try:
        with out.fs.open(out.path(CATALOG), "rb") as f:
            return _seq_of(out, pa.PythonFile(f, mode="r"))
    except FileNotFoundError:
        return None


def list_log(out: Output) -> list[int]:
    """The fragment numbers in OUT's log, in order."""
    names = out.list_names(out.path(LOG_DIR))
    return sorted(int(m.group(1)) for n in names if (m := _FRAGMENT.fullmatch(n)))


def _encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, FRAGMENT_SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _cut_short(data: bytes) -> bool:
    """A fragment whose end never reached the disk: empty, or without the footer an Arrow IPC
    file ends with (what a write interrupted before its end leaves)."""
    return not data.endswith(_ARROW_MAGIC)


def decode_fragment(out: Output, seq: int, data: bytes) -> pa.Table:
    """Fragment ``seq`` from its bytes; ``CatalogDamagedError`` when they do not decode."""
    try:
        table = pa.ipc.open_file(io.BytesIO(data)).read_all()
    except Exception as e:  # noqa: BLE001 - in-memory bytes: any failure is damage
        what = "cut short" if _cut_short(data) else f"{type(e).__name__}: {e}"
        raise damaged(out, fragment_name(seq), what) from e
    names = table.schema.names
    if names == FRAGMENT_SCHEMA.names:
        return table
    if names[-1:] != ["op"] or names[:-1] != STORE_SCHEMA.names[: len(names) - 1]:
        raise damaged(out, fragment_name(seq), f"columns {names} are not a fragment's")
    # a fragment of an older version, without the columns added since (``files``): nulls
    batches = [
        conform(b.drop_columns(["op"])).append_column("op", b.column("op"))
        for b in table.to_batches()
    ]
    return pa.Table.from_batches(batches, schema=FRAGMENT_SCHEMA)


def read_fragment(out: Output, seq: int) -> pa.Table:
    """One fragment (``FRAGMENT_SCHEMA``); ``FileNotFoundError`` when it is gone (compacted),
    ``CatalogDamagedError`` when it does not decode."""
    return decode_fragment(out, seq, out.read_bytes(out.path(fragment_name(seq))))


def write_fragment(out: Output, seq: int, table: pa.Table) -> None:
    """Append fragment ``seq`` to the log, durably; on S3 only if no other writer has (a run
    that lost its lease gets ``LockedError``)."""
    data = _encode(table)
    try:
        out.write_bytes_atomic(fragment_name(seq), data, create=True)
    except PreconditionFailed as e:
        try:  # our own earlier attempt, whose answer was lost on the way?
            same = out.read_bytes(out.path(fragment_name(seq))) == data
        except OSError:
            same = False
        if not same:
            raise LockedError(
                f"{out.url}: another run wrote the catalog log ({fragment_name(seq)} exists); "
                "this run stops writing (run it again when the other is done)"
            ) from e


def encode_compacted(tables: Iterable[pa.Table], seq: int, sink: BinaryIO) -> None:
    """Write ``catalog.parquet`` into ``sink``: ``tables`` (catalog columns, in catalog order),
    with ``seq`` in its metadata and, added before the footer is written, the sha256 of every
    byte before the footer (``DIGEST_KEY``)."""
    schema = CATALOG_SCHEMA.with_metadata({SEQ_KEY: str(seq).encode()})
    hashed = HashingWriter(cast(IO[bytes], sink), close=False)
    with pq.ParquetWriter(hashed, schema, compression="zstd") as writer:
        for table in tables:
            if table.num_rows:
                writer.write_table(table.cast(schema, safe=False), row_group_size=_ROW_GROUP)
        writer.add_key_value_metadata({DIGEST_KEY: hashed.digest()[1].encode()})


def compacted_damage(data: bytes) -> tuple[str | None, str | None]:
    """What is wrong with ``catalog.parquet``'s bytes ``data`` that decoding would not say:
    (damage, note). Its row groups (every byte before the footer) against the sha256 its footer
    records, and the footer against the one its rows give when encoded again (as this version
    writes them: only when the file says the same Parquet writer wrote it). A file written
    before the digest existed has none (said in the note)."""
    try:
        (length,) = struct.unpack("<I", data[-8:-4])
        if data[-4:] != b"PAR1" or length + 8 > len(data):
            return "not a Parquet file (its last 8 bytes are not a footer's length and PAR1)", None
        parquet = pq.ParquetFile(pa.BufferReader(data))
        meta = parquet.metadata.metadata or {}
        recorded = meta.get(DIGEST_KEY)
        if recorded is None:
            return None, f"{CATALOG}: written before its digest existed: its bytes are not checked"
        if hashlib.sha256(memoryview(data)[: len(data) - 8 - length]).hexdigest().encode() != (
            recorded
        ):
            return (
                "changed: the sha256 of its row groups differs from the one its footer records",
                None,
            )
        if parquet.metadata.created_by != _created_by():
            note = f"{CATALOG}: written by {parquet.metadata.created_by}: its footer is not checked"
            return None, note
        seq = int((parquet.schema_arrow.metadata or {}).get(SEQ_KEY, b"0"))
        again = io.BytesIO()
        groups = (parquet.read_row_group(i) for i in range(parquet.num_row_groups))
        encode_compacted(groups, seq, cast(BinaryIO, again))
    except Exception as e:  # noqa: BLE001 - in-memory bytes: any failure is damage
        return f"does not decode ({type(e).__name__}: {' '.join(str(e).split())})", None
    if again.getvalue() != data:
        return "changed: its footer differs from the one its rows give", None
    return None, None


def _created_by() -> str:
    """What the Parquet writer of this process records as ``created_by``."""
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": pa.array([], pa.int8())}), sink)
    return str(pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata.created_by)


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


@dataclass(frozen=True)
class Snapshot:
    """The catalog as stored: ``catalog.parquet``, the fragments after it (in order), and the
    newest fragment when it was cut short and left out (``incomplete``, its number)."""

    compacted: Compacted
    fragments: list[tuple[int, pa.Table]]
    incomplete: int | None = None
    listed: tuple[int, ...] = ()  # every fragment number the log held as it was read


def read_snapshot(out: Output, locked: bool = False) -> Snapshot:
    """``catalog.parquet`` and the fragments after it, as one consistent state: read again while
    a compaction races the reading (a hole in the fragment numbers, a fragment gone). The
    newest fragment cut short is left out (``Snapshot.incomplete``); ``CatalogDamagedError``
    for any other damage: a file that does not decode, a hole that is no race. ``locked``: the
    caller holds OUT's lock, so nothing races, and on an object store the file and the log's
    listing are read together (else the file first: see the hole below)."""
    for _ in range(_SNAPSHOT_TRIES):
        if locked and not out.is_local:
            with ThreadPoolExecutor(1, thread_name_prefix="reacture-log") as pool:
                listing = pool.submit(list_log, out)
                compacted = read_compacted(out)
                listed = listing.result()
        else:
            compacted = read_compacted(out)
            listed = list_log(out)
        seqs = [s for s in listed if s > compacted.seq]
        expected = list(range(compacted.seq + 1, compacted.seq + 1 + len(seqs)))
        if seqs and not compacted.exists:  # a run writes catalog.parquet before any fragment
            raise damaged(out, CATALOG, f"missing, while the log holds fragments from {seqs[0]}")
        if seqs != expected:
            # a hole: a compaction that ran since catalog.parquet was read (it writes the file
            # before it deletes fragments, so the file's position moved on), or a lost fragment
            if _file_seq(out) != compacted.seq:
                continue
            missing = sorted(set(range(compacted.seq + 1, seqs[-1])) - set(seqs))
            raise damaged(
                out,
                fragment_name(missing[0]),
                f"missing ({len(missing)} of the fragments between {CATALOG}'s position "
                f"{compacted.seq} and the newest, {seqs[-1]}, are gone, and the rows they held)",
            )
        try:
            fragments: list[tuple[int, pa.Table]] = []
            incomplete = None
            for s in seqs:
                data = out.read_bytes(out.path(fragment_name(s)))
                if s == seqs[-1] and _cut_short(data):
                    incomplete = s
                    continue
                fragments.append((s, decode_fragment(out, s, data)))
            return Snapshot(compacted, fragments, incomplete, tuple(listed))
        except FileNotFoundError:
            continue
    raise OutputError(
        f"{out.url}: the catalog kept changing while it was read ({_SNAPSHOT_TRIES} tries); "
        "read it again"
    )


@dataclass(frozen=True)
class Salvage:
    """What of a damaged catalog still reads: ``catalog.parquet`` (empty when it does not
    decode), the fragments after it that decode (every one when its position is unknown), and
    what is wrong with which file (``damage``: path relative to OUT, what)."""

    compacted: Compacted
    fragments: list[tuple[int, pa.Table]]
    damage: list[tuple[str, str]]


def _why(e: CatalogDamagedError) -> str:
    return " ".join(str(e.__cause__ if e.__cause__ is not None else e).split())


def salvage(out: Output) -> Salvage:
    """Read whatever of the catalog reads, file by file (for ``repair``, which holds the lock:
    nothing races it)."""
    damage: list[tuple[str, str]] = []
    try:
        compacted = read_compacted(out)
        for _ in compacted.batches():  # every part decodes
            pass
    except CatalogDamagedError as e:
        damage.append((CATALOG, f"does not decode ({_why(e)})"))
        compacted = Compacted(out=out)
    seqs = [s for s in list_log(out) if s > compacted.seq]
    if seqs and not compacted.exists and not damage:
        damage.append((CATALOG, "missing"))
    if seqs:
        first = seqs[0] if damage else compacted.seq + 1
        present = set(seqs)
        lost = [m for m in range(first, seqs[-1]) if m not in present]
        damage.extend((fragment_name(m), "missing") for m in lost)
    fragments = []
    for s in seqs:
        data = out.read_bytes(out.path(fragment_name(s)))
        if _cut_short(data):
            damage.append((fragment_name(s), "cut short (an interrupted write)"))
            continue
        try:
            fragments.append((s, decode_fragment(out, s, data)))
        except CatalogDamagedError as e:
            damage.append((fragment_name(s), f"does not decode ({_why(e)})"))
    return Salvage(compacted, fragments, damage)


def set_aside(out: Output, rels: Iterable[str], when: dt.datetime | None = None) -> list[str]:
    """Move the files ``rels`` (relative to OUT) into ``.damaged/<when>/`` under the same
    relative paths, keeping them (never deleted here); returns where they went.
    ``catalog.parquet`` is copied (its replacement is written over it atomically: OUT never
    lacks one)."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    for rel in rels:
        target = f"{DAMAGED}/{stamp}/{rel}"
        if rel == CATALOG:
            out.write_bytes_atomic(target, out.read_bytes(out.path(rel)))
        else:
            if out.is_local:
                out.makedirs(out.path(target).rsplit("/", 1)[0])
            out.move(out.path(rel), out.path(target))
        moved.append(target)
    return moved
