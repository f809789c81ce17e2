"""``remove``: take sessions out of a converted dataset for good (docs/output-layout.md,
"Removing sessions").

Sessions are chosen by name and/or by a filter over the catalog's live rows (``--where``,
``output.catalog.where``). Under OUT's lock, each one's Zarr group, rows and frames tables go,
every shard that held its samples is written again without them (the other samples byte for
byte as they were, in their order), ``wds/index.json``, the dataset cards and ``stats.json``
follow, and the catalog keeps a ``removed`` row per bundle: the reason, the time and the source
sha256s, so that a later ``convert`` of the same bytes skips it (``--readmit`` brings it back).
The order of the steps, and what a kill at each leaves, is ``run.removal``'s module doc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reacture_convert.errors import ConfigError, OutputError, UnknownNameError
from reacture_convert.output.catalog import CATALOG, LOG_DIR, Catalog
from reacture_convert.output.catalog.entry import entries_table
from reacture_convert.output.catalog.where import filter_table
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.run.removal import (
    Settled,
    commit_removal,
    finish_removal,
    removed_entries,
    settle_removal,
)
from reacture_convert.run.setup import new_run_id

__all__ = ["Match", "RemoveResult", "match_sessions", "remove_sessions"]


@dataclass(frozen=True)
class Match:
    """What a selection names: live ``sessions`` (with their frame counts), and the names
    given that are ``already`` removed."""

    sessions: tuple[str, ...]
    frames: tuple[int, ...]
    already: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoveResult:
    """What ``remove_sessions`` did (or, ``dry_run``, would do)."""

    out: str
    dry_run: bool
    sessions: tuple[str, ...]  # removed (dry run: would be)
    frames: int  # their frames
    reason: str
    already: tuple[str, ...] = ()  # named, but removed before
    shards_rewritten: int = 0  # shards that held their samples (written again, or dropped)
    settled: Settled | None = None  # a killed removal that was settled first

    def to_dict(self) -> dict[str, object]:
        return {
            "out": self.out,
            "dry_run": self.dry_run,
            "removed": list(self.sessions),
            "frames": self.frames,
            "reason": self.reason,
            "already_removed": list(self.already),
            "shards_rewritten": self.shards_rewritten,
            "settled": None
            if self.settled is None
            else {"sessions": list(self.settled.sessions), "rolled": self.settled.rolled},
        }


def match_sessions(catalog: Catalog, names: Sequence[str], where: str | None) -> Match:
    """The live sessions named or matched by ``where`` (over the live rows' columns). A name
    the catalog does not hold raises ``UnknownNameError``; one already removed is said."""
    live = [e for e in catalog.view() if e.status.is_live and e.session]
    frames = {e.session: e.n_frames or 0 for e in live if e.session}
    chosen: set[str] = set()
    already: list[str] = []
    for name in dict.fromkeys(names):
        if name in frames:
            chosen.add(name)
        elif catalog.removed(name, ("", None)) is not None:
            already.append(name)
        else:
            raise UnknownNameError(
                f"{name}: no converted session of that name in the catalog; see the sessions "
                "with `reacture-convert show OUT` (or select them with --where)"
            )
    if where is not None:
        table = filter_table(entries_table(live), where)
        chosen.update(s for s in table.column("session").to_pylist() if s)
    sessions = tuple(sorted(chosen))
    return Match(sessions, tuple(frames[s] for s in sessions), tuple(already))


def _check_dataset(out: Output) -> None:
    if not (out.exists(CATALOG) or out.exists(LOG_DIR)):
        raise OutputError(
            f"{out.url}: no {CATALOG} here: not a converted dataset, nothing to remove; give "
            "the --out folder (or URL) of a `reacture-convert convert` run"
        )


def remove_sessions(
    out: Output,
    names: Sequence[str] = (),
    *,
    where: str | None = None,
    reason: str,
    dry_run: bool = False,
    wait: bool = False,
) -> RemoveResult:
    """Remove the sessions ``names`` and those ``where`` matches from ``out`` (see the module
    doc); ``dry_run``: say which, change nothing (a killed removal is still settled first, as
    by any holder of the lock). Raises ``ConfigError`` for no selection, no reason or a bad
    filter, ``UnknownNameError`` for a name the catalog does not hold, ``OutputError`` when
    ``out`` is no dataset, ``LockedError`` when a run holds it."""
    if not names and where is None:
        raise ConfigError("name the sessions to remove, or select them with --where EXPR")
    if not reason.strip():
        raise ConfigError("say why the sessions are removed (--reason TEXT): it is kept")
    _check_dataset(out)
    with lock_output(out, wait=wait) as held:
        catalog = Catalog.load(out, guard=held.check)
        out.clear_staging()
        settled = settle_removal(out, catalog, held.check)
        done = (
            set(settled.sessions) if settled is not None and settled.rolled == "forward" else set()
        )
        match = match_sessions(catalog, [n for n in names if n not in done], where)
        if done & set(names):
            gone = (*sorted(done & set(names)), *match.already)
            match = Match(match.sessions, match.frames, gone)
        result = RemoveResult(
            out.url,
            dry_run,
            match.sessions,
            sum(match.frames),
            reason,
            match.already,
            settled=settled,
        )
        if dry_run or not match.sessions:
            return result
        run_id = new_run_id()
        entries = removed_entries(catalog, match.sessions, reason.strip(), run_id)
        pruned = commit_removal(out, catalog, match.sessions, entries, held.check)
        finish_removal(out, catalog, match.sessions, pruned, held.check)
    rewritten = len(pruned.built) + len(pruned.dropped) if pruned is not None else 0
    return RemoveResult(
        out.url,
        False,
        match.sessions,
        sum(match.frames),
        reason,
        match.already,
        shards_rewritten=rewritten,
        settled=settled,
    )
