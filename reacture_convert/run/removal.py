"""Taking sessions out of OUT for good, in an order a kill cannot turn into a mix.

The removal's steps (``PHASES``, each marked with ``phases.reached`` so that a crash test can
kill the process there), all under OUT's lock:

1. ``remove-shards``: every shard holding samples of the sessions is written again without
   them into ``.staging/.remove/`` and made durable, under a new name
   (``writers.webdataset.prune``). Nothing visible has changed.
2. ``remove-mark``: the note ``.removing`` (the sessions) is written. Every later holder of
   the lock settles it first (``settle_removal``).
3. ``remove-publish``: the new shards are moved into ``wds/``. No index lists them yet.
4. ``remove-commit``: the catalog is compacted with a ``removed`` row for each of the
   sessions' bundles, in one atomic write. **This is the commit**: before it the dataset is
   the old one (a kill leaves the old dataset and unlisted new shards, which the next holder
   of the lock deletes, *rolling back*); from it on the sessions are gone for every reader of
   the catalog, and the next holder of the lock finishes what follows (*rolling forward*).
5. ``remove-index``: ``wds/index.json`` is replaced atomically by the index of the new set
   (readers of shards see the sessions gone).
6. ``remove-delete``: the sessions' Zarr groups, rows and frames tables are moved into
   ``.trash/`` and deleted; the shards the new index does not list are deleted.
7. ``remove-cards``: the dataset cards (and ``stats.json``, when there is one) are written
   again from the catalog; then the note is deleted.

So a kill before step 4 leaves the old dataset (what the next command deletes was never
listed anywhere); a kill from step 4 on leaves a catalog that no longer lists the sessions,
and the next command that takes the lock (``remove``, ``convert``, ``watch``, ``run``)
completes steps 5-7 before anything else: the new dataset. Steps 5-7 are idempotent.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.index import WdsIndex, read_index
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.layout import (
    REMOVING,
    STAGING,
    STATS,
    WDS_CARD,
    WDS_DIR,
    WDS_INDEX,
    is_shard_file,
    session_parts,
)
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.phases import reached
from reacture_convert.writers.card import write_card
from reacture_convert.writers.webdataset.prune import PrunedSet, prune_shards

__all__ = [
    "PHASES",
    "Settled",
    "commit_removal",
    "finish_removal",
    "pending_removal",
    "prepare_shards",
    "removed_entries",
    "settle_removal",
]

PHASES = (
    "remove-shards",
    "remove-mark",
    "remove-publish",
    "remove-commit",
    "remove-index",
    "remove-delete",
    "remove-cards",
)
_STAGE = f"{STAGING}/.remove"  # session names hold no "."
log = logging.getLogger("reacture_convert.remove")


@dataclass(frozen=True)
class Settled:
    """What ``settle_removal`` did with a killed removal: ``rolled`` is ``forward`` (it was
    committed: finished) or ``back`` (it was not: its unlisted shards deleted)."""

    sessions: tuple[str, ...]
    rolled: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def removed_entries(
    catalog: Catalog, sessions: Collection[str], reason: str, run_id: str
) -> list[CatalogEntry]:
    """The ``removed`` rows that replace the live and duplicate rows of ``sessions``: the same
    bundle, names, counts, findings and source sha256s; no outputs; ``reason`` and now."""
    wanted = set(sessions)
    now = _now()
    return [
        replace(
            e,
            status=Status.REMOVED,
            reason=reason,
            outputs=(),
            converted_at=now,
            run_id=run_id,
        )
        for e in catalog.view()
        if e.session in wanted and (e.status.is_live or e.status is Status.DUPLICATE)
    ]


# --- the note -------------------------------------------------------------------------------


def _write_mark(out: Output, sessions: Sequence[str]) -> None:
    out.write_bytes_atomic(REMOVING, json.dumps({"sessions": sorted(sessions)}).encode())


def pending_removal(out: Output) -> tuple[str, ...] | None:
    """The sessions of a removal under way (cut short: its note ``.removing``), or None."""
    return _read_mark(out)


def _read_mark(out: Output) -> tuple[str, ...] | None:
    try:
        data = out.read_bytes(out.path(REMOVING))
    except FileNotFoundError:
        return None
    try:
        return tuple(str(s) for s in json.loads(data)["sessions"])
    except (ValueError, KeyError, TypeError) as e:
        raise OutputError(
            f"{out.url}/{REMOVING}: the note of a removal under way cannot be read "
            f"({type(e).__name__}: {e}); run `reacture-convert remove` again with the same "
            "sessions after deleting it"
        ) from e


def _forget_mark(out: Output) -> None:
    if out.exists(REMOVING):
        out.remove_files([out.path(REMOVING)])


# --- the steps ------------------------------------------------------------------------------


def prepare_shards(out: Output, sessions: Collection[str]) -> PrunedSet | None:
    """Step 1: the shards without ``sessions``' samples, in staging; None when the shard set
    (if any) holds none of them."""
    index = read_index(out)
    wanted = set(sessions)
    if index is None or not (
        any(s.session in wanted for s in index.sessions)
        or any(wanted.intersection(s.sessions) for s in index.shards)
    ):
        return None
    reached("remove-shards")
    stage = out.path(_STAGE)
    if out.fs.exists(stage):
        out.fs.rm(stage, recursive=True)
    return prune_shards(out, index, wanted, stage)


def _publish(out: Output, pruned: PrunedSet | None) -> None:
    """Step 3: the new shards into ``wds/`` (listed by no index yet)."""
    reached("remove-publish")
    if pruned is None or not pruned.built:
        return
    folder = out.path(WDS_DIR)
    for where, shard in pruned.built:
        out.move(where, f"{folder}/{shard.url}")
    out.fsync(folder, folder=True)


def _delete_unlisted(out: Output, index: WdsIndex | None) -> None:
    """Every ``wds/*.tar`` (``*.tar.gz``) that ``index`` does not list (none without an
    index)."""
    if index is None:
        return
    listed = {s.url for s in index.shards}
    stray = [
        out.path(WDS_DIR, name)
        for name in sorted(out.list_names(out.path(WDS_DIR)))
        if is_shard_file(name) and name not in listed
    ]
    if stray:
        out.remove_files(stray)


def commit_removal(
    out: Output,
    catalog: Catalog,
    sessions: Sequence[str],
    entries: Iterable[CatalogEntry],
    guard: Callable[[], None],
) -> PrunedSet | None:
    """Steps 1-4: the new shards made and published, the note written, the ``removed`` rows
    ``entries`` committed to the catalog. Returns the pruned set for ``finish_removal``."""
    pruned = prepare_shards(out, sessions)
    reached("remove-mark")
    guard()
    _write_mark(out, sessions)
    _publish(out, pruned)
    reached("remove-commit")
    for entry in entries:
        catalog.record(entry)
    catalog.flush(final=True)  # one compaction: one atomic write of catalog.parquet
    return pruned


def _follow_stats(out: Output, sessions: Collection[str]) -> None:
    """``stats.json``, when there is one, computed again without ``sessions`` (deleted when
    no session it covered is left, or when it cannot be computed: a warning says so)."""
    if not out.exists(STATS):
        return
    from reacture_convert.read.stats import compute_stats, read_stats, write_stats

    try:
        old = read_stats(out)
        names = [s for s in (old.sessions if old is not None else ()) if s not in sessions]
        if old is not None and names:
            stats = compute_stats(out, names, out.storage_options, frames=old.frames is not None)
            write_stats(out, stats, out.storage_options)
            return
    except (OutputError, ValueError, KeyError, TypeError) as e:  # never blocks the removal
        log.warning(
            "%s: %s could not be computed again (%s: %s); it is deleted: run "
            "`reacture-convert stats` to write it",
            out.url,
            STATS,
            type(e).__name__,
            e,
        )
    out.remove_files([out.path(STATS)])


def finish_removal(
    out: Output,
    catalog: Catalog,
    sessions: Collection[str],
    pruned: PrunedSet | None,
    guard: Callable[[], None],
) -> None:
    """Steps 5-7, after the commit (``pruned``: from ``commit_removal``; None when rolling
    forward: made again from the shards, if the index still lists the sessions)."""
    if pruned is None:
        pruned = prepare_shards(out, sessions)
        _publish(out, pruned)
    reached("remove-index")
    guard()
    if pruned is not None:
        out.write_bytes_atomic(WDS_INDEX, pruned.index.to_json())
    reached("remove-delete")
    for session in sorted(sessions):
        for part in session_parts(session):
            out.discard(part)
    _delete_unlisted(out, read_index(out))
    reached("remove-cards")
    guard()
    write_card(out, catalog.view())
    index = read_index(out)
    if index is not None and not index.shards:
        out.discard(WDS_CARD)  # no shard left for the shards' card to describe
    _follow_stats(out, set(sessions))
    _forget_mark(out)
    out.clear_staging()


def settle_removal(
    out: Output,
    catalog: Catalog,
    guard: Callable[[], None],
    pending: tuple[str, ...] | None | Literal["unread"] = "unread",
) -> Settled | None:
    """What a killed removal left, settled by the next holder of the lock (see the module
    doc): rolled forward when its ``removed`` rows were committed, else rolled back. None
    when no removal was under way. ``pending``: ``pending_removal(out)`` when the caller has
    read it already (read here otherwise)."""
    sessions = _read_mark(out) if pending == "unread" else pending
    if sessions is None:
        return None
    committed = all(catalog.live(s) is None for s in sessions)
    if committed:
        finish_removal(out, catalog, sessions, None, guard)
        return Settled(sessions, "forward")
    guard()
    _delete_unlisted(out, read_index(out))
    _forget_mark(out)
    out.clear_staging()
    return Settled(sessions, "back")
