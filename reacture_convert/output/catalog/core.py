"""``OUT/catalog.parquet``: one row per bundle seen, its latest state (docs/output-layout.md).

A bundle is identified by where it was found and its prefix (``source``, ``prefix``); a re-run
replaces that bundle's row. The catalog is the run's memory: a row with status ``converted`` (or
``skipped``) means every output of that session is complete, because rows are only recorded after
the session's commit. ``merge_entries`` keeps that memory truthful: exactly one *live* row
(converted or skipped) describes what a session's outputs hold, and a later state that wrote
nothing (conflict, rejected, failed) is kept beside it rather than erasing it.

A driver keeps the catalog in a ``Catalog``: rows in memory, compactly (``catalog_store``), the
live ones picked by ``merge_entries``' rules in O(1) (``catalog_slots``), each recorded row
appended to a log and folded into ``catalog.parquet`` from time to time (``catalog_log``), so
recording a session costs the same in a catalog of 100 rows or of 100,000.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace

import pyarrow as pa

from reacture_convert.arrow import string_array
from reacture_convert.findings import finding
from reacture_convert.output.catalog.entry import (
    CATALOG_SCHEMA,
    HASH_COLUMNS,
    CatalogEntry,
    entries_table,
    table_entries,
)
from reacture_convert.output.catalog.log import (
    CATALOG,
    LOG_DIR,
    CatalogDamagedError,
    Compacted,
    Snapshot,
    delete_fragments,
    encode_compacted,
    incomplete_note,
    list_log,
    read_snapshot,
    remove_log_dir,
    set_aside,
    write_compacted,
    write_fragment,
)
from reacture_convert.output.catalog.slots import Slots
from reacture_convert.output.catalog.store import (
    CHUNK,
    HOT,
    EntryView,
    RowStore,
    release,
    system_pool,
)
from reacture_convert.output.layout import fragment_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.phases import reached

__all__ = [
    "CATALOG",
    "CATALOG_SCHEMA",
    "HASH_COLUMNS",
    "LOG_DIR",
    "Catalog",
    "CatalogDamagedError",
    "CatalogEntry",
    "EntryView",
    "Status",
    "merge_entries",
    "read_catalog",
    "write_catalog",
]

GROUP_ROWS = 1000  # skipped rows logged together at most this many...
GROUP_SECONDS = 1.0  # ...or this long after the first of them
COMPACT_MIN_ROWS = 256  # compact after this many new rows, or as many as the file holds...
COMPACT_SECONDS = 1.0  # ...or after this long (readers of catalog.parquet see progress),
COMPACT_SHARE = 20  # but no sooner than 20 times what the last one took (<= 5 % of the time)
_SLICE = CHUNK  # rows taken from memory at a time while writing catalog.parquet
log = logging.getLogger("reacture_convert.catalog")


def _superseded(row: CatalogEntry, by: CatalogEntry) -> CatalogEntry:
    msg = (
        f"session {row.session!r} now holds the bundle from {by.source}, whose files differ "
        "from this one; this bundle is no longer converted (pass --force to convert it back)"
    )
    return replace(
        row,
        status=Status.CONFLICT,
        reason=msg,
        outputs=(),
        findings=(finding("CONFLICT", row.prefix or row.source, msg),),
        converted_at=by.converted_at,
        run_id=by.run_id,
    )


def merge_entries(old: Iterable[CatalogEntry], new: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """``old`` with every bundle of ``new`` replaced by its new state; sorted for stable output.

    Two rules keep the catalog true to the outputs (the next run's live rows come from it):

    - a new state that wrote nothing (conflict, rejected, failed) never erases the live row of
      the same bundle: the session's outputs still hold those bytes, so that row stays and the
      new state is kept beside it (otherwise the next run forgets the session and converts the
      changed bundle without ``--force``); a later live state replaces both;
    - a new live row for a session demotes every other bundle's converted, skipped or duplicate
      row of that session whose bytes differ (``--force`` from another place replaced the
      outputs): such a row becomes ``conflict`` with no outputs (or gives way to the newer
      state kept beside it), so the live rows of a session all describe the bytes it holds.
    """
    catalog = Catalog(None)
    # live (and removed) rows first, so that an old row kept beside one goes back beside it
    for e in sorted(old, key=lambda e: not e.status.is_anchor):
        catalog.put(e)
    for e in new:
        catalog.put(e)
    return catalog.rows()


def _said(out: Output, snapshot: Snapshot, notes: list[str] | None) -> None:
    """Say that the newest fragment, cut short, was left out (a warning, and into ``notes``)."""
    if snapshot.incomplete is not None:
        note = incomplete_note(snapshot.incomplete)
        log.warning("%s: %s", out.url, note)
        if notes is not None:
            notes.append(note)


def read_catalog(out: Output, notes: list[str] | None = None) -> list[CatalogEntry]:
    """The catalog's rows, or [] when OUT has none yet: ``catalog.parquet`` and what was
    recorded since (a run in progress, or one that was killed). The newest log fragment cut
    short by an interrupted write is left out and said (a warning; appended to ``notes``);
    ``CatalogDamagedError`` for any other damage (it names the file and the repair)."""
    snapshot = read_snapshot(out)
    _said(out, snapshot, notes)
    if not snapshot.fragments:
        return table_entries(snapshot.compacted.table())
    return Catalog.read(out, snapshot.compacted, snapshot.fragments).rows()


def write_catalog(out: Output, entries: Sequence[CatalogEntry]) -> None:
    """Replace the catalog with ``entries`` (as they are, in their order) atomically; whatever
    the log held is superseded."""
    seq = max(list_log(out), default=0)
    out.write_atomic(CATALOG, lambda f: encode_compacted([entries_table(entries)], seq, f))


class Catalog:
    """The catalog a driver keeps while it runs (only the lock holder keeps one: it is the only
    writer of the catalog). Rows are recorded in memory with ``merge_entries``' rules, then:

    - logged: a session's row is appended to the log at once (``flush`` after a result), a
      ``skipped`` row (losing it loses nothing: the row it repeats stays) in groups;
    - compacted: ``catalog.parquet`` is rewritten when the rows recorded since reach as many as
      it holds (at least ``COMPACT_MIN_ROWS``: O(1) a row, amortised), or after
      ``COMPACT_SECONDS`` but no sooner than ``COMPACT_SHARE`` times the last compaction took
      (so it never takes more than a twentieth of the time), and at the end of a run
      (``flush(final=True)``).

    ``guard()`` is called before every write (the S3 lease's check)."""

    def __init__(self, out: Output | None, guard: Callable[[], None] | None = None) -> None:
        self._out = out  # None: rows in memory only (merge_entries)
        self.guard = guard or (lambda: None)
        self.store = RowStore()
        self.slots = Slots(self.store)
        self.file = Compacted()  # catalog.parquet as last seen (without its bytes)
        self.file_rows = 0  # rows it holds
        self.seq = 0  # the last log fragment written or read
        self.folded: list[int] = []  # fragments that the next compaction makes redundant
        self.unlogged: list[tuple[int, str | None]] = []  # (row, op) not in the log yet
        self.unlogged_since = 0.0
        self.durable_due = False  # an unlogged row must be logged at the next flush
        self.since = 0  # rows recorded since catalog.parquet was written
        self.compacted_at = time.monotonic()
        self.compact_cost = 0.0
        self.notes: list[str] = []  # what loading healed (said in the run's output)

    @property
    def out(self) -> Output:
        assert self._out is not None, "an in-memory catalog writes nothing"
        return self._out

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def read(
        cls, out: Output, compacted: Compacted, fragments: Sequence[tuple[int, pa.Table]]
    ) -> Catalog:
        """The catalog that ``catalog.parquet`` and the log fragments after it describe."""
        catalog = cls(out)
        first = len(catalog.store)
        with system_pool():
            for batch in compacted.batches():
                catalog.store.add_batch(batch)
                release()
        base = range(first, len(catalog.store))
        catalog.file = replace(compacted, data=None)
        catalog.file_rows = len(base)
        catalog.seq = compacted.seq
        catalog._replay(base, None)
        release()
        for seq, fragment in fragments:
            first = len(catalog.store)
            for batch in fragment.drop_columns(["op"]).to_batches():
                catalog.store.add_batch(batch)
            catalog._replay(range(first, len(catalog.store)), fragment.column("op").to_pylist())
            catalog.seq = seq
            catalog.folded.append(seq)
            catalog.since += fragment.num_rows
        return catalog

    @classmethod
    def load(cls, out: Output, guard: Callable[[], None] | None = None) -> Catalog:
        """The catalog of OUT for a run that holds its lock: what a killed run left in the log
        is compacted at once, and the next fragments follow the last one. A newest fragment
        cut short is set aside into ``.damaged/`` and said (``notes``, a warning);
        ``CatalogDamagedError`` for any other damage."""
        snapshot = read_snapshot(out, locked=True)
        compacted, fragments = snapshot.compacted, snapshot.fragments
        catalog = cls.read(out, compacted, fragments)
        catalog.guard = guard or (lambda: None)
        if snapshot.incomplete is not None:
            catalog.guard()
            set_aside(out, [fragment_name(snapshot.incomplete)])
            _said(out, snapshot, catalog.notes)
        # (the lock holder is the log's only writer: as listed, unless a fragment was set aside)
        listed = snapshot.listed if snapshot.incomplete is None else list_log(out)
        stale = [s for s in listed if s <= catalog.seq]
        catalog.folded = sorted(set(catalog.folded) | set(stale))
        if fragments:
            catalog.compact()
        elif stale:
            delete_fragments(out, stale)
            catalog.folded = []
        catalog.compacted_at = time.monotonic()  # the run's first compaction by time: later
        return catalog

    def _replay(self, rows: range, ops: Sequence[str | None] | None) -> None:
        """Put stored ``rows`` in their slots, in order, with their ``ops`` (a log fragment);
        ``ops`` None: the rows of catalog.parquet, live and removed ones first (so that a row
        kept beside one goes back beside it)."""
        passes = (True, False) if ops is None else (None,)
        for live in passes:
            for start in range(rows.start, rows.stop, CHUNK):
                block = range(start, min(start + CHUNK, rows.stop))
                hot = self.store.table(block, list(HOT))
                session, source, prefix, status = (hot.column(n).to_pylist() for n in HOT)
                for k, row in enumerate(block):
                    state = Status(status[k])
                    if live is not None and state.is_anchor is not live:
                        continue
                    key = (source[k], prefix[k])
                    if ops is not None and ops[row - rows.start] == "drop":
                        self.slots.drop(key, state)
                        continue
                    self.slots.put(
                        row, state, key, session[k], self._hashes_of(row), self._supersede
                    )

    def _hashes_of(self, row: int) -> Callable[[], Mapping[str, str]]:
        return lambda: self.store.hashes(row)

    # --- recording ---------------------------------------------------------------------------

    def _supersede(self, other: int, by: int) -> int:
        return self.store.add(_superseded(self.store.entry(other), self.store.entry(by)))

    def put(self, entry: CatalogEntry) -> int:
        """Record ``entry`` in memory (``merge_entries``' rules); return its row id."""
        row = None
        if entry.status is Status.SKIPPED:  # most likely its live row again: store a reference
            base = self.slots.main(entry.key)
            if base is not None and self.store.status(base).is_live:
                row = self.store.derive(base, entry)
        if row is None:
            row = self.store.add(entry)
        self.slots.put(
            row, entry.status, entry.key, entry.session, lambda: entry.hashes, self._supersede
        )
        return row

    def record(self, entry: CatalogEntry, *, keep_skipped: bool = True) -> int:
        """Record ``entry`` and log it (at the next ``flush``); return its row id (for
        ``entries``). ``keep_skipped=False`` leaves the catalog as it is for a ``skipped``
        result (unless a row kept beside the bundle's live one is now stale) and for a row it
        already holds but for its time and run id (a re-run of unchanged bundles writes
        nothing, and a long-running watcher does not churn the catalog): the entry is only kept
        for ``entries``."""
        if not keep_skipped and (
            (entry.status is Status.SKIPPED and self.slots.beside(entry.key) is None)
            or self.slots.same_row(entry.key, entry)
        ):
            return self.store.add(entry)
        row = self.put(entry)
        self._log(row, None, durable=entry.status is not Status.SKIPPED)
        return row

    def drop(self, key: tuple[str, str | None], status: Status) -> None:
        """Forget the row of bundle ``key`` with ``status`` (an archive that reads again)."""
        if self.slots.drop(key, status):
            gone = CatalogEntry(session=None, source=key[0], prefix=key[1], status=status)
            self._log(self.store.add(gone), "drop", durable=True)

    def _log(self, row: int, op: str | None, *, durable: bool) -> None:
        if not self.unlogged:
            self.unlogged_since = time.monotonic()
        self.unlogged.append((row, op))
        self.durable_due = self.durable_due or durable
        self.since += 1

    @property
    def dirty(self) -> bool:
        """Rows recorded that ``catalog.parquet`` does not hold yet."""
        return self.since > 0

    # --- writing -----------------------------------------------------------------------------

    def flush(self, *, final: bool = False) -> None:
        """Write what is due: a compaction (``final``: whenever anything changed, and the
        empty log folder removed), else the unlogged rows as one log fragment. Raises
        ``OSError`` when the store refuses (the rows stay, for the next ``flush``),
        ``LockedError`` when the lease was lost."""
        if self.dirty and (final or self._compaction_due()):
            self.compact()
        elif self.unlogged and (
            self.durable_due
            or len(self.unlogged) >= GROUP_ROWS
            or time.monotonic() - self.unlogged_since >= GROUP_SECONDS
        ):
            self._write_fragment()
        if final:  # OUT at rest has no log folder
            remove_log_dir(self.out)

    def _compaction_due(self) -> bool:
        if not self.file.exists:  # a new catalog: catalog.parquet appears with its first rows
            return True
        if self.since >= max(COMPACT_MIN_ROWS, self.file_rows):
            return True
        wait = max(COMPACT_SECONDS, COMPACT_SHARE * self.compact_cost)
        return time.monotonic() - self.compacted_at >= wait

    def _write_fragment(self) -> None:
        self.guard()
        rows = [row for row, _ in self.unlogged]
        table = self.store.table(rows).append_column(
            "op", string_array([op for _, op in self.unlogged])
        )
        write_fragment(self.out, self.seq + 1, table)
        self.seq += 1
        self.folded.append(self.seq)
        self.unlogged = []
        self.durable_due = False

    def compact(self) -> None:
        """Write every row into ``catalog.parquet`` (with the log's position), then delete the
        log fragments it makes redundant."""
        self.guard()
        reached("catalog")
        started = time.monotonic()
        order = self.store.order(self.slots.rows())

        def slices() -> Iterator[pa.Table]:
            for i in range(0, len(order), _SLICE):
                yield self.store.table(order[i : i + _SLICE])
                release()

        with system_pool():
            self.file = write_compacted(self.out, slices(), self.seq, self.file)
        release()
        delete_fragments(self.out, self.folded)
        self.folded = []
        self.unlogged = []
        self.durable_due = False
        self.since = 0
        self.file_rows = len(order)
        self.compacted_at = time.monotonic()
        self.compact_cost = self.compacted_at - started

    # --- reading -----------------------------------------------------------------------------

    def live(self, session: str) -> CatalogEntry | None:
        """The live (converted or skipped) row of ``session``: what its outputs hold."""
        row = self.slots.live(session)
        return None if row is None else self.store.entry(row)

    def removed(self, session: str, key: tuple[str, str | None]) -> CatalogEntry | None:
        """The ``removed`` row of ``session`` (bundle ``key``'s, if it has one): a conversion
        of the same bytes skips it."""
        row = self.slots.removed(session, key)
        return None if row is None else self.store.entry(row)

    def rows(self) -> list[CatalogEntry]:
        """Every row, in catalog order."""
        return list(self.view())

    def view(self) -> EntryView:
        """Every row, in catalog order, compactly (entries built as they are read)."""
        return EntryView(self.store, self.store.order(self.slots.rows()))

    def entries(self, rows: Sequence[int], *, ordered: bool = False) -> EntryView:
        """The entries with these row ids (from ``record``), compactly; ``ordered``: in catalog
        order rather than as given."""
        return EntryView(self.store, self.store.order(rows) if ordered else rows)
