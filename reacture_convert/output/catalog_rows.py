"""The catalog's rows in a driver's memory, kept compactly, and the rules that pick its live rows.

``RowStore`` holds every row a driver has seen (the loaded catalog, then each recorded result)
in Arrow record batches, ~1 KB a row instead of ~2 KB as ``CatalogEntry`` objects, and a row that
repeats another but for its status, reason, time and run (a ``skipped`` session) as a reference to
it: a few bytes. Rows are never changed or removed, so a row id stays valid for the store's life
(a summary keeps ids, not entries). ``Slots`` is ``merge_entries``' memory: which rows make up
the catalog (one main row per bundle, sometimes one beside it), found by hashed keys in O(1).
"""

from __future__ import annotations

import bisect
import dataclasses
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc

from reacture_convert.findings import Finding, Severity
from reacture_convert.output.catalog_entry import CATALOG_SCHEMA, HASH_COLUMNS, CatalogEntry
from reacture_convert.output.status import Status

__all__ = ["STORE_SCHEMA", "EntryView", "RowStore", "Slots", "conform"]

Key = tuple[str, str | None]

# The catalog's columns with times to the microsecond (a datetime's precision): rows read back
# from memory or from the log equal the entries recorded. The file keeps milliseconds.
STORE_SCHEMA = pa.schema(
    [
        pa.field("converted_at", pa.timestamp("us", tz="UTC")) if f.name == "converted_at" else f
        for f in CATALOG_SCHEMA
    ]
)
_COLUMN = {name: i for i, name in enumerate(STORE_SCHEMA.names)}
CHUNK = 1024  # rows per record batch
_RECENT = 1024  # rows materialised lately, kept as entries (a task's previous row, its result)


def conform(table: pa.Table) -> pa.Table:
    """``table`` with exactly ``STORE_SCHEMA``'s columns (a catalog written by an older version
    may lack one: it reads as nulls)."""
    columns = [
        table.column(f.name).cast(f.type, safe=False)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in STORE_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=STORE_SCHEMA)


def _batch(entries: Sequence[CatalogEntry]) -> pa.RecordBatch:
    records = [e.to_record() for e in entries]
    return pa.RecordBatch.from_arrays(
        [pa.array([r[f.name] for r in records], f.type) for f in STORE_SCHEMA],
        schema=STORE_SCHEMA,
    )


class RowStore:
    """Append-only catalog rows (see the module doc). Row ids count from 0."""

    def __init__(self) -> None:
        self._batches: list[pa.RecordBatch] = []
        self._starts: list[int] = []  # stored position of each batch's first row
        self._sealed = 0  # stored rows in batches
        self._pending: list[CatalogEntry] = []  # the newest stored rows, not yet in a batch
        self._where = array("q")  # row id -> stored position, or -1 - index of a derived row
        self._d_base = array("q")  # derived row -> stored position of the row it repeats
        self._d_meta = array("q")  # derived row -> index in _metas
        self._d_time: list[Any] = []  # derived row -> converted_at
        self._metas: list[tuple[Status, str | None, str | None]] = []  # status, reason, run_id
        self._meta_ids: dict[tuple[Status, str | None, str | None], int] = {}
        self._recent: OrderedDict[int, CatalogEntry] = OrderedDict()
        self._whole_table: pa.Table | None = None

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

    def add_table(self, table: pa.Table) -> range:
        """Store the rows of a ``STORE_SCHEMA`` table, in order; return their row ids."""
        self._seal()
        first = len(self._where)
        for batch in table.to_batches(max_chunksize=CHUNK):
            if batch.num_rows:
                self._starts.append(self._sealed)
                self._batches.append(batch)
                self._where.extend(range(self._sealed, self._sealed + batch.num_rows))
                self._sealed += batch.num_rows
        return range(first, len(self._where))

    def derive(self, base: int, entry: CatalogEntry) -> int | None:
        """Store ``entry`` as a repeat of row ``base`` when it equals that row but for status,
        reason, time and run (None when it does not: store it with ``add``)."""
        previous = self.entry(base)
        same = dataclasses.replace(
            entry,
            status=previous.status,
            reason=previous.reason,
            converted_at=previous.converted_at,
            run_id=previous.run_id,
        )
        if same != previous:
            return None
        meta = (entry.status, entry.reason, entry.run_id)
        index = self._meta_ids.setdefault(meta, len(self._metas))
        if index == len(self._metas):
            self._metas.append(meta)
        self._d_base.append(self._stored(base))
        self._d_meta.append(index)
        self._d_time.append(entry.converted_at)
        self._where.append(-len(self._d_base))
        row = len(self._where) - 1
        self._remember(row, entry)
        return row

    def _seal(self) -> None:
        if self._pending:
            self._starts.append(self._sealed)
            self._batches.append(_batch(self._pending))
            self._sealed += len(self._pending)
            self._pending = []

    # --- reading rows ---------------------------------------------------------------------------

    def repeats(self, row: int) -> bool:
        """Row ``row`` is kept as a reference to another (``derive``)."""
        return self._where[row] < 0

    def _stored(self, row: int) -> int:
        where = self._where[row]
        return where if where >= 0 else self._d_base[-1 - where]

    def _value(self, pos: int, column: str) -> Any:
        """A column of a row in a batch (``pos`` < ``_sealed``)."""
        b = bisect.bisect_right(self._starts, pos) - 1
        return self._batches[b].column(_COLUMN[column])[pos - self._starts[b]].as_py()

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
            b = bisect.bisect_right(self._starts, pos) - 1
            e = _from_batch(self._batches[b], pos - self._starts[b])
        if where < 0:
            status, reason, run_id = self._metas[self._d_meta[-1 - where]]
            converted_at = self._d_time[-1 - where]
            e = dataclasses.replace(
                e, status=status, reason=reason, converted_at=converted_at, run_id=run_id
            )
        self._remember(row, e)
        return e

    def _remember(self, row: int, e: CatalogEntry) -> None:
        self._recent[row] = e
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    def _whole(self) -> pa.Table:
        """The sealed rows as one table (zero-copy over the batches; rebuilt when they grow)."""
        if self._whole_table is None or self._whole_table.num_rows != self._sealed:
            self._whole_table = pa.Table.from_batches(self._batches, schema=STORE_SCHEMA)
        return self._whole_table

    def table(self, rows: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        """Rows ``rows`` as one table of ``STORE_SCHEMA`` (or of ``columns`` of it), in order."""
        names = list(columns or STORE_SCHEMA.names)
        schema = pa.schema([STORE_SCHEMA.field(n) for n in names])
        if not rows:
            return schema.empty_table()
        positions = [self._stored(r) for r in rows]
        sealed = [k for k, p in enumerate(positions) if p < self._sealed]
        pending = [k for k, p in enumerate(positions) if p >= self._sealed]
        parts = []
        if sealed:
            taken = self._whole().select(names).take(pa.array([positions[k] for k in sealed]))
            parts.append(taken)
        if pending:
            entries = [self._pending[positions[k] - self._sealed] for k in pending]
            parts.append(pa.Table.from_batches([_batch(entries)]).select(names))
        taken = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if sealed and pending:  # back into the order asked for
            where = [0] * len(rows)
            for i, k in enumerate([*sealed, *pending]):
                where[k] = i
            taken = taken.take(pa.array(where))
        derived = [(k, -1 - self._where[r]) for k, r in enumerate(rows) if self._where[r] < 0]
        for name in set(names) & {"status", "reason", "run_id", "converted_at"}:
            if not derived:
                break
            values = taken.column(name).to_pylist()
            for k, d in derived:
                status, reason, run_id = self._metas[self._d_meta[d]]
                values[k] = {
                    "status": str(status),
                    "reason": reason,
                    "run_id": run_id,
                    "converted_at": self._d_time[d],
                }[name]
            field = STORE_SCHEMA.field(name)
            taken = taken.set_column(names.index(name), field, pa.array(values, field.type))
        return taken

    def order(self, rows: Sequence[int]) -> list[int]:
        """``rows`` in catalog order: by session, source, prefix and status."""
        if not rows:
            return []
        keys = self.table(rows, ["session", "source", "prefix", "status"])
        keys = pa.table(
            {
                "session": pc.fill_null(keys.column("session"), ""),
                "source": keys.column("source"),
                "prefix": pc.fill_null(keys.column("prefix"), ""),
                "status": keys.column("status"),
            }
        )
        order = pc.sort_indices(keys, sort_keys=[(n, "ascending") for n in keys.column_names])
        return [rows[i] for i in order.to_pylist()]


def _from_batch(batch: pa.RecordBatch, i: int) -> CatalogEntry:
    """Row ``i`` of a ``STORE_SCHEMA`` batch as an entry (column by column: faster than
    ``to_pylist`` of a one-row slice)."""

    def get(name: str) -> Any:
        return batch.column(_COLUMN[name])[i].as_py()

    hashes = {role: v for role, col in HASH_COLUMNS.items() if (v := get(col))}
    findings = tuple(
        Finding(
            Severity(f["severity"]),
            f["code"],
            f["file"],
            f["message"],
            line=f["line"],
            frame=f["frame"],
        )
        for f in get("findings") or ()
    )
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
        converted_at=get("converted_at"),
        run_id=get("run_id"),
    )


class EntryView(Sequence[CatalogEntry]):
    """Entries held as row ids of a ``RowStore``: a summary of 100,000 sessions stays small."""

    def __init__(self, store: RowStore, rows: Sequence[int] = ()) -> None:
        self.store = store
        self.rows = array("q", rows)

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


class _Multi:
    """int -> row ids (an int for one row, a list for more): a compact multimap."""

    def __init__(self) -> None:
        self.d: dict[int, int | list[int]] = {}

    def get(self, h: int) -> list[int]:
        v = self.d.get(h)
        return [] if v is None else [v] if isinstance(v, int) else list(v)

    def add(self, h: int, row: int) -> None:
        v = self.d.get(h)
        if v is None:
            self.d[h] = row
        elif isinstance(v, int):
            self.d[h] = [v, row]
        else:
            v.append(row)

    def remove(self, h: int, row: int) -> None:
        v = self.d.get(h)
        if v == row:
            del self.d[h]
        elif isinstance(v, list):
            v.remove(row)
            if len(v) == 1:
                self.d[h] = v[0]

    def values(self) -> Iterator[int]:
        for v in self.d.values():
            if isinstance(v, int):
                yield v
            else:
                yield from v


class Slots:
    """The rows of a ``RowStore`` that make up the catalog, by ``merge_entries``' rules.

    Every bundle (``source``, ``prefix``) has a *main* row, and a row *beside* it when a state
    that wrote nothing (conflict, rejected, failed) came after a live one. Lookups go through
    Python's hash of the key, then compare the row's real key, so the index holds no strings.
    """

    def __init__(self, store: RowStore) -> None:
        self.store = store
        self._main = _Multi()  # hash(key) -> main rows
        self._beside = _Multi()  # hash(key) -> rows beside a main row
        self._sessions = _Multi()  # hash(session) -> main rows of that session

    def _find(self, index: _Multi, key: Key) -> int | None:
        for row in index.get(hash(key)):
            if self.store.key(row) == key:
                return row
        return None

    def main(self, key: Key) -> int | None:
        return self._find(self._main, key)

    def beside(self, key: Key) -> int | None:
        return self._find(self._beside, key)

    def _set_main(self, key: Key, row: int, session: str | None) -> None:
        old = self.main(key)
        if old is not None:
            self._main.remove(hash(key), old)
            self._sessions.remove(hash(self.store.session(old)), old)
        self._main.add(hash(key), row)
        self._sessions.add(hash(session), row)

    def _pop_beside(self, key: Key) -> int | None:
        row = self.beside(key)
        if row is not None:
            self._beside.remove(hash(key), row)
        return row

    def put(
        self,
        row: int,
        status: Status,
        key: Key,
        session: str | None,
        hashes: Callable[[], Mapping[str, str]],
        supersede: Callable[[int, int], int],
    ) -> None:
        """Make ``row`` (with these fields; ``hashes()`` gives its hashes) the bundle's state.
        ``supersede(other, row)`` stores the ``conflict`` row that replaces ``other``."""
        if not status.is_live:
            current = self.main(key)
            if current is not None and self.store.status(current).is_live:
                self._pop_beside(key)
                self._beside.add(hash(key), row)
            else:
                self._set_main(key, row, session)
                self._pop_beside(key)
            return
        self._set_main(key, row, session)
        self._pop_beside(key)
        if not session:
            return
        mine: dict[str, str] | None = None
        for other in self._sessions.get(hash(session)):
            if other == row or self.store.session(other) != session:
                continue
            okey = self.store.key(other)
            ostatus = self.store.status(other)
            if okey == key or not (ostatus.is_live or ostatus is Status.DUPLICATE):
                continue
            if mine is None:
                mine = dict(hashes())
            if self.store.hashes(other) != mine:
                # that bundle's newer state, if one was kept beside, is now its only state
                newer = self._pop_beside(okey)
                replacement = newer if newer is not None else supersede(other, row)
                self._set_main(okey, replacement, self.store.session(replacement))

    def drop(self, key: Key, status: Status) -> bool:
        """Forget the bundle's row with ``status``; True when there was one."""
        beside = self.beside(key)
        if beside is not None and self.store.status(beside) is status:
            self._beside.remove(hash(key), beside)
            return True
        main = self.main(key)
        if main is None or self.store.status(main) is not status:
            return False
        self._main.remove(hash(key), main)
        self._sessions.remove(hash(self.store.session(main)), main)
        if beside is not None:  # what stood beside is the bundle's only state now
            self._beside.remove(hash(key), beside)
            self._set_main(key, beside, self.store.session(beside))
        return True

    def live(self, session: str) -> int | None:
        """The live row of ``session`` (the last one in catalog order if there are several)."""
        best: tuple[tuple[str, str, str], int] | None = None
        for row in self._sessions.get(hash(session)):
            status = self.store.status(row)
            if status.is_live and self.store.session(row) == session:
                source, prefix = self.store.key(row)
                order = (source, prefix or "", str(status))
                if best is None or order > best[0]:
                    best = (order, row)
        return None if best is None else best[1]

    def same_row(self, key: Key, entry: CatalogEntry) -> bool:
        """The bundle already has ``entry`` but for its time and run id."""
        for row in (self.main(key), self.beside(key)):
            if row is not None and self.store.status(row) is entry.status:
                other = self.store.entry(row)
                if (
                    dataclasses.replace(other, converted_at=entry.converted_at, run_id=entry.run_id)
                    == entry
                ):
                    return True
        return False

    def rows(self) -> list[int]:
        """Every row of the catalog (main and beside), in no particular order."""
        return [*self._main.values(), *self._beside.values()]
