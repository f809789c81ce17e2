"""Step 2, the merge (the driver): session sample tars in, ``wds/<name>-<tag>-NNNNNN.tar`` out.

``write_shards`` reads the session tars sequentially (tarfile stream mode). Shards span
sessions. Without a shuffle seed samples come in session-name order, then frame order. With a
seed, the sessions' streams are interleaved pseudo-randomly (the next sample comes from a
session picked with a probability proportional to its remaining samples, at most
``shuffle_streams`` sessions open at a time, in a seeded order) and then pass a shuffle buffer
of ``shuffle_buffer`` samples. No session comes in a long run, and memory stays bounded. Shards
roll over by ``shard_size`` or ``shard_count`` (see ``options``).

Reproducible bytes. Samples are copied member for member with fixed headers, and the order
depends only on the session tars and the options, so the same inputs and options give
byte-identical shards and ``index.json``. The ``<tag>`` in shard names is the first 8 hex
digits of a sha256 over the sessions, their session tars' sha256s and the options, so another
dataset never reuses a shard name.

Visibility. Shards are written to ``OUT/.staging/.wds/shards/`` and moved into ``wds/`` only
once every shard is complete (on a local disk: fsync, then ``os.replace``). ``wds/index.json``
is written last, atomically. Then any ``wds/*.tar`` that the new index does not list is deleted,
so a re-run leaves no orphans and no duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TypeVar, cast

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.layout import WDS_DIR
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset.index import (
    FORMAT,
    INDEX,
    VERSION,
    WdsIndex,
    WdsSession,
    WdsShard,
)
from reacture_convert.writers.webdataset.options import WdsOptions
from reacture_convert.writers.webdataset.samples import (
    Sample,
    SessionTar,
    describe_session_tar,
    read_session_tar,
)
from reacture_convert.writers.webdataset.tar import HashingWriter, open_tar_writer, tar_size

__all__ = ["shuffle_buffer", "write_shards"]

# Bumped whenever the bytes written for the same inputs change; part of the shard-name tag.
LAYOUT = 2
_STAGE = ".wds"  # session names never contain "." so this cannot clash
DEFAULT_OPTIONS = WdsOptions()
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# ordering


def _iter_session(out: Output, st: SessionTar, encoding: str) -> Iterator[Sample]:
    """Stream one session tar's samples; on exhaustion, check its count and sha256."""
    got = yield from read_session_tar(out, st.session, st.path, encoding)
    if got.samples != st.samples or got.sha256 != st.sha256:
        raise OutputError(
            f"{st.path}: holds {got.samples} samples with sha256 {got.sha256[:12]}..., expected "
            f"{st.samples} with {st.sha256[:12]}...; it changed while the shards were written "
            "(re-run)"
        )


def _sequential(out: Output, tars: Sequence[SessionTar], encoding: str) -> Iterator[Sample]:
    for st in tars:
        yield from _iter_session(out, st, encoding)


def _interleave(
    out: Output, tars: Sequence[SessionTar], encoding: str, rng: random.Random, streams: int
) -> Iterator[Sample]:
    """Seeded interleave: at most ``streams`` sessions open (joining in a seeded order); each
    sample comes from an open session picked with probability proportional to its remaining
    samples, so every session spreads over the whole stretch it is open for."""
    waiting = [st for st in tars if st.samples > 0]
    rng.shuffle(waiting)
    waiting.reverse()  # pop() from the end takes them in the shuffled order
    active: list[tuple[SessionTar, Iterator[Sample]]] = []
    remaining: list[int] = []
    while waiting or active:
        while waiting and len(active) < streams:
            st = waiting.pop()
            active.append((st, _iter_session(out, st, encoding)))
            remaining.append(st.samples)
        pick = rng.randrange(sum(remaining))
        k = 0
        while pick >= remaining[k]:
            pick -= remaining[k]
            k += 1
        st, it = active[k]
        sample = next(it, None)
        if sample is None:
            raise OutputError(f"{st.path}: ended before its {st.samples} samples (re-run)")
        yield sample
        remaining[k] -= 1
        if remaining[k] == 0:
            # running the stream to its end runs its count and sha256 check
            if next(it, None) is not None:
                raise OutputError(f"{st.path}: holds more than {st.samples} samples (re-run)")
            del active[k], remaining[k]


def shuffle_buffer(samples: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """A bounded shuffle: keep ``size`` samples, emit a random one as each new one arrives."""
    buf: list[T] = []
    for s in samples:
        if len(buf) < size:
            buf.append(s)
            continue
        k = rng.randrange(size)
        buf[k], s = s, buf[k]
        yield s
    rng.shuffle(buf)
    yield from buf


def _ordered(out: Output, tars: Sequence[SessionTar], options: WdsOptions) -> Iterator[Sample]:
    if options.shuffle_seed is None:
        return _sequential(out, tars, options.encoding)
    rng = random.Random(options.shuffle_seed)
    mixed = _interleave(out, tars, options.encoding, rng, options.shuffle_streams)
    return shuffle_buffer(mixed, options.shuffle_buffer, rng)


# --------------------------------------------------------------------------------------------
# writing shards


def _dataset_tag(tars: Sequence[SessionTar], options: WdsOptions) -> str:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "layout": LAYOUT,
        "sessions": [[st.session, st.sha256] for st in tars],
        "options": options.effective(),
    }
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()[:8]


def _count_plan(total: int, count: int) -> list[int]:
    """Samples per shard for ``count`` shards: as even as possible, the larger ones first."""
    if count > total:
        raise ConfigError(
            f"shard count {count} (--shard-count, [wds] shard_count) asks for more shards than "
            f"there are samples ({total}); ask for at most that many shards"
        )
    base, extra = divmod(total, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


class _ShardSink:
    """One staged shard being written: counts, hashes and knows which sessions it holds."""

    def __init__(self, out: Output, path: str) -> None:
        self.out = out
        self.path = path
        self.file: IO[bytes] = open(path, "wb") if out.is_local else out.fs.open(path, "wb")
        self.writer = HashingWriter(self.file)
        self.tar = open_tar_writer(cast(IO[bytes], self.writer))
        self.content = 0
        self.samples = 0
        self.sessions: set[str] = set()

    def add(self, sample: Sample) -> None:
        sample.write(self.tar)
        self.content += sample.size
        self.samples += 1
        self.sessions.add(sample.session)

    def close(self, url: str) -> WdsShard:
        self.tar.close()
        self.file.flush()
        if self.out.is_local:
            os.fsync(self.file.fileno())
        self.file.close()
        assert self.writer.count == tar_size(self.content), "tar size accounting is off"
        return WdsShard(
            url,
            self.samples,
            self.writer.count,
            self.writer.hash.hexdigest(),
            tuple(sorted(self.sessions)),
        )

    def abort(self) -> None:
        """Give up on this shard: close everything and delete the partial file."""
        try:
            self.tar.close()
        finally:
            self.file.close()
            self.out.fs.rm(self.path)


def _write_staged(
    out: Output,
    stage: str,
    samples: Iterator[Sample],
    tag: str,
    options: WdsOptions,
    total: int,
) -> list[WdsShard]:
    """Write the shards into ``stage``; each one rolls over by count plan or size target."""
    plan = _count_plan(total, options.shard_count) if options.shard_count is not None else None
    shards: list[WdsShard] = []
    sink: _ShardSink | None = None

    def url(k: int) -> str:
        return f"{options.name}-{tag}-{k:06d}.tar"

    try:
        for sample in samples:
            if sink is not None:
                full = (
                    sink.samples >= plan[len(shards)]
                    if plan is not None
                    else tar_size(sink.content + sample.size) > options.shard_size
                )
                if full:
                    shards.append(sink.close(url(len(shards))))
                    sink = None
            if sink is None:
                sink = _ShardSink(out, f"{stage}/{url(len(shards))}")
            sink.add(sample)
        if sink is not None:
            shards.append(sink.close(url(len(shards))))
            sink = None
    finally:
        if sink is not None:
            sink.abort()
    return shards


# --------------------------------------------------------------------------------------------
# publishing


def _publish(out: Output, stage: str, shards: Sequence[WdsShard]) -> None:
    """Move every complete staged shard into ``wds/``."""
    final_dir = out.path(WDS_DIR)
    out.fs.makedirs(final_dir, exist_ok=True)
    for shard in shards:
        src, dst = f"{stage}/{shard.url}", f"{final_dir}/{shard.url}"
        if out.is_local:
            os.replace(src, dst)
        else:
            out.fs.mv(src, dst)
    if out.is_local:
        fd = os.open(final_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_orphans(out: Output, keep: Iterable[str]) -> None:
    """Delete every ``wds/*.tar`` that the index does not list."""
    wanted = set(keep)
    folder = out.path(WDS_DIR)
    if not out.fs.exists(folder):
        return
    for entry in sorted(out.fs.ls(folder, detail=True), key=lambda e: str(e["name"])):
        name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "file" and name.endswith(".tar") and name not in wanted:
            out.fs.rm(entry["name"])


def _drop_stage(out: Output, stage: str) -> None:
    """Remove the shard staging folder, and ``.staging/.wds`` too when nothing else is in it."""
    fs = out.fs
    if fs.exists(stage):
        fs.rm(stage, recursive=True)
    parent = out.staging(_STAGE)
    if fs.exists(parent) and not fs.ls(parent):
        fs.rmdir(parent)


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
            raise ConfigError(f"session {a.session!r} is given twice ({a.path}, {b.path})")
    return tars


def write_shards(
    out: Output,
    session_tars: Sequence[SessionTar | tuple[str, str]],
    options: WdsOptions = DEFAULT_OPTIONS,
) -> WdsIndex:
    """Merge session sample tars into the shards of ``out/wds/`` and write its index.

    ``session_tars`` are ``(session, path on out.fs)`` pairs (read once more up front for their
    counts and hashes) or ``SessionTar`` values from ``write_session_tar``; they are taken in
    session-name order whatever order they come in. Returns the index that was written.
    Raises ConfigError for options that cannot be met (more shards than samples) and
    OutputError when a session tar is not what step 1 writes.
    """
    tars = _session_tars(out, session_tars, options.encoding)
    tag = _dataset_tag(tars, options)
    total = sum(st.samples for st in tars)
    stage = f"{out.staging(_STAGE)}/shards"
    _drop_stage(out, stage)
    out.fs.makedirs(stage, exist_ok=True)
    try:
        shards = _write_staged(out, stage, _ordered(out, tars, options), tag, options, total)
        written = sum(s.samples for s in shards)
        if written != total:
            raise OutputError(f"wrote {written} samples but the session tars hold {total} (re-run)")
    except BaseException:
        _drop_stage(out, stage)
        raise
    _publish(out, stage, shards)
    eff = options.effective()
    index = WdsIndex(
        name=options.name,
        encoding=options.encoding,
        tag=tag,
        shuffle_seed=eff["shuffle_seed"],
        shuffle_buffer=eff["shuffle_buffer"],
        shuffle_streams=eff["shuffle_streams"],
        shard_size=eff["shard_size"],
        shard_count=eff["shard_count"],
        sessions=tuple(WdsSession(st.session, st.samples) for st in tars),
        total_samples=total,
        shards=tuple(shards),
    )
    out.write_bytes_atomic(INDEX, index.to_json())
    _remove_orphans(out, (s.url for s in shards))
    _drop_stage(out, stage)
    return index
