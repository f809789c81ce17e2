"""A run's hold on OUT, the same for a batch and a watcher: its id, OUT's lock for as long as
it runs (OUT checked first: absent, empty or a dataset, ``output.claim``), the catalog loaded
under the lock with staging cleared of what killed runs left, and at the end the dataset card
(written only when it changes) and staging cleared again.

``hold_output`` takes the lock; ``load_catalog`` is a separate step so that a batch can start
its scheduler's cluster (on a thread) while the catalog loads.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from reacture_convert.output.catalog import Catalog
from reacture_convert.output.claim import check_out
from reacture_convert.output.storage import Held, Output, lock_output
from reacture_convert.run.removal import Settled, pending_removal, settle_removal
from reacture_convert.writers.card import write_card

__all__ = ["OutputRun", "hold_output", "new_run_id"]


def new_run_id() -> str:
    """A run's id: its rows in the catalog and its staging folder carry it."""
    return uuid.uuid4().hex[:12]


class OutputRun:
    """One run holding OUT's lock (``hold_output``): ``run_id``, and the ``catalog`` once
    ``load_catalog`` has loaded it."""

    def __init__(self, out: Output, run_id: str, held: Held) -> None:
        self.out = out
        self.run_id = run_id
        self.held = held
        self._catalog: Catalog | None = None
        self.settled: Settled | None = None  # a killed removal, settled as the catalog loaded

    @property
    def catalog(self) -> Catalog:
        assert self._catalog is not None, "load_catalog() first"
        return self._catalog

    def load_catalog(self) -> Catalog:
        """The catalog, its writes guarded by the lock (a lost S3 lease stops them); staging is
        cleared of a killed run's leftovers, which were never visible, and a killed removal is
        settled (``run.removal``)."""
        if self.out.is_local:
            self._catalog = Catalog.load(self.out, guard=self.held.check)
            self.out.clear_staging()
            self.settled = settle_removal(self.out, self._catalog, self.held.check)
            return self._catalog
        # on an object store the three go out together (each is a round trip or two; nothing
        # of the catalog's is in staging there, where a write is one PUT)
        with ThreadPoolExecutor(2, thread_name_prefix="reacture-load") as pool:
            cleared = pool.submit(self.out.clear_staging)
            pending = pool.submit(pending_removal, self.out)
            self._catalog = Catalog.load(self.out, guard=self.held.check)
            cleared.result()
            marked = pending.result()
        self.settled = settle_removal(self.out, self._catalog, self.held.check, marked)
        return self._catalog

    def close(self) -> None:
        """A run that finished: the dataset card from the catalog, and staging cleared. A run
        that lost its S3 lease says so here even when it had nothing to write (a re-run of
        unchanged sessions writes no catalog row). On an object store the two go out together
        (locally clearing removes the temporaries of atomic writes, the card's among them)."""
        self.held.check()
        if self.out.is_local:
            write_card(self.out, self.catalog.view())
            self.out.clear_staging()
            return
        with ThreadPoolExecutor(1, thread_name_prefix="reacture-close") as pool:
            cleared = pool.submit(self.out.clear_staging)
            try:
                write_card(self.out, self.catalog.view())
            finally:
                cleared.result()


@contextlib.contextmanager
def hold_output(
    out: Output,
    run_id: str | None = None,
    *,
    wait: bool,
    allow_other_files: bool = False,
    checked: bool = False,
) -> Iterator[OutputRun]:
    """Hold OUT's lock as run ``run_id`` (a new one by default). Raises ``OutRefusedError``
    when OUT is a file, or a folder holding other files than a dataset's (unless
    ``allow_other_files``: ``output.claim``), before anything is written (``checked``: the
    caller has just checked); ``LockedError`` when another run holds it (unless ``wait``)."""
    if not checked:
        check_out(out, allow_other_files=allow_other_files)
    with lock_output(out, wait=wait) as held:
        yield OutputRun(out, run_id or new_run_id(), held)
