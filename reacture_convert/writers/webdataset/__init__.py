"""WebDataset shards for streaming training: one sample per frame, in two steps.

1. **Per session** (a Dask task, in parallel): ``write_session_samples`` writes a *session sample
   tar*, one sample per frame in frame order. The key is ``<session>/<frame_index:06d>``, and
   the members are ``<key>.json`` then ``<key>.npy`` (a standard NPY file that
   ``np.load(allow_pickle=False)`` reads) or ``<key>.png`` (lossless RGB PNG). Either way the
   picture's bytes are exactly as frames.npy stores them: bottom row first (WebGL
   ``readPixels`` order; ``frame[::-1]`` shows it right way up). The ``.json`` member holds
   ``session``, ``frame_index``, ``timestamp_ms`` (``float(timestamps[i])``, the exact float32
   value), ``row_index`` and ``row`` (the periodic row that names the frame, as it was) and
   ``events``: the event and player_action rows logged since the previous periodic row, in
   file order, as they were. Momentary actions (jump, destroy, refuel) thus label the frame
   they lead up to. Rows before the first periodic row (``game_start`` ...) belong to frame 0.
   **Rows after the last periodic row (``game_end`` and whatever came with it) belong to no
   frame and are in no sample**; the Parquet rows table keeps them.

   Frames (``iter_npy_chunks``) and rows (``iter_jsonl``) are read in one lockstep sequential
   pass, so memory is one chunk of frames plus the rows between two frames, and an archive
   member (a forward-only stream) is read once.

2. **Merge** (the driver): ``write_shards`` reads the session tars sequentially (tarfile stream
   mode) and writes ``wds/<name>-<tag>-NNNNNN.tar``. Shards span sessions. Without a shuffle
   seed samples come in session-name order, then frame order. With a seed, the sessions' streams
   are interleaved pseudo-randomly (the next sample comes from a session picked with a
   probability proportional to its remaining samples, at most ``shuffle_streams`` sessions open
   at a time, in a seeded order) and then pass a shuffle buffer of ``shuffle_buffer`` samples.
   No session comes in a long run, and memory stays bounded.

Shard size. The default target of 256 MiB (about 5,000 frames of ~52 KB) follows WebDataset's
advice (shards of a few hundred MB). A shard that size reads at full sequential throughput from
object stores (each request is large next to its latency), and a dataset still has enough shards
for every worker and rank to get several. ``shard_count`` asks for exactly that many shards
instead, with the samples split as evenly as possible (sizes differ by at most one sample), for
one shard per rank. When it is given it wins: ``shard_size`` is then ignored, and the index
records it as null. A shard exceeds ``shard_size`` only when a single sample is bigger.

Reproducible bytes. Members are written in a fixed order (``.json``, then the picture) with
mtime 0, uid/gid 0, empty user and group names, mode 0o644 and the USTAR format. The JSON has
fixed separators and key order. The same inputs and options therefore give byte-identical
session tars, shards and ``index.json``, which holds no clock time. PNG bytes also depend on
the zlib that Pillow links against; NPY bytes do not. The ``<tag>`` in shard names is the
first 8 hex digits of a sha256 over the sessions, their session tars' sha256s and the options,
so another dataset never reuses a shard name.

Visibility. Shards are written to ``OUT/.staging/.wds/shards/`` and moved into ``wds/`` only
once every shard is complete (on a local disk: fsync, then ``os.replace``). ``wds/index.json``
is written last, atomically. Then any ``wds/*.tar`` that the new index does not list is deleted,
so a re-run leaves no orphans and no duplicates.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError, InputError, OutputError
from reacture_convert.findings import Finding
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, open_file
from reacture_convert.ingest.files import read_timestamps
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.npy import iter_npy_chunks, npy_bytes, read_npy_header
from reacture_convert.ingest.validate import Report
from reacture_convert.output.naming import is_safe_name
from reacture_convert.output.storage import Output

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "ENCODINGS",
    "INDEX",
    "SessionTar",
    "WdsOptions",
    "WdsShard",
    "WdsSession",
    "WdsIndex",
    "write_session_samples",
    "write_session_tar",
    "describe_session_tar",
    "write_shards",
    "read_index",
    "tar_size",
]

DEFAULT_SHARD_SIZE = 256 * 2**20
ENCODINGS = ("npy", "png")
INDEX = "wds/index.json"
FORMAT = "reacture-wds"
VERSION = 1
# Bumped whenever the bytes written for the same inputs change; part of the shard-name tag.
LAYOUT = 1

_BLOCK = tarfile.BLOCKSIZE  # 512
_RECORD = tarfile.RECORDSIZE  # 10240: tarfile pads a closed archive to a multiple of this
_CHUNK_FRAMES = 64  # frames read at once: 3 MiB
_PNG_LEVEL = 6
T = TypeVar("T")
_MEMBER = re.compile(r"([A-Za-z0-9_-]{1,128})/([0-9]{6,})\.([a-z]+)")
_STAGE = ".wds"  # session names never contain "." so this cannot clash


# --------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class WdsOptions:
    """How to shard. ``shard_size`` is a byte limit per shard file; ``shard_count`` (when set,
    it wins over ``shard_size``) asks for exactly that many shards. ``shuffle_seed`` turns on
    the seeded interleave plus a ``shuffle_buffer``-sample buffer; ``shuffle_streams`` bounds
    how many session tars are open at once while interleaving."""

    shard_size: int = DEFAULT_SHARD_SIZE
    shard_count: int | None = None
    shuffle_seed: int | None = None
    encoding: str = "npy"
    name: str = "reacture"
    shuffle_buffer: int = 512
    shuffle_streams: int = 64

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"unknown WebDataset encoding {self.encoding!r}; choose one of "
                              f"{', '.join(ENCODINGS)}")
        if not is_safe_name(self.name):
            raise ConfigError(
                f"shard name {self.name!r} must be 1-128 characters of A-Z, a-z, 0-9, '_' and '-'"
            )
        if self.shard_size < 1:
            raise ConfigError("--shard-size must be at least 1 byte")
        if self.shard_count is not None and self.shard_count < 1:
            raise ConfigError("--shard-count must be at least 1")
        if self.shuffle_buffer < 1:
            raise ConfigError("--shuffle-buffer must be at least 1 sample")
        if self.shuffle_streams < 1:
            raise ConfigError("shuffle_streams must be at least 1")

    def effective(self) -> dict[str, Any]:
        """The options that shape the output (ignored ones as None): hashed into the tag and
        recorded in the index."""
        shuffled = self.shuffle_seed is not None
        return {
            "name": self.name,
            "encoding": self.encoding,
            "shuffle_seed": self.shuffle_seed,
            "shuffle_buffer": self.shuffle_buffer if shuffled else None,
            "shuffle_streams": self.shuffle_streams if shuffled else None,
            "shard_size": None if self.shard_count is not None else self.shard_size,
            "shard_count": self.shard_count,
        }


@dataclass(frozen=True, slots=True)
class SessionTar:
    """A session sample tar on the output filesystem: what merging needs to know up front."""

    session: str
    path: str
    samples: int
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class WdsSession:
    session: str
    samples: int


@dataclass(frozen=True, slots=True)
class WdsShard:
    """One shard: ``url`` is the file name relative to ``wds/``."""

    url: str
    samples: int
    bytes: int
    sha256: str
    sessions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WdsIndex:
    """What ``wds/index.json`` says (see ``to_dict`` for the file's layout)."""

    name: str
    encoding: str
    tag: str
    shuffle_seed: int | None
    shuffle_buffer: int | None
    shuffle_streams: int | None
    shard_size: int | None
    shard_count: int | None
    sessions: tuple[WdsSession, ...]
    total_samples: int
    shards: tuple[WdsShard, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "tag": self.tag,
            "encoding": self.encoding,
            "shuffle_seed": self.shuffle_seed,
            "shuffle_buffer": self.shuffle_buffer,
            "shuffle_streams": self.shuffle_streams,
            "shard_size": self.shard_size,
            "shard_count": self.shard_count,
            "sessions": [{"session": s.session, "samples": s.samples} for s in self.sessions],
            "total_samples": self.total_samples,
            "shards": [
                {"url": s.url, "samples": s.samples, "bytes": s.bytes, "sha256": s.sha256,
                 "sessions": list(s.sessions)}
                for s in self.shards
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WdsIndex:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise OutputError(
                f"{INDEX}: not a {FORMAT} version {VERSION} index (format {d.get('format')!r}, "
                f"version {d.get('version')!r}); re-run the conversion with --formats wds"
            )
        return cls(
            name=d["name"], encoding=d["encoding"], tag=d["tag"],
            shuffle_seed=d["shuffle_seed"], shuffle_buffer=d["shuffle_buffer"],
            shuffle_streams=d["shuffle_streams"], shard_size=d["shard_size"],
            shard_count=d["shard_count"],
            sessions=tuple(WdsSession(s["session"], s["samples"]) for s in d["sessions"]),
            total_samples=d["total_samples"],
            shards=tuple(WdsShard(s["url"], s["samples"], s["bytes"], s["sha256"],
                                  tuple(s["sessions"])) for s in d["shards"]),
        )

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode("ascii")


def read_index(out: Output) -> WdsIndex | None:
    """The dataset's ``wds/index.json``, or None when there is none."""
    if not out.exists(INDEX):
        return None
    with out.fs.open(out.path(INDEX), "rb") as f:
        return WdsIndex.from_dict(json.loads(f.read()))


# --------------------------------------------------------------------------------------------
# tar members


def _member_size(nbytes: int) -> int:
    """Bytes a regular-file member takes in a USTAR archive: header plus padded data."""
    return _BLOCK + -(-nbytes // _BLOCK) * _BLOCK


def tar_size(content: int) -> int:
    """The size of a closed tarfile archive whose members take ``content`` bytes: two zero
    blocks end it and tarfile pads to a whole record."""
    return -(-(content + 2 * _BLOCK) // _RECORD) * _RECORD


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    """A member header that depends on nothing but the name and size."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _open_tar_writer(sink: IO[bytes]) -> tarfile.TarFile:
    return tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT)


@dataclass(frozen=True, slots=True)
class _Sample:
    """One sample as tar members ``(name, data)`` in their fixed order."""

    session: str
    frame_index: int
    members: tuple[tuple[str, bytes], ...]

    @property
    def size(self) -> int:
        return sum(_member_size(len(data)) for _, data in self.members)

    def write(self, tar: tarfile.TarFile) -> None:
        for name, data in self.members:
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


class _HashingWriter(io.RawIOBase):
    """Passes writes through to ``sink`` and keeps their sha256 and byte count."""

    def __init__(self, sink: IO[bytes]) -> None:
        super().__init__()
        self.sink = sink
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sink.write(view)
        self.hash.update(view)
        self.count += len(view)
        return len(view)


class _HashingReader(io.RawIOBase):
    """Reads ``source`` forward and keeps the sha256 and byte count of what was read."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self.source.read(-1 if size is None else size)
        self.hash.update(data)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


# --------------------------------------------------------------------------------------------
# step 1: one session's samples


@dataclass(frozen=True, slots=True)
class _FrameSample:
    """A frame with its periodic row and the rows logged since the previous periodic row."""

    frame_index: int
    row: ParsedRow
    events: tuple[ParsedRow, ...]
    frame: npt.NDArray[np.uint8]


def _iter_frames(chunks: Iterable[npt.NDArray[Any]]) -> Iterator[npt.NDArray[np.uint8]]:
    for chunk in chunks:
        yield from chunk


def _pair_rows(
    rows: Iterable[ParsedRow | Finding], frames: Iterator[npt.NDArray[np.uint8]], file: str
) -> Iterator[_FrameSample]:
    """Walk rows and frames in lockstep: each periodic row takes the next frame, and the
    non-periodic rows since the previous periodic row become its events. Rows after the last
    periodic row are dropped (they belong to no frame). Findings were judged by validation."""
    pending: list[ParsedRow] = []
    expected = 0
    for item in rows:
        if isinstance(item, Finding):
            continue
        if item.kind != "periodic":
            pending.append(item)
            continue
        if item.frame_index != expected:
            raise InputError(
                f"{file}:{item.row_index + 1}: periodic row refers to frame {item.frame_index}, "
                f"expected {expected}; the bundle changed since it was validated (re-run)"
            )
        frame = next(frames, None)
        if frame is None:
            raise InputError(
                f"{file}:{item.row_index + 1}: refers to frame {expected} but frames.npy ends "
                "before it; the bundle changed since it was validated (re-run)"
            )
        yield _FrameSample(expected, item, tuple(pending), frame)
        pending = []
        expected += 1


def _image_bytes(frame: npt.NDArray[np.uint8], encoding: str) -> bytes:
    if encoding == "npy":
        return npy_bytes(frame)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(
        buf, format="PNG", compress_level=_PNG_LEVEL, optimize=False
    )
    return buf.getvalue()


def _json_bytes(session: str, s: _FrameSample, timestamp_ms: float) -> bytes:
    meta = {
        "session": session,
        "frame_index": s.frame_index,
        "timestamp_ms": timestamp_ms,
        "row_index": s.row.row_index,
        "row": s.row.obj,
        "events": [e.obj for e in s.events],
    }
    return json.dumps(meta, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _sample(session: str, s: _FrameSample, timestamp_ms: float, encoding: str) -> _Sample:
    key = f"{session}/{s.frame_index:06d}"
    return _Sample(session, s.frame_index, (
        (f"{key}.json", _json_bytes(session, s, timestamp_ms)),
        (f"{key}.{encoding}", _image_bytes(s.frame, encoding)),
    ))


def _check_session_args(report: Report, session: str, encoding: str) -> int:
    if not report.ok or report.n_frames is None:
        raise InputError(f"{report.bundle.prefix}: only a valid bundle can be written as samples")
    if not is_safe_name(session):
        raise ValueError(f"session name {session!r} is not safe in a WebDataset key")
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown WebDataset encoding {encoding!r}; choose one of {ENCODINGS}")
    return report.n_frames


def write_session_samples(
    bundle: BundleRef,
    report: Report,
    session: str,
    sink: IO[bytes],
    *,
    encoding: str = "npy",
    input_options: StorageOptions | None = None,
) -> int:
    """Write the session sample tar of a validated bundle to ``sink``; return its sample count.

    One sample per frame, in frame order (see the module doc). ``report`` is the bundle's
    validation report; it must be ok, and its ``frame_rows`` are checked against the rows read.
    ``sink`` is written forward only and left open. Raises InputError when the files no longer
    match the report.
    """
    n = _check_session_args(report, session, encoding)
    ts = read_timestamps(bundle, input_options)
    fref, jref = bundle.files["frames.npy"], bundle.files["data.jsonl"]
    count = 0
    with open_file(fref, input_options) as ff, open_file(jref, input_options) as jf:
        header, _ = read_npy_header(ff, fref.size, fref.name)
        if header is None or header.shape[0] != n or ts.shape != (n,):
            raise InputError(f"{fref.label()}: the frames changed since validation (re-run)")
        frames = _iter_frames(iter_npy_chunks(ff, header, _CHUNK_FRAMES, file=fref.name))
        with _open_tar_writer(sink) as tar:
            for s in _pair_rows(iter_jsonl(jf, jref.name), frames, jref.name):
                if report.frame_rows and report.frame_rows[s.frame_index] != s.row.row_index:
                    raise InputError(
                        f"{jref.label()}: frame {s.frame_index} is named by line "
                        f"{s.row.row_index + 1}, validation saw line "
                        f"{report.frame_rows[s.frame_index] + 1}; the bundle changed (re-run)"
                    )
                _sample(session, s, float(ts[s.frame_index]), encoding).write(tar)
                count += 1
    if count != n:
        raise InputError(
            f"{jref.label()}: periodic rows name {count} frames but frames.npy holds {n}; the "
            "bundle changed since validation (re-run)"
        )
    return count


def write_session_tar(
    bundle: BundleRef,
    report: Report,
    session: str,
    out: Output,
    path: str,
    *,
    encoding: str = "npy",
    input_options: StorageOptions | None = None,
) -> SessionTar:
    """``write_session_samples`` into the file ``path`` on ``out.fs``, hashing on the way, so
    that ``write_shards`` can be given the result and skip its reading pre-pass."""
    parent = path.rsplit("/", 1)[0]
    out.fs.makedirs(parent, exist_ok=True)
    with out.fs.open(path, "wb") as f:
        writer = _HashingWriter(f)
        n = write_session_samples(bundle, report, session, cast(IO[bytes], writer),
                                  encoding=encoding, input_options=input_options)
    return SessionTar(session, path, n, writer.hash.hexdigest(), writer.count)


# --------------------------------------------------------------------------------------------
# step 2: reading session tars


def _iter_tar_samples(
    tar: tarfile.TarFile, session: str, encoding: str, label: str
) -> Iterator[_Sample]:
    """Group a session tar's members into samples, checking that it is what step 1 writes."""
    current: list[tuple[str, bytes]] = []
    expected = 0
    exts = ("json", encoding)

    def bad(why: str) -> OutputError:
        return OutputError(f"{label}: {why}; it is not a session sample tar of "
                           f"{session!r} with {encoding!r} pictures (convert the session again)")

    for info in tar:
        m = _MEMBER.fullmatch(info.name)
        if not info.isreg() or m is None or m.group(1) != session:
            raise bad(f"unexpected member {info.name!r}")
        if int(m.group(2)) != expected or m.group(3) != exts[len(current)]:
            raise bad(f"member {info.name!r} out of order (expected frame {expected}, "
                      f".{exts[len(current)]})")
        member = tar.extractfile(info)
        assert member is not None  # regular file
        current.append((info.name, member.read()))
        if len(current) == len(exts):
            yield _Sample(session, expected, tuple(current))
            current = []
            expected += 1
    if current:
        raise bad(f"the last sample (frame {expected}) is incomplete")


def _iter_session(out: Output, st: SessionTar, encoding: str) -> Iterator[_Sample]:
    """Stream one session tar's samples; on exhaustion, check its count and sha256."""
    label = st.path
    with out.fs.open(st.path, "rb") as raw:
        reader = _HashingReader(raw)
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:
            n = 0
            for sample in _iter_tar_samples(tar, st.session, encoding, label):
                n += 1
                yield sample
        reader.drain()
    digest = reader.hash.hexdigest()
    if n != st.samples or digest != st.sha256:
        raise OutputError(
            f"{label}: holds {n} samples with sha256 {digest[:12]}..., expected {st.samples} "
            f"with {st.sha256[:12]}...; it changed while the shards were written (re-run)"
        )


def describe_session_tar(out: Output, session: str, path: str, encoding: str = "npy") -> SessionTar:
    """Read a session tar once: its sample count and sha256 (checking its members)."""
    with out.fs.open(path, "rb") as raw:
        reader = _HashingReader(raw)
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:
            n = sum(1 for _ in _iter_tar_samples(tar, session, encoding, path))
        reader.drain()
    return SessionTar(session, path, n, reader.hash.hexdigest(), reader.count)


# --------------------------------------------------------------------------------------------
# step 2: ordering


def _sequential(out: Output, tars: Sequence[SessionTar], encoding: str) -> Iterator[_Sample]:
    for st in tars:
        yield from _iter_session(out, st, encoding)


def _interleave(
    out: Output, tars: Sequence[SessionTar], encoding: str, rng: random.Random, streams: int
) -> Iterator[_Sample]:
    """Seeded interleave: at most ``streams`` sessions open (joining in a seeded order); each
    sample comes from an open session picked with probability proportional to its remaining
    samples, so every session spreads over the whole stretch it is open for."""
    waiting = [st for st in tars if st.samples > 0]
    rng.shuffle(waiting)
    waiting.reverse()  # pop() from the end takes them in the shuffled order
    active: list[tuple[SessionTar, Iterator[_Sample]]] = []
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


def _ordered(out: Output, tars: Sequence[SessionTar], options: WdsOptions) -> Iterator[_Sample]:
    if options.shuffle_seed is None:
        return _sequential(out, tars, options.encoding)
    rng = random.Random(options.shuffle_seed)
    mixed = _interleave(out, tars, options.encoding, rng, options.shuffle_streams)
    return shuffle_buffer(mixed, options.shuffle_buffer, rng)


# --------------------------------------------------------------------------------------------
# step 2: writing shards


def _dataset_tag(tars: Sequence[SessionTar], options: WdsOptions) -> str:
    doc = {
        "format": FORMAT, "version": VERSION, "layout": LAYOUT,
        "sessions": [[st.session, st.sha256] for st in tars],
        "options": options.effective(),
    }
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()[:8]


def _count_plan(total: int, count: int) -> list[int]:
    """Samples per shard for ``count`` shards: as even as possible, the larger ones first."""
    if count > total:
        raise ConfigError(
            f"--shard-count {count} asks for more shards than there are samples ({total}); "
            "ask for at most that many shards"
        )
    base, extra = divmod(total, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


class _ShardSink:
    """One staged shard being written: counts, hashes and knows which sessions it holds."""

    def __init__(self, out: Output, path: str) -> None:
        self.out = out
        self.path = path
        self.file: IO[bytes] = open(path, "wb") if out.is_local else out.fs.open(path, "wb")
        self.writer = _HashingWriter(self.file)
        self.tar = _open_tar_writer(cast(IO[bytes], self.writer))
        self.content = 0
        self.samples = 0
        self.sessions: set[str] = set()

    def add(self, sample: _Sample) -> None:
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
        return WdsShard(url, self.samples, self.writer.count, self.writer.hash.hexdigest(),
                        tuple(sorted(self.sessions)))

    def abort(self) -> None:
        """Give up on this shard: close everything and delete the partial file."""
        try:
            self.tar.close()
        finally:
            self.file.close()
            self.out.fs.rm(self.path)


def _write_staged(
    out: Output, stage: str, samples: Iterator[_Sample], tag: str, options: WdsOptions,
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
                full = (sink.samples >= plan[len(shards)] if plan is not None else
                        tar_size(sink.content + sample.size) > options.shard_size)
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


def _publish(out: Output, stage: str, shards: Sequence[WdsShard]) -> None:
    """Move every complete staged shard into ``wds/``."""
    final_dir = out.path("wds")
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
    folder = out.path("wds")
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
    tars = [st if isinstance(st, SessionTar) else describe_session_tar(out, st[0], st[1], encoding)
            for st in session_tars]
    tars.sort(key=lambda st: st.session)
    for a, b in zip(tars, tars[1:], strict=False):
        if a.session == b.session:
            raise ConfigError(f"session {a.session!r} is given twice ({a.path}, {b.path})")
    return tars


def write_shards(
    out: Output,
    session_tars: Sequence[SessionTar | tuple[str, str]],
    options: WdsOptions = WdsOptions(),
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
        name=options.name, encoding=options.encoding, tag=tag,
        shuffle_seed=eff["shuffle_seed"], shuffle_buffer=eff["shuffle_buffer"],
        shuffle_streams=eff["shuffle_streams"], shard_size=eff["shard_size"],
        shard_count=eff["shard_count"],
        sessions=tuple(WdsSession(st.session, st.samples) for st in tars),
        total_samples=total, shards=tuple(shards),
    )
    out.write_bytes_atomic(INDEX, index.to_json())
    _remove_orphans(out, (s.url for s in shards))
    _drop_stage(out, stage)
    return index

