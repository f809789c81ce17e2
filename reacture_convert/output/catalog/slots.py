"""Which rows of a ``RowStore`` make up the catalog: ``merge_entries``' rules, found in O(1).

Every bundle (``source``, ``prefix``) has a *main* row, and a row *beside* it when a state that
wrote nothing (conflict, rejected, failed) came after a live or a removed one (a ``removed``
row replaces the bundle's rows); a new live row of a session
demotes the other bundles' rows of that session whose bytes differ (``catalog.merge_entries``
says why). Lookups go through Python's hash of a key or a session, then compare the row's real
values, so the index holds row ids and no strings: a few MB for 100,000 rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from reacture_convert.output.catalog.entry import CatalogEntry
from reacture_convert.output.catalog.store import RowStore
from reacture_convert.output.status import Status

__all__ = ["Slots"]

Key = tuple[str, str | None]


class _Multi:
    """A multimap int -> row ids in two numpy arrays (open addressing, linear probing): no
    Python object per entry, so 100,000 of them take ~4 MB and leave no garbage behind."""

    _EMPTY, _GONE = -1, -2

    def __init__(self, capacity: int = 1024) -> None:
        self.keys = np.zeros(capacity, np.int64)
        self.rows = np.full(capacity, self._EMPTY, np.int64)
        self.used = 0  # slots taken, by live entries or by gone ones

    def _probe(self, h: int) -> Iterator[int]:
        mask = len(self.rows) - 1
        i = h & mask
        while True:
            yield i
            i = (i + 1) & mask

    def get(self, h: int) -> list[int]:
        found: list[int] = []
        for i in self._probe(h):
            row = int(self.rows[i])
            if row == self._EMPTY:
                return found
            if row >= 0 and int(self.keys[i]) == h:
                found.append(row)
        raise AssertionError("unreachable: the table is never full")

    def add(self, h: int, row: int) -> None:
        if (self.used + 1) * 2 > len(self.rows):
            self._grow()
        for i in self._probe(h):
            if int(self.rows[i]) < 0:
                if int(self.rows[i]) == self._EMPTY:
                    self.used += 1
                self.keys[i], self.rows[i] = h, row
                return

    def remove(self, h: int, row: int) -> None:
        for i in self._probe(h):
            here = int(self.rows[i])
            if here == self._EMPTY:
                return
            if here == row and int(self.keys[i]) == h:
                self.rows[i] = self._GONE
                return

    def _grow(self) -> None:
        live = self.rows >= 0
        keys, rows = self.keys[live], self.rows[live]
        size = max(1024, 1 << (int(len(rows)) * 4 - 1).bit_length())
        self.keys = np.zeros(size, np.int64)
        self.rows = np.full(size, self._EMPTY, np.int64)
        self.used = 0
        for h, row in zip(keys.tolist(), rows.tolist(), strict=True):
            self.add(h, row)

    def values(self) -> np.ndarray:
        return self.rows[self.rows >= 0]


class Slots:
    """The rows of a ``RowStore`` that make up the catalog (see the module doc)."""

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
        if status is Status.REMOVED:  # replaces the bundle's rows, demotes no other
            self._set_main(key, row, session)
            self._pop_beside(key)
            return
        if not status.is_live:
            current = self.main(key)
            if current is not None and self.store.status(current).is_anchor:
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

    def removed(self, session: str, key: Key) -> int | None:
        """The ``removed`` row of ``session``: bundle ``key``'s if it has one, else the last
        one in catalog order; None when the session has none."""
        best: tuple[tuple[bool, str, str], int] | None = None
        for row in self._sessions.get(hash(session)):
            if self.store.status(row) is Status.REMOVED and self.store.session(row) == session:
                source, prefix = self.store.key(row)
                order = ((source, prefix) == key, source, prefix or "")
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

    def rows(self) -> np.ndarray:
        """Every row of the catalog (main and beside), in no particular order."""
        return np.concatenate([self._main.values(), self._beside.values()])
