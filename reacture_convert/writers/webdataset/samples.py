"""One session's samples: the *session parts* that a session task writes (in parallel, one task
per session) and that the shard writer adopts as shards or copies into them.

One sample per frame, in frame order. The key is ``<session>/<frame_index:06d>``, and the
members are ``<key>.json`` (``sample_json``: the frame's periodic row and events, one structure
for every sample) then ``<key>.npy`` (a standard NPY file that ``np.load(allow_pickle=False)``
reads) or ``<key>.png`` (lossless RGB PNG). Either way the picture's bytes are exactly as
frames.npy stores them: bottom row first (WebGL ``readPixels`` order; ``frame[::-1]`` shows it
right way up). Momentary actions (jump, destroy, refuel) thus label the frame they lead up to.
Rows before the first periodic row (``game_start`` ...) belong to frame 0. **Rows after the
last periodic row (``game_end`` and whatever came with it) belong to no frame and are in no
sample**; the Parquet rows table keeps them.

Parts. The samples go into complete tar files, the session's *parts*, that roll over where the
shards would if the session began a shard (``shard_size``; one part when shards are counted or
shuffled). A part that becomes a shard exactly is moved into place (no copy; it is hashed as it
is written); the others are copied from by the sample sizes recorded in ``SessionTar``, so the
shards are never parsed. Frames (``iter_npy_chunks``) and rows (``iter_jsonl``) are read in one
lockstep sequential pass, so memory is one chunk of frames plus the rows between two frames,
and an archive member (a forward-only stream) is read once.

Reproducible bytes. Members come in a fixed order with fixed headers (``tar``), and the JSON
has a fixed structure, so the same bundle always gives the same parts. PNG bytes also depend on
the zlib that Pillow links against; NPY bytes do not.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

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
from reacture_convert.writers.webdataset.options import WdsOptions, check_encoding
from reacture_convert.writers.webdataset.sample_json import sample_json
from reacture_convert.writers.webdataset.sink import HashedFile, HashingReader
from reacture_convert.writers.webdataset.tar import (
    BLOCK,
    end_of_archive,
    iter_tar_samples,
    member_header,
    member_size,
    padding,
    tar_size,
)

__all__ = [
    "SessionPart",
    "SessionTar",
    "describe_session_tar",
    "write_session_samples",
    "write_session_tar",
]

_CHUNK_FRAMES: Final = 64  # frames read at once: 3 MiB
_PNG_LEVEL: Final = 6
_FRAME_KEY: Final = re.compile(r"[0-9]{6,}")


@dataclass(frozen=True, slots=True)
class SessionPart:
    """One complete tar file holding samples ``first`` .. ``first + samples - 1``."""

    path: str
    first: int
    samples: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SessionTar:
    """A session's samples on the output filesystem: its parts, and the bytes each sample takes
    in a tar (``sizes``, in sample order), which is all the shard writer needs to know.
    ``sha256`` is over the parts' sha256s: the session's samples as written."""

    session: str
    samples: int
    sha256: str
    parts: tuple[SessionPart, ...]
    sizes: tuple[int, ...]

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


def _session_digest(parts: Sequence[SessionPart]) -> str:
    return hashlib.sha256("\n".join(p.sha256 for p in parts).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# the samples of a bundle


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


@functools.lru_cache(maxsize=8)
def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The NPY header ``np.save`` writes for an array of this shape and dtype."""
    probe = npy_bytes(np.zeros(shape, dtype=dtype))
    return probe[: len(probe) - int(np.prod(shape)) * np.dtype(dtype).itemsize]


def _picture(frame: npt.NDArray[np.uint8], encoding: str) -> tuple[Any, ...]:
    """The picture member's data, in pieces (NPY: the header, then the frame's own bytes)."""
    if encoding == "npy":
        pixels: Any = np.ascontiguousarray(frame)
        return _npy_header(frame.shape, frame.dtype.str), memoryview(pixels).cast("B")
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(
        buf, format="PNG", compress_level=_PNG_LEVEL, optimize=False
    )
    return (buf.getvalue(),)


Member = tuple[str, Sequence[Any]]  # name, data in pieces


def _sample_members(
    session: str, s: _FrameSample, timestamp_ms: float, encoding: str
) -> tuple[Member, Member]:
    key = f"{session}/{s.frame_index:06d}"
    meta = sample_json(session, s.frame_index, timestamp_ms, s.row, s.events)
    return (f"{key}.json", (meta,)), (f"{key}.{encoding}", _picture(s.frame, encoding))


def _write_members(write: Any, members: Iterable[Member]) -> int:
    """Write members through ``write``; return the bytes they take."""
    total = 0
    for name, pieces in members:
        size = sum(len(p) for p in pieces)
        write(member_header(name, size))
        for piece in pieces:
            write(piece)
        write(padding(size))
        total += member_size(size)
    return total


def _check_session_args(report: Report, session: str, encoding: str) -> int:
    if not report.ok or report.n_frames is None:
        raise InputError(f"{report.bundle.prefix}: only a valid bundle can be written as samples")
    if not is_safe_name(session):
        raise ConfigError(
            f"session name {session!r} is not safe in a WebDataset key: use 1-128 "
            "characters of A-Z, a-z, 0-9, '_' and '-'"
        )
    check_encoding(encoding)
    return report.n_frames


def _iter_samples(
    bundle: BundleRef,
    report: Report,
    session: str,
    encoding: str,
    input_options: StorageOptions | None,
) -> Iterator[tuple[Member, Member]]:
    """The members of every sample of a validated bundle, in frame order. Raises InputError
    when the files no longer match the report."""
    n = _check_session_args(report, session, encoding)
    ts = read_timestamps(bundle, input_options)
    fref, jref = bundle.files["frames.npy"], bundle.files["data.jsonl"]
    count = 0
    with open_file(fref, input_options) as ff, open_file(jref, input_options) as jf:
        header, _ = read_npy_header(ff, fref.size, fref.name)
        if header is None or header.shape[0] != n or ts.shape != (n,):
            raise InputError(f"{fref.label()}: the frames changed since validation (re-run)")
        frames = _iter_frames(iter_npy_chunks(ff, header, _CHUNK_FRAMES, file=fref.name))
        for s in _pair_rows(iter_jsonl(jf, jref.name), frames, jref.name):
            if report.frame_rows and report.frame_rows[s.frame_index] != s.row.row_index:
                raise InputError(
                    f"{jref.label()}: frame {s.frame_index} is named by line "
                    f"{s.row.row_index + 1}, validation saw line "
                    f"{report.frame_rows[s.frame_index] + 1}; the bundle changed (re-run)"
                )
            yield _sample_members(session, s, float(ts[s.frame_index]), encoding)
            count += 1
    if count != n:
        raise InputError(
            f"{jref.label()}: periodic rows name {count} frames but frames.npy holds {n}; the "
            "bundle changed since validation (re-run)"
        )


def write_session_samples(
    bundle: BundleRef,
    report: Report,
    session: str,
    sink: IO[bytes],
    *,
    encoding: str = "npy",
    input_options: StorageOptions | None = None,
) -> int:
    """Write the samples of a validated bundle to ``sink`` as one complete tar; return their
    count. ``report`` is the bundle's validation report; it must be ok, and its
    ``frame_rows`` are checked against the rows read. ``sink`` is written forward only and left
    open. Raises InputError when the files no longer match the report."""
    content = count = 0
    for members in _iter_samples(bundle, report, session, encoding, input_options):
        content += _write_members(sink.write, members)
        count += 1
    sink.write(end_of_archive(content))
    return count


class _Parts:
    """Parts being written: each closes before the sample that would take it past ``limit``
    bytes (as a shard would), or never when ``limit`` is None."""

    def __init__(self, out: Output, path: str, limit: int | None) -> None:
        self.out, self.limit = out, limit
        self.stem = path[: -len(".tar")] if path.endswith(".tar") else path
        self.parts: list[SessionPart] = []
        self.sizes: list[int] = []
        self.file: HashedFile | None = None
        self.content = 0
        self.first = 0

    def add(self, members: Sequence[Member]) -> None:
        size = sum(member_size(sum(len(p) for p in pieces)) for _, pieces in members)
        if self.file is not None and self.limit is not None and self.content > 0:
            if tar_size(self.content + size) > self.limit:
                self._close()
        if self.file is None:
            path = f"{self.stem}-{len(self.parts):04d}.tar"
            self.file = HashedFile(self.out, path)
            self.first, self.content = len(self.sizes), 0
        self.content += _write_members(self.file.write, members)
        self.sizes.append(size)

    def _close(self) -> None:
        assert self.file is not None
        self.file.write(end_of_archive(self.content))
        nbytes, sha = self.file.close()
        samples = len(self.sizes) - self.first
        self.parts.append(SessionPart(self.file.path, self.first, samples, nbytes, sha))
        self.file = None

    def finish(self, session: str) -> SessionTar:
        if self.file is not None:
            self._close()
        return SessionTar(
            session,
            len(self.sizes),
            _session_digest(self.parts),
            tuple(self.parts),
            tuple(self.sizes),
        )

    def abort(self) -> None:
        if self.file is not None:
            self.file.abort()
        for part in self.parts:
            if self.out.fs.exists(part.path):
                self.out.fs.rm(part.path)


def write_session_tar(
    bundle: BundleRef,
    report: Report,
    session: str,
    out: Output,
    path: str,
    *,
    options: WdsOptions,
    input_options: StorageOptions | None = None,
) -> SessionTar:
    """Write the session's parts next to ``path`` on ``out.fs`` (``<path stem>-NNNN.tar``),
    hashing on the way, rolled over at ``options.shard_size`` unless shards are counted or
    shuffled (see the module doc); the result is what ``write_shards`` takes."""
    parent = path.rsplit("/", 1)[0]
    out.fs.makedirs(parent, exist_ok=True)
    one_part = options.shard_count is not None or options.shuffle_seed is not None
    parts = _Parts(out, path, None if one_part else options.shard_size)
    try:
        for members in _iter_samples(bundle, report, session, options.encoding, input_options):
            parts.add(members)
        return parts.finish(session)
    except BaseException:
        parts.abort()
        raise


# --------------------------------------------------------------------------------------------
# a tar written elsewhere


def describe_session_tar(out: Output, session: str, path: str, encoding: str = "npy") -> SessionTar:
    """Read a session tar written as ``write_session_samples`` writes one (a single part):
    its sample sizes and sha256, checking that it holds keys ``<session>/<frame>`` from frame 0
    on, each a ``.json`` then the picture, and that it ends as such a tar ends."""
    exts = ["json", encoding]

    def bad(why: str) -> OutputError:
        return OutputError(
            f"{path}: {why}; it is not a session sample tar of "
            f"{session!r} with {encoding!r} pictures (convert the session again)"
        )

    sizes: list[int] = []
    with out.fs.open(path, "rb") as raw:
        reader = HashingReader(raw)
        stream = io.BufferedReader(reader, 1 << 20)
        for key, members in iter_tar_samples(stream, path):
            folder, _, frame = key.partition("/")
            if folder != session or not _FRAME_KEY.fullmatch(frame):
                raise bad(f"unexpected sample {key!r}")
            if int(frame) != len(sizes):
                raise bad(f"sample {key!r} out of order (expected frame {len(sizes)})")
            if list(members) != exts:
                got = ", ".join(f".{ext}" for ext in members)
                raise bad(f"sample {key!r} has members {got} (expected .json, .{encoding})")
            sizes.append(sum(member_size(len(data)) for data in members.values()))
        rest = stream.read()
    content = sum(sizes)
    if reader.count != tar_size(content) or rest.count(0) != len(rest) or len(rest) < BLOCK:
        raise bad(f"it ends with {len(rest)} bytes after its members, not as a closed tar")
    part = SessionPart(path, 0, len(sizes), reader.count, reader.hash.hexdigest())
    return SessionTar(session, len(sizes), _session_digest([part]), (part,), tuple(sizes))
