"""The shard writer (the driver): session parts in, ``wds/<name>-<tag>-NNNNNN.tar`` out.

``write_shards`` makes a new shard set of the sessions given; ``append_shards`` adds sessions
to an existing set as new shards, leaving the old ones as they are. Both follow the ``plan``
(order, shuffling, rollover). A planned shard that is exactly one session part is moved into
place as it is; any other is copied together from the parts' byte ranges (read from the page
cache, written in large blocks, hashed on the way). Tar members are never parsed or re-encoded.

Reproducible bytes. The parts' bytes and the plan depend only on the bundles and the options,
so the same inputs and options give byte-identical shards and ``index.json``, however the
sessions were scheduled. The ``<tag>`` in shard names is the first 8 hex digits of a sha256 over
the sessions, their samples' sha256 and the options (and, for an append, the tag before it), so
another dataset never reuses a shard name.

Visibility. New shards are completed (on a local disk: fsynced) before any is moved into
``wds/`` (on S3 they are written straight to their names there: an object appears whole or not
at all, and no index lists it yet); ``wds/index.json`` is written last, atomically. Then any
``wds/*.tar`` that the new index does not list is deleted, so a re-run leaves no orphans and
no duplicates. An append deletes nothing a reader of the old index needs: the old shards
stay, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import IO

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.formats.wds.compression import (
    RunWriter,
    plain_points,
    shard_suffix,
    shard_writer,
)
from reacture_convert.formats.wds.index import (
    INDEX,
    WdsIndex,
    WdsSession,
    WdsShard,
    dataset_tag,
    read_index,
)
from reacture_convert.formats.wds.tar import end_of_archive
from reacture_convert.output.layout import STAGING, WDS_DIR, WDS_STAGE, is_shard_file, shard_name
from reacture_convert.output.lease import is_s3
from reacture_convert.output.storage import Output
from reacture_convert.phases import reached
from reacture_convert.writers.webdataset.options import WdsOptions
from reacture_convert.writers.webdataset.plan import PlannedShard, plan_shards
from reacture_convert.writers.webdataset.prune import next_number
from reacture_convert.writers.webdataset.samples import (
    SessionPart,
    SessionTar,
    describe_session_tar,
)
from reacture_convert.writers.webdataset.scratch import parts_output
from reacture_convert.writers.webdataset.sink import BLOCK_BYTES, HashedFile

__all__ = ["append_shards", "write_shards"]

DEFAULT_OPTIONS = WdsOptions()


def _dataset_tag(tars: Sequence[SessionTar], options: WdsOptions, previous: str | None) -> str:
    return dataset_tag([(st.session, st.sha256) for st in tars], options.effective(), previous)


# --------------------------------------------------------------------------------------------
# building shards


class _Parts:
    """Open part files for reading, a few at a time."""

    def __init__(self, out: Output, keep: int = 32) -> None:
        self.out, self.keep = out, keep
        self.open: dict[str, IO[bytes]] = {}

    def read(
        self, part: SessionPart, offset: int, length: int, write: Callable[[bytes], object]
    ) -> None:
        f = self.open.pop(part.path, None)
        if f is None:
            if len(self.open) >= self.keep:
                self.open.pop(next(iter(self.open))).close()
            f = self.out.open_read(part.path)
        self.open[part.path] = f  # most recently used last
        f.seek(offset)
        while length > 0:
            data = f.read(min(length, BLOCK_BYTES))
            if not data:
                raise OutputError(
                    f"{part.path}: ends before byte {offset + length}; the session part changed "
                    "while the shards were written (re-run)"
                )
            write(data)
            length -= len(data)

    def close(self) -> None:
        for f in self.open.values():
            f.close()
        self.open.clear()


def _check_parts(out: Output, tars: Sequence[SessionTar]) -> None:
    folders = {p.path.rsplit("/", 1)[0] for st in tars for p in st.parts}
    sizes = {f"{f}/{name}": n for f in sorted(folders) for name, n in out.file_sizes(f).items()}
    for st in tars:
        for part in st.parts:
            size = sizes.get(part.path)
            if size != part.bytes:
                raise OutputError(
                    f"{part.path}: holds {size} bytes, expected {part.bytes}; the session part "
                    "changed while the shards were written (re-run)"
                )


def _copy_samples(parts: _Parts, shard: PlannedShard, writer: RunWriter) -> None:
    """The planned shard's samples from the parts into ``writer``, sample by sample (a
    compressed shard is flushed after every run of them)."""
    sizes = iter(shard.sizes)
    for r in shard.ranges:
        offset, end = r.offset, r.offset + r.length
        while offset < end:
            size = next(sizes)
            parts.read(r.part, offset, size, writer.write)
            writer.end_sample()
            offset += size


def _build(
    out: Output,
    stage: str,
    planned: Sequence[PlannedShard],
    urls: Sequence[str],
    options: WdsOptions = DEFAULT_OPTIONS,
) -> list[tuple[str, WdsShard]]:
    """Complete every planned shard; return (where it is now, what it is) for each. Unless
    shards are compressed, a shard that is a whole part is taken as it is: in OUT's staging it
    stays where it is (made durable) to be moved; in ``options.parts_dir`` it is sent to OUT.
    Any other is copied together from the parts. What is written goes into ``stage``, or on S3
    straight to its name in ``wds/`` (an object appears whole or not at all, and the index,
    written after, is what makes it part of the set)."""
    built: list[tuple[str, WdsShard]] = []
    parts = _Parts(parts_output(out, options))
    staging = out.path(STAGING) + "/"
    try:
        for shard, url in zip(planned, urls, strict=True):
            whole = shard.whole_part if options.compression == "none" else None
            runs = plain_points(shard.sizes)
            if whole is not None and options.parts_dir is None and whole.path.startswith(staging):
                out.fsync(whole.path)
                built.append(
                    (
                        whole.path,
                        WdsShard(
                            url, shard.samples, whole.bytes, whole.sha256, shard.sessions, runs
                        ),
                    )
                )
                continue
            where = out.path(WDS_DIR, url) if is_s3(out) else f"{stage}/{url}"
            if whole is not None and options.parts_dir is not None:
                out.send_file(whole.path, where)  # hashed as it was written
                nbytes, sha = whole.bytes, whole.sha256
            else:
                nbytes, sha, runs = _write(out, parts, shard, where, options, runs)
            built.append((where, WdsShard(url, shard.samples, nbytes, sha, shard.sessions, runs)))
    finally:
        parts.close()
    return built


def _write(
    out: Output,
    parts: _Parts,
    shard: PlannedShard,
    where: str,
    options: WdsOptions,
    runs: tuple[tuple[int, int], ...],
) -> tuple[int, str, tuple[tuple[int, int], ...]]:
    """The planned shard copied together from the parts into ``where``, hashed on the way
    (compressed, if asked); returns its bytes, sha256 and runs."""
    sink = HashedFile(out, where)
    try:
        if options.compression != "none":
            writer = shard_writer(sink.write, options.compression, options.compression_level)
            _copy_samples(parts, shard, writer)
            writer.finish(end_of_archive(shard.content))
            runs = tuple(writer.points)
        else:
            for r in shard.ranges:
                parts.read(r.part, r.offset, r.length, sink.write)
            sink.write(end_of_archive(shard.content))
    except BaseException:
        sink.abort()
        raise
    nbytes, sha = sink.close(fsync=True)
    return nbytes, sha, runs


# --------------------------------------------------------------------------------------------
# publishing


def _publish(out: Output, built: Sequence[tuple[str, WdsShard]]) -> None:
    """Move every complete shard into ``wds/`` (those written there settled)."""
    final_dir = out.path(WDS_DIR)
    out.makedirs(final_dir)
    moves = [(where, f"{final_dir}/{shard.url}") for where, shard in built]
    for where, final in moves:
        if where == final:
            out.fsync(final)
    out.move_all([(where, final) for where, final in moves if where != final])
    out.fsync(final_dir, folder=True)


def _remove_orphans(out: Output, keep: Iterable[str]) -> None:
    """Delete every ``wds/*.tar`` (and ``*.tar.gz``) that the index does not list."""
    wanted = set(keep)
    folder = out.path(WDS_DIR)
    orphans = [n for n in sorted(out.file_sizes(folder)) if is_shard_file(n) and n not in wanted]
    out.remove_files([f"{folder}/{name}" for name in orphans])


def _drop_stage(out: Output, stage: str) -> None:
    """Remove the shard staging folder, and ``.staging/.wds`` too when nothing else is in it
    (an object store has no empty folders to remove)."""
    out.remove_tree(stage)
    out.remove_empty_dir(out.staging(WDS_STAGE))


def _session_tars(
    out: Output, session_tars: Sequence[SessionTar | tuple[str, str]], encoding: str
) -> list[SessionTar]:
    tars = [
        st if isinstance(st, SessionTar) else describe_session_tar(out, st[0], st[1], encoding)
        for st in session_tars
    ]
    tars.sort(key=lambda st: st.session)
    for a, b in zip(tars, tars[1:], strict=False):
        if a.session == b.session:
            raise ConfigError(f"session {a.session!r} is given twice")
    _check_parts(out, tars)
    return tars


def _commit(
    out: Output,
    tars: Sequence[SessionTar],
    options: WdsOptions,
    tag: str,
    before: WdsIndex | None,
) -> WdsIndex:
    """Write the shards of ``tars`` (after ``before``'s, numbered on), publish them, then the
    index of the whole set; delete what it does not list."""
    planned = plan_shards(tars, options)
    first = next_number(before) if before is not None else 0
    suffix = shard_suffix(options.compression)
    urls = [shard_name(options.name, tag, first + k, suffix) for k in range(len(planned))]
    stage = f"{out.staging(WDS_STAGE)}/shards"
    staged = not is_s3(out)  # (on S3 shards are written straight to their names: _build)
    if staged:
        _drop_stage(out, stage)
        out.makedirs(stage)
    try:
        reached("shard-merge")
        built = _build(out, stage, planned, urls, options)
        _publish(out, built)
    except BaseException:
        if staged:
            _drop_stage(out, stage)
        raise
    eff = options.effective()
    old_sessions = before.sessions if before is not None else ()
    index = WdsIndex(
        name=options.name,
        encoding=options.encoding,
        tag=tag,
        shuffle_seed=eff["shuffle_seed"],
        shuffle_buffer=eff["shuffle_buffer"],
        shuffle_streams=eff["shuffle_streams"],
        shard_size=eff["shard_size"],
        shard_count=eff["shard_count"],
        sessions=tuple(
            sorted(
                (*old_sessions, *(WdsSession(st.session, st.samples, st.sha256) for st in tars)),
                key=lambda s: s.session,
            )
        ),
        total_samples=sum(s.samples for s in old_sessions) + sum(st.samples for st in tars),
        shards=(*(before.shards if before is not None else ()), *(s for _, s in built)),
        pruned=before is not None and before.pruned,
        compression=options.compression,
        compression_level=eff.get("compression_level"),
    )
    reached("index")
    out.write_bytes_atomic(INDEX, index.to_json())
    _remove_orphans(out, (s.url for s in index.shards))
    if staged:
        _drop_stage(out, stage)
    return index


def write_shards(
    out: Output,
    session_tars: Sequence[SessionTar | tuple[str, str]],
    options: WdsOptions = DEFAULT_OPTIONS,
) -> WdsIndex:
    """Make ``out/wds/`` hold exactly these sessions' samples, and write its index (with
    ``options.append``: ``append_shards``).

    ``session_tars`` are ``SessionTar`` values from ``SessionSamples.finish`` or ``(session, path
    on out.fs)`` pairs of tars as ``write_session_samples`` writes them (read once up front);
    they are taken in session-name order whatever order they come in. Returns the index that
    was written. Raises ConfigError for options that cannot be met (more shards than samples)
    and OutputError when a session tar is not what the session step writes."""
    if options.append:
        return append_shards(out, session_tars, options)
    tars = _session_tars(parts_output(out, options), session_tars, options.encoding)
    tag = _dataset_tag(tars, options, None)
    before = read_index(out)
    if before is not None and _already_written(out, before, tars, tag):
        _remove_orphans(out, (s.url for s in before.shards))
        return before  # the same bytes again: written nothing (a re-run of unchanged sessions)
    return _commit(out, tars, options, tag, None)


def _already_written(out: Output, index: WdsIndex, tars: Sequence[SessionTar], tag: str) -> bool:
    """``index`` is the shard set ``tars`` would give (its tag covers the sessions, their
    samples' sha256 and the options; the bytes are reproducible), and its shards are there."""
    if index.tag != tag or [(s.session, s.samples, s.sha256) for s in index.sessions] != [
        (st.session, st.samples, st.sha256) for st in tars
    ]:
        return False
    sizes = out.file_sizes(out.path(WDS_DIR))
    return all(sizes.get(s.url) == s.bytes for s in index.shards)


def _check_appendable(before: WdsIndex, options: WdsOptions) -> None:
    eff = options.effective()
    had = before.effective()
    for k in sorted(eff.keys() - had.keys()):
        had[k] = getattr(before, k)
    for k in sorted(had.keys() - eff.keys()):
        eff[k] = getattr(options, k)
    if before.shard_count is not None or options.shard_count is not None:
        raise ConfigError(
            f"{INDEX}: a shard set split into an exact number of shards (--shard-count) cannot "
            "grow; convert all sessions again without --append"
        )
    differ = [f"{k} {had[k]!r} (asked: {eff[k]!r})" for k in had if had[k] != eff[k]]
    if differ:
        raise ConfigError(
            f"{INDEX}: the shard set was written with {', '.join(differ)}; append with the "
            "options it was written with, or convert all sessions again without --append"
        )


def append_shards(
    out: Output,
    session_tars: Sequence[SessionTar | tuple[str, str]],
    options: WdsOptions = DEFAULT_OPTIONS,
) -> WdsIndex:
    """Add the sessions that ``out/wds/index.json`` does not list yet as new shards after the
    old ones, and commit the new index atomically; the old shards stay byte-identical, so a
    reader of the old index keeps working. A session the set already holds with the same
    samples is left as it is; with other samples it is refused (OutputError: convert all
    sessions again without --append). Without an index this is ``write_shards``. The options
    must be those the set was written with (ConfigError). Returns the index written (or the
    old one when there is nothing to add)."""
    before = read_index(out)
    if before is None:
        return write_shards(out, session_tars, replace(options, append=False))
    _check_appendable(before, options)
    held = {s.session: s for s in before.sessions}
    tars = _session_tars(parts_output(out, options), session_tars, options.encoding)
    for st in tars:
        old = held.get(st.session)
        if old is not None and (old.sha256, old.samples) != (st.sha256, st.samples):
            raise OutputError(
                f"{INDEX}: session {st.session!r} is already in the shard set with other samples "
                "(its bundle was converted again since); an append cannot replace shards: "
                "convert all sessions again without --append"
            )
    new = [st for st in tars if st.session not in held]
    if not new:
        return before
    return _commit(out, new, options, _dataset_tag(new, options, before.tag), before)
