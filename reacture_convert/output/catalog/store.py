"""The catalog's rows in a driver's memory, kept compactly: ``RowStore``.

Every row a driver has seen (the loaded catalog, then each recorded result) is stored once, in
chunks of ``CHUNK`` rows: the four columns that lookups read (session, source, prefix, status)
as plain Arrow arrays, the other columns as one zstd-compressed Arrow IPC buffer, decoded when a
row is needed (a few chunks stay decoded: a batch asks for its sessions in catalog order, so
lookups walk the chunks in order). A row that repeats another but for its status, reason, time
and run (a ``skipped`` session) is kept as a reference to it: a few bytes. 100,000 rows take
~40 MB this way, ~200 MB as ``CatalogEntry`` objects. Rows are never changed or removed, so a
row id stays valid for the store's life (a summary keeps ids, not entries: ``EntryView``).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import functools
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reacture_convert.arrow import (
    array_of,
    bool_array,
    numeric_array,
    numeric_values,
    string_array,
)
from reacture_convert.findings import Finding
from reacture_convert.output.catalog.entry import CATALOG_SCHEMA, HASH_COLUMNS, CatalogEntry
from reacture_convert.output.digests import FileDigest
from reacture_convert.output.status import Status

__all__ = [
    "CHUNK",
    "HOT",
    "STORE_SCHEMA",
    "EntryView",
    "RowStore",
    "Rows",
    "conform",
    "release",
    "system_pool",
]

Key = tuple[str, str | None]
Rows = Sequence[int] | np.ndarray  # row ids
P = ParamSpec("P")
T = TypeVar("T")

# The catalog's columns with times to the microsecond (a datetime's precision): rows read back
# from memory or from the log equal the entries recorded. The file keeps milliseconds.
STORE_SCHEMA = pa.schema(
    [
        pa.field("converted_at", pa.timestamp("us", tz="UTC")) if f.name == "converted_at" else f
        for f in CATALOG_SCHEMA
    ]
)
HOT = ("session", "source", "prefix", "status")  # what lookups and sorting read
_COLD = tuple(n for n in STORE_SCHEMA.names if n not in HOT)
_COLD_SCHEMA = pa.schema([STORE_SCHEMA.field(n) for n in _COLD])
_OVERRIDES = ("status", "reason", "run_id", "converted_at")  # what a reference row changes
CHUNK = 4096  # rows per chunk
_DECODED = 4  # chunks kept decoded
_RECENT = 256  # rows materialised lately, kept as entries (a task's previous row, its result)
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NO_TIME = -(2**63)  # converted_at None


def release() -> None:
    """Give the memory that decoding, sorting or encoding many rows left free back to the
    system (what the default pool keeps of it)."""
    pa.default_memory_pool().release_unused()


@contextlib.contextmanager
def system_pool() -> Iterator[None]:
    """Arrow allocations from the system allocator meanwhile: the catalog's bulk work (decoding
    catalog.parquet, packing, sorting, writing) frees most of what it allocates, and the system
    allocator gives that back, where Arrow's default (mimalloc) keeps much of it (measured:
    ~60 MB more for 100,000 rows). Process-wide while it lasts; a buffer is freed to the pool
    it came from, so other threads' work is unaffected but for where it allocates."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _in_system_pool(method: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(method)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        with system_pool():
            return method(*args, **kwargs)

    return wrapped


def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with exactly ``STORE_SCHEMA``'s columns (a catalog written by an older version
    may lack one: it reads as nulls)."""
    names = batch.schema.names
    columns = [
        batch.column(names.index(f.name)).cast(f.type, safe=False)
        if f.name in names
        else pa.nulls(batch.num_rows, f.type)
        for f in STORE_SCHEMA
    ]
    return pa.RecordBatch.from_arrays(columns, schema=STORE_SCHEMA)


def _batch(entries: Sequence[CatalogEntry]) -> pa.RecordBatch:
    records = [e.to_record() for e in entries]
    return pa.RecordBatch.from_arrays(
        [array_of([r[f.name] for r in records], f.type) for f in STORE_SCHEMA],
        schema=STORE_SCHEMA,
    )


@dataclass(frozen=True)
class _Chunk:
    hot: pa.RecordBatch  # HOT columns, as they are
    cold: pa.Buffer  # the other columns: one compressed Arrow IPC stream


def _pack(batch: pa.RecordBatch) -> _Chunk:
    # copies: a slice of a decoded row group would keep the whole row group alive
    hot = pa.RecordBatch.from_arrays(
        [pa.concat_arrays([batch.column(n)]) for n in HOT], names=list(HOT)
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _COLD_SCHEMA, options=_IPC) as writer:
        writer.write_batch(batch.select(list(_COLD)))
    return _Chunk(hot, sink.getvalue())


def _time_us(at: Any) -> int | None:
    """``converted_at`` as microseconds since 1970; None for what a reference cannot hold."""
    if at is None:
        return _NO_TIME
    if isinstance(at, dt.datetime) and at.tzinfo is not None:
        return (at - _EPOCH) // dt.timedelta(microseconds=1)
    return None


class RowStore:
    """Append-only catalog rows (see the module doc). Row ids count from 0."""

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self._starts: list[int] = []  # stored position of each chunk's first row
        self._sealed = 0  # stored rows in chunks
        self._pending: list[CatalogEntry] = []  # the newest stored rows, not yet in a chunk
        self._where = array("q")  # row id -> stored position, or -1 - index of a reference
        self._d_base = array("q")  # reference -> stored position of the row it repeats
        self._d_meta = array("q")  # reference -> index in _metas
        self._d_time = array("q")  # reference -> converted_at, microseconds since 1970
        self._metas: list[tuple[Status, str | None, str | None]] = []  # status, reason, run_id
        self._meta_ids: dict[tuple[Status, str | None, str | None], int] = {}
        self._decoded: OrderedDict[int, pa.RecordBatch] = OrderedDict()
        self._recent: OrderedDict[int, CatalogEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._where)

    # --- adding rows ----------------------------------------------------------------------------

    def add(self, entry: CatalogEntry) -> int:
        """Store ``entry``; return its row id."""
        self._where.append(self._sealed + len(self._pending))
        self._pending.append(entry)
        if len(self._pending) >= CHUNK:
            self._seal()
        return len(self._where) - 1

    @_in_system_pool
    def add_batch(self, batch: pa.RecordBatch) -> range:
        """Store the rows of a ``STORE_SCHEMA`` batch, in order; return their row ids."""
        self._seal()
        first = len(self._where)
        for start in range(0, batch.num_rows, CHUNK):
            self._append_chunk(batch.slice(start, CHUNK))
        return range(first, len(self._where))

    def _append_chunk(self, batch: pa.RecordBatch) -> None:
        self._starts.append(self._sealed)
        self._chunks.append(_pack(batch))
        self._where.extend(range(self._sealed, self._sealed + batch.num_rows))
        self._sealed += batch.num_rows

    @_in_system_pool
    def _seal(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._starts.append(self._sealed)
            self._chunks.append(_pack(_batch(pending)))
            self._sealed += len(pending)

    def derive(self, base: int, entry: CatalogEntry) -> int | None:
        """Store ``entry`` as a reference to row ``base`` when it equals that row but for
        status, reason, time and run (None when it does not: store it with ``add``)."""
        at = _time_us(entry.converted_at)
        previous = self.entry(base)
        same = dataclasses.replace(
            entry,
            status=previous.status,
            reason=previous.reason,
            converted_at=previous.converted_at,
            run_id=previous.run_id,
        )
        if at is None or same != previous:
            return None
        meta = (entry.status, entry.reason, entry.run_id)
        index = self._meta_ids.setdefault(meta, len(self._metas))
        if index == len(self._metas):
            self._metas.append(meta)
        self._d_base.append(self._stored(base))
        self._d_meta.append(index)
        self._d_time.append(at)
        self._where.append(-len(self._d_base))
        row = len(self._where) - 1
        self._remember(row, entry)
        return row

    # --- reading rows ---------------------------------------------------------------------------

    def repeats(self, row: int) -> bool:
        """Row ``row`` is kept as a reference to another (``derive``)."""
        return self._where[row] < 0

    def _stored(self, row: int) -> int:
        where = self._where[row]
        return where if where >= 0 else self._d_base[-1 - where]

    def _chunk_of(self, pos: int) -> int:
        return bisect.bisect_right(self._starts, pos) - 1

    @_in_system_pool
    def _full(self, c: int) -> pa.RecordBatch:
        """Chunk ``c`` decoded: every column."""
        batch = self._decoded.get(c)
        if batch is not None:
            self._decoded.move_to_end(c)
            return batch
        chunk = self._chunks[c]
        cold = pa.ipc.open_stream(chunk.cold).read_next_batch()
        columns = {**dict(zip(HOT, chunk.hot.columns, strict=True))}
        columns.update(zip(_COLD, cold.columns, strict=True))
        batch = pa.RecordBatch.from_arrays(
            [columns[n] for n in STORE_SCHEMA.names], schema=STORE_SCHEMA
        )
        self._decoded[c] = batch
        if len(self._decoded) > _DECODED:
            self._decoded.popitem(last=False)
        return batch

    def _value(self, pos: int, column: str) -> Any:
        """A column of a stored row in a chunk (``pos`` < ``_sealed``)."""
        c = self._chunk_of(pos)
        if column in HOT:
            return self._chunks[c].hot.column(column)[pos - self._starts[c]].as_py()
        return self._full(c).column(column)[pos - self._starts[c]].as_py()

    def status(self, row: int) -> Status:
        where = self._where[row]
        if where < 0:
            return self._metas[self._d_meta[-1 - where]][0]
        if where >= self._sealed:
            return self._pending[where - self._sealed].status
        return Status(self._value(where, "status"))

    def session(self, row: int) -> str | None:
        pos = self._stored(row)
        if pos >= self._sealed:
            return self._pending[pos - self._sealed].session
        value: str | None = self._value(pos, "session")
        return value

    def key(self, row: int) -> Key:
        pos = self._stored(row)
        if pos >= self._sealed:
            return self._pending[pos - self._sealed].key
        return (self._value(pos, "source"), self._value(pos, "prefix"))

    def hashes(self, row: int) -> dict[str, str]:
        pos = self._stored(row)
        if pos >= self._sealed:
            return dict(self._pending[pos - self._sealed].hashes)
        values = {role: self._value(pos, col) for role, col in HASH_COLUMNS.items()}
        return {role: v for role, v in values.items() if v}

    def entry(self, row: int) -> CatalogEntry:
        """Row ``row`` as an entry."""
        cached = self._recent.get(row)
        if cached is not None:
            self._recent.move_to_end(row)
            return cached
        where = self._where[row]
        pos = self._stored(row)
        if pos >= self._sealed:
            e = self._pending[pos - self._sealed]
        else:
            c = self._chunk_of(pos)
            e = _from_batch(self._full(c), pos - self._starts[c])
        if where < 0:
            d = -1 - where
            status, reason, run_id = self._metas[self._d_meta[d]]
            us = self._d_time[d]
            at = None if us == _NO_TIME else _EPOCH + dt.timedelta(microseconds=us)
            e = dataclasses.replace(e, status=status, reason=reason, converted_at=at, run_id=run_id)
        self._remember(row, e)
        return e

    def _remember(self, row: int, e: CatalogEntry) -> None:
        self._recent[row] = e
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    @_in_system_pool
    def table(self, rows: Rows, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows ``rows`` as one table of ``STORE_SCHEMA`` (or of ``columns`` of it), in order."""
        names = list(columns or STORE_SCHEMA.names)
        schema = pa.schema([STORE_SCHEMA.field(n) for n in names])
        if not len(rows):
            return schema.empty_table()
        where = np.frombuffer(self._where, np.int64)[np.asarray(rows, np.int64)]
        refs = where < 0
        d = -1 - where[refs]
        pos = where.copy()
        pos[refs] = np.frombuffer(self._d_base, np.int64)[d]
        parts: list[tuple[np.ndarray, pa.Table]] = []  # (output indices, their rows)
        pending = np.flatnonzero(pos >= self._sealed)
        if len(pending):
            entries = [self._pending[p - self._sealed] for p in pos[pending].tolist()]
            parts.append((pending, pa.Table.from_batches([_batch(entries)]).select(names)))
        sealed = np.flatnonzero(pos < self._sealed)
        chunks = np.searchsorted(np.asarray(self._starts), pos[sealed], "right") - 1
        for c in sorted(set(chunks.tolist())):  # (np.unique would import numpy.ma, ~20 ms)
            mine = sealed[chunks == c]
            source = self._chunks[c].hot if set(names) <= set(HOT) else self._full(c)
            local = numeric_array(pos[mine] - self._starts[c], pa.int64())
            parts.append((mine, pa.Table.from_batches([source.select(names).take(local)])))
        taken = pa.concat_tables([t for _, t in parts]) if len(parts) > 1 else parts[0][1]
        if len(parts) > 1:  # back into the order asked for
            back = np.argsort(np.concatenate([i for i, _ in parts]))
            taken = taken.take(numeric_array(back, pa.int64()))
        if len(d):
            taken = self._override(taken, names, refs, d)
        return taken

    def _override(
        self, taken: pa.Table, names: list[str], refs: np.ndarray, d: np.ndarray
    ) -> pa.Table:
        """Reference rows (``refs``, their indices ``d``) with their own status, reason, run
        and time."""
        meta = np.frombuffer(self._d_meta, np.int64)[d]
        mask = bool_array(refs)
        for name in set(names) & set(_OVERRIDES):
            if name == "converted_at":
                us = np.frombuffer(self._d_time, np.int64)[d]
                values = numeric_array(us, pa.int64(), valid=us != _NO_TIME).cast(
                    STORE_SCHEMA.field(name).type
                )
            else:
                k = _OVERRIDES.index(name)  # status, reason, run_id: positions in a meta
                words = string_array([None if m[k] is None else str(m[k]) for m in self._metas])
                values = words.take(numeric_array(meta, pa.int64()))
            i = names.index(name)
            column = pc.replace_with_mask(taken.column(i).combine_chunks(), mask, values)
            taken = taken.set_column(i, STORE_SCHEMA.field(name), column)
        return taken

    @_in_system_pool
    def order(self, rows: Rows) -> array[int]:
        """``rows`` in catalog order: by session, source, prefix and status."""
        if not len(rows):
            return array("q")
        keys = self.table(rows, list(HOT))
        empty = string_array([""])[0]  # (a Python "" would make pyarrow import pandas)
        keys = pa.table(
            {
                "session": pc.fill_null(keys.column("session"), empty),
                "source": keys.column("source"),
                "prefix": pc.fill_null(keys.column("prefix"), empty),
                "status": keys.column("status"),
            }
        )
        order = numeric_values(pc.sort_indices(keys, sort_keys=[(n, "ascending") for n in HOT]))
        del keys
        release()
        return array("q", np.asarray(rows, np.int64)[order].tobytes())


def _from_batch(batch: pa.RecordBatch, i: int) -> CatalogEntry:
    """Row ``i`` of a ``STORE_SCHEMA`` batch as an entry (column by column: faster than
    ``to_pylist`` of a one-row slice)."""

    def get(name: str) -> Any:
        return batch.column(name)[i].as_py()

    # (a zoned timestamp's ``as_py`` imports pandas: the time is made here, in UTC)
    at = batch.column("converted_at")[i]
    converted_at = None if not at.is_valid else _EPOCH + dt.timedelta(microseconds=at.value)

    hashes = {role: v for role, col in HASH_COLUMNS.items() if (v := get(col))}
    findings = tuple(Finding.from_dict(f) for f in get("findings") or ())
    return CatalogEntry(
        session=get("session"),
        source=get("source"),
        prefix=get("prefix"),
        status=Status(get("status")),
        metadata_session_id=get("metadata_session_id"),
        reason=get("reason"),
        n_frames=get("n_frames"),
        n_rows=get("n_rows"),
        blank_frames=get("blank_frames"),
        hashes=hashes,
        findings=findings,
        outputs=tuple(get("outputs") or ()),
        converter_version=get("converter_version") or "",
        converted_at=converted_at,
        run_id=get("run_id"),
        files=tuple(FileDigest.from_dict(f) for f in get("files") or ()),
    )


class EntryView(Sequence[CatalogEntry]):
    """Entries held as row ids of a ``RowStore``: a summary of 100,000 sessions stays small."""

    def __init__(self, store: RowStore, rows: Sequence[int] = ()) -> None:
        self.store = store
        self.rows = rows if isinstance(rows, array) else array("q", rows)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> CatalogEntry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[CatalogEntry]: ...
    def __getitem__(self, index: int | slice) -> CatalogEntry | Sequence[CatalogEntry]:
        if isinstance(index, slice):
            return EntryView(self.store, self.rows[index])
        return self.store.entry(self.rows[index])

    def __iter__(self) -> Iterator[CatalogEntry]:
        return (self.store.entry(r) for r in self.rows)

    def statuses(self) -> Iterator[Status]:
        """Each entry's status, without building the entries."""
        return (self.store.status(r) for r in self.rows)

    def __repr__(self) -> str:
        return f"EntryView({len(self)} entries)"
