"""Take sessions out of a shard set: every shard that holds samples of them is written again
without those samples, the others stay as they are (``reacture-convert remove``, ``subset``).

A pruned shard is its old members minus the removed ones, in the same order, then the end of
the archive: every kept sample's bytes are the bytes it had. That is proved as the shard is
read: the members are parsed (``formats.wds.tar``) and encoded again with this package's
reproducible headers, and the whole old shard encoded so must hash to the sha256 that
``index.json`` gives it (a shard that was changed, or not written by this package, is refused
before anything is written).

A pruned shard gets a new name, ``<name>-<tag>-NNNNNN.tar`` with the set's new tag (from the
old tag and the sessions taken out) and the old shard's number, so the old index and its
shards stay readable until the new index replaces it; a shard left with no sample is dropped
(its number is then missing from the set). The caller publishes the new shards, writes the new
index (``PrunedSet.index``) and deletes what it no longer lists.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any, cast

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.compression import (
    DEFAULT_LEVEL,
    GzipMembers,
    RunWriter,
    shard_writer,
)
from reacture_convert.formats.wds.index import WdsIndex, WdsShard
from reacture_convert.formats.wds.tar import (
    end_of_archive,
    iter_tar_members,
    member_header,
    member_size,
    padding,
    tar_size,
)
from reacture_convert.output.layout import WDS_DIR, shard_name
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset.sink import HashedFile

__all__ = [
    "PrunedSet",
    "copy_samples",
    "next_number",
    "prune_shards",
    "pruned_tag",
    "shard_samples",
]

_NUMBER = re.compile(r"-(\d{6})\.tar(\.gz)?$")


@dataclass(frozen=True)
class PrunedSet:
    """The new index, the new shards written (``(path where it is now, shard)``), and the
    old shards left with no sample (dropped from the set)."""

    index: WdsIndex
    built: tuple[tuple[str, WdsShard], ...]
    dropped: tuple[str, ...] = ()


def pruned_tag(index: WdsIndex, sessions: Collection[str]) -> str:
    """The tag of ``index``'s set once ``sessions`` are taken out (8 hex digits)."""
    doc = {"after": index.tag, "removed": sorted(sessions)}
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()[:8]


def _session_of(key: str) -> str:
    return key.split("/", 1)[0]


def shard_samples(
    out: Output, shard: WdsShard, index: WdsIndex | None = None
) -> Iterator[tuple[str, bytes]]:
    """``(session, bytes)`` of each sample of ``wds/<shard.url>``, in order: its members as
    they are in the (decompressed) shard. ``OutputError`` when the shard, encoded again member
    by member (and compressed again as ``index`` says its set is), is not the shard
    ``index.json`` describes (changed, damaged, or not written here)."""
    label = f"{WDS_DIR}/{shard.url}"
    whole = hashlib.sha256()
    again = _writer(whole.update, index)
    content = 0
    key: str | None = None
    pieces: list[bytes] = []
    with out.open_read(out.path(WDS_DIR, shard.url), shard.bytes) as raw:
        f = _decompressed(raw, label, index)
        for name, data in iter_tar_members(f, label):
            member = member_header(name, len(data)) + data + padding(len(data))
            content += member_size(len(data))
            base = name.rpartition(".")[0]
            if base != key and key is not None:
                again.end_sample()
                yield _session_of(key), b"".join(pieces)
                pieces = []
            key = base
            again.write(member)
            pieces.append(member)
        if isinstance(f, GzipMembers):
            f.drain()
    if key is not None:
        again.end_sample()
        again.finish(end_of_archive(content))
    runs_known = bool(shard.runs) or isinstance(f, GzipMembers)  # a plain set's may be unlisted
    if (
        key is None
        or whole.hexdigest() != shard.sha256
        or (runs_known and tuple(again.points) != shard.runs)
    ):
        raise OutputError(
            f"{label}: its members do not make the shard index.json describes (sha256 "
            f"{shard.sha256[:12]}...): it was changed or not written by reacture-convert; "
            "nothing was changed (check it with `reacture-convert verify`)"
        )
    if key is not None:
        yield _session_of(key), b"".join(pieces)


def _writer(write: Callable[[Any], Any], index: WdsIndex | None) -> RunWriter:
    """The writer of a shard of ``index``'s set (compressed as the set is)."""
    if index is None or index.compression == "none":
        return shard_writer(write, "none")
    return shard_writer(write, index.compression, index.compression_level or DEFAULT_LEVEL)


def _decompressed(raw: IO[bytes], label: str, index: WdsIndex | None) -> IO[bytes]:
    if index is None or index.compression == "none":
        return raw
    return cast(IO[bytes], GzipMembers(raw, label))


def next_number(index: WdsIndex) -> int:
    """The number the next shard appended to ``index``'s set gets: after its highest (a
    pruned set's numbers have gaps)."""
    return 1 + max((_number(s, k) for k, s in enumerate(index.shards)), default=-1)


def _number(shard: WdsShard, position: int) -> int:
    found = _NUMBER.search(shard.url)
    return int(found.group(1)) if found else position


def _prune_one(
    out: Output, index: WdsIndex, shard: WdsShard, drop: Collection[str], where: str, url: str
) -> WdsShard | None:
    """``shard`` without the samples of ``drop``, written at ``where`` (fsynced); None when
    none is left (nothing stays written)."""
    sink = HashedFile(out, where)
    writer = _writer(sink.write, index)
    samples = content = 0
    sessions: set[str] = set()
    try:
        for session, data in shard_samples(out, shard, index):
            if session in drop:
                continue
            writer.write(data)
            writer.end_sample()
            samples += 1
            content += len(data)
            sessions.add(session)
        writer.finish(end_of_archive(content))
    except BaseException:
        sink.abort()
        raise
    nbytes, sha = sink.close(fsync=True)
    if samples == 0:
        out.remove_files([where])
        return None
    return WdsShard(url, samples, nbytes, sha, tuple(sorted(sessions)), tuple(writer.points))


def prune_shards(out: Output, index: WdsIndex, sessions: Collection[str], stage: str) -> PrunedSet:
    """The shards of ``index`` that hold samples of ``sessions``, written again without them
    into the folder ``stage`` (a path on ``out.fs``, made here); the index of the set they make
    with the untouched shards (see the module doc)."""
    drop = set(sessions)
    tag = pruned_tag(index, drop)
    taken = {s.url for s in index.shards}
    out.makedirs(stage)
    shards: list[WdsShard] = []
    built: list[tuple[str, WdsShard]] = []
    dropped: list[str] = []
    for position, shard in enumerate(index.shards):
        if not drop.intersection(shard.sessions):
            shards.append(shard)
            continue
        url = shard_name(index.name, tag, _number(shard, position), index.suffix)
        if url in taken:
            raise OutputError(
                f"{WDS_DIR}/{url}: a shard of the set already has the name its pruned copy "
                "would get; rewrite the shard set (convert again with the wds format)"
            )
        where = f"{stage}/{url}"
        new = _prune_one(out, index, shard, drop, where, url)
        if new is None:
            dropped.append(shard.url)
        else:
            shards.append(new)
            built.append((where, new))
    kept = tuple(s for s in index.sessions if s.session not in drop)
    new_index = replace(
        index,
        tag=tag,
        pruned=True,
        sessions=kept,
        total_samples=sum(s.samples for s in shards),
        shards=tuple(shards),
    )
    return PrunedSet(new_index, tuple(built), tuple(dropped))


def copy_samples(
    src: Output,
    index: WdsIndex,
    keep: Collection[str],
    dst: Output,
    stage: str,
    shard_size: int,
    tag: str,
) -> PrunedSet:
    """The samples of ``keep`` in ``src``'s shards, in the set's order and byte for byte, as
    new shards of ``dst`` (written into ``stage``, a path on ``dst.fs``, fsynced): a shard
    closes before the sample that would take it past ``shard_size``. Named
    ``<name>-<tag>-NNNNNN.tar`` from 000000; the index of that set (``subset``)."""
    wanted = set(keep)
    dst.makedirs(stage)
    built: list[tuple[str, WdsShard]] = []
    current: tuple[HashedFile, RunWriter, str, str] | None = None
    samples = content = 0
    sessions: set[str] = set()

    def close() -> None:
        nonlocal current, samples, content
        assert current is not None
        sink, writer, where, url = current
        writer.finish(end_of_archive(content))
        nbytes, sha = sink.close(fsync=True)
        shard = WdsShard(url, samples, nbytes, sha, tuple(sorted(sessions)), tuple(writer.points))
        built.append((where, shard))
        current, samples, content = None, 0, 0
        sessions.clear()

    try:
        for shard in index.shards:
            if not wanted.intersection(shard.sessions):
                continue
            for session, data in shard_samples(src, shard, index):
                if session not in wanted:
                    continue
                if current is not None and tar_size(content + len(data)) > shard_size:
                    close()
                if current is None:
                    url = shard_name(index.name, tag, len(built), index.suffix)
                    sink = HashedFile(dst, f"{stage}/{url}")
                    current = (sink, _writer(sink.write, index), f"{stage}/{url}", url)
                current[1].write(data)
                current[1].end_sample()
                samples += 1
                content += len(data)
                sessions.add(session)
        if current is not None:
            close()
    except BaseException:
        if current is not None:
            current[0].abort()
        raise
    shards = tuple(s for _, s in built)
    new_index = replace(
        index,
        tag=tag,
        shard_size=shard_size,
        shard_count=None,
        pruned=False,  # a new set: numbered from 0, one tag
        sessions=tuple(s for s in index.sessions if s.session in wanted),
        total_samples=sum(s.samples for s in shards),
        shards=shards,
    )
    return PrunedSet(new_index, tuple(built))
