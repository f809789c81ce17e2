"""``subset``: a new, independent dataset of some sessions of a converted one.

The sessions are chosen as for ``remove`` (names, ``--where`` over the catalog's live rows) and
``--split`` (``read.splits.split_of``: train, val or test by a hash of the name, as the readers
split). Under both datasets' locks, each session's Zarr group, rows and frames tables are copied
into NEW's staging and committed as a conversion commits them (``Output.commit``); their
samples are copied out of OUT's shards, byte for byte and in the set's order, into new shards of
NEW (rolling over at the set's shard size), then NEW's ``wds/index.json``; the catalog (the
sessions' rows as OUT holds them) and the dataset card come last, so NEW is a dataset only once
it is complete: a killed subset leaves a folder without a catalog, which the same command fills
again. OUT is only read. ``verify NEW`` passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.formats.wds.index import INDEX, WdsIndex, dataset_tag, read_index
from reacture_convert.output.catalog import CATALOG, LOG_DIR, Catalog, write_catalog
from reacture_convert.output.claim import check_out
from reacture_convert.output.layout import STAGING, WDS_DIR, session_parts
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.read.options import SPLITS
from reacture_convert.read.splits import split_of
from reacture_convert.run.removal import settle_removal
from reacture_convert.run.remove import match_sessions
from reacture_convert.writers.card import write_card
from reacture_convert.writers.webdataset import DEFAULT_SHARD_SIZE
from reacture_convert.writers.webdataset.prune import copy_samples

__all__ = ["SubsetResult", "subset_dataset"]

_COPY_BLOCK = 8 << 20


@dataclass(frozen=True)
class SubsetResult:
    """What ``subset_dataset`` wrote (or, ``dry_run``, would write)."""

    out: str
    new: str
    dry_run: bool
    sessions: tuple[str, ...]
    frames: int
    shards: int = 0
    samples: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "out": self.out,
            "new": self.new,
            "dry_run": self.dry_run,
            "sessions": list(self.sessions),
            "frames": self.frames,
            "shards": self.shards,
            "samples": self.samples,
        }


def _copy_file(src: Output, src_path: str, dst: Output, dst_path: str) -> None:
    with src.open_read(src_path) as f:
        new = dst.create(dst_path)
        try:
            while block := f.read(_COPY_BLOCK):
                new.write_pieces([memoryview(block)])
            new.sync()
        finally:
            new.close()


def _copy_tree(src: Output, rel: str, dst: Output, into: str) -> None:
    """The file or folder ``rel`` of ``src`` copied to ``into`` (a path on ``dst.fs``)."""
    root = src.path(rel)
    if not src.fs.isdir(root):
        dst.makedirs(into.rsplit("/", 1)[0])
        _copy_file(src, root, dst, into)
        return
    for path in sorted(src.fs.find(root)):
        target = into + "/" + path[len(root) :].lstrip("/")
        dst.makedirs(target.rsplit("/", 1)[0])
        _copy_file(src, path, dst, target)


def _choose(
    catalog: Catalog, names: Sequence[str], where: str | None, split: str | None
) -> tuple[tuple[str, ...], int]:
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if names or where is not None:
        match = match_sessions(catalog, names, where)
        if match.already:
            raise ConfigError(f"{', '.join(match.already)}: removed from the dataset")
        chosen = dict(zip(match.sessions, match.frames, strict=True))
    else:
        chosen = {
            e.session: e.n_frames or 0 for e in catalog.view() if e.status.is_live and e.session
        }
    if split is not None:
        chosen = {s: n for s, n in chosen.items() if split_of(s) == split}
    sessions = tuple(sorted(chosen))
    return sessions, sum(chosen[s] for s in sessions)


def _check_new(out: Output, new: Output) -> None:
    if out.url.rstrip("/") == new.url.rstrip("/"):
        raise ConfigError(f"{new.url}: NEW must be another place than OUT")
    check_out(new)
    if new.exists(CATALOG) or new.exists(LOG_DIR):
        raise ConfigError(
            f"{new.url} is a dataset already; give a new or empty folder (or prefix) for the subset"
        )


def subset_dataset(
    out: Output,
    new: Output,
    names: Sequence[str] = (),
    *,
    where: str | None = None,
    split: str | None = None,
    dry_run: bool = False,
    wait: bool = False,
) -> SubsetResult:
    """Write the sessions ``names``, those ``where`` matches (all, when neither is given), of
    ``split`` when given, from ``out`` into the new dataset ``new`` (see the module doc).
    Raises ``ConfigError`` for a bad selection or a ``new`` that is OUT, a dataset or holds other
    files; ``UnknownNameError`` for a name OUT does not hold; ``OutputError`` when OUT is no
    dataset or nothing is selected."""
    if not (out.exists(CATALOG) or out.exists(LOG_DIR)):
        raise OutputError(f"{out.url}: no {CATALOG} here: not a converted dataset")
    _check_new(out, new)
    with lock_output(out, wait=wait) as held:
        catalog = Catalog.load(out, guard=held.check)
        settle_removal(out, catalog, held.check)
        sessions, frames = _choose(catalog, names, where, split)
        if not sessions:
            raise OutputError(f"{out.url}: no session matches: no subset written")
        if dry_run:
            return SubsetResult(out.url, new.url, True, sessions, frames)
        with lock_output(new, wait=wait) as new_held:
            new.clear_staging()
            _copy_sessions(out, new, catalog, sessions)
            index = _copy_shards(out, new, sessions)
            new_held.check()
            rows = [e for e in catalog.view() if e.session in set(sessions) and e.status.is_live]
            write_catalog(new, rows)
            write_card(new, rows)
            new.clear_staging()
    return SubsetResult(
        out.url,
        new.url,
        False,
        sessions,
        frames,
        len(index.shards) if index is not None else 0,
        index.total_samples if index is not None else 0,
    )


def _copy_sessions(out: Output, new: Output, catalog: Catalog, sessions: Sequence[str]) -> None:
    for session in sessions:
        entry = catalog.live(session)
        parts = [p for p in session_parts(session) if entry is not None and p in entry.outputs]
        if not parts:
            continue  # a shards-only session: its samples are copied with the shards
        key = f"subset/{session}"
        for part in parts:
            _copy_tree(out, part, new, f"{new.staging(key)}/{part}")
        new.sync_staged(key, parts)
        new.commit(key, parts)


def _copy_shards(out: Output, new: Output, sessions: Sequence[str]) -> WdsIndex | None:
    index = read_index(out)
    if index is None or not any(s.session in set(sessions) for s in index.sessions):
        return None
    size = index.shard_size or DEFAULT_SHARD_SIZE
    # the tag a conversion of these sessions into a new set gives (what verify derives again)
    wanted = set(sessions)
    digests = sorted((s.session, s.sha256) for s in index.sessions if s.session in wanted)
    effective = replace(index, shard_size=size, shard_count=None).effective()
    tag = dataset_tag(digests, effective, None)
    stage = new.path(STAGING, ".wds-subset")
    copied = copy_samples(out, index, sessions, new, stage, size, tag)
    folder = new.path(WDS_DIR)
    new.makedirs(folder)
    for where, shard in copied.built:
        new.move(where, f"{folder}/{shard.url}")
    new.fsync(folder, folder=True)
    new.write_bytes_atomic(INDEX, copied.index.to_json())
    return copied.index
