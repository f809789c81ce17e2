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

One read. The samples are built by ``SessionSamples``, a validation ``ReadSink``
(``sample_sink``): a conversion reads the bundle once, and the frames and rows that validation
reads become the samples as they come (beside the Zarr outputs, when those are asked for too).
``write_session_samples`` does the same for a bundle on its own, into one tar written forward
(a read of its own, which must find the bundle as its report describes it).

Parts. The samples go into complete tar files, the session's *parts*, that roll over where the
shards would if the session began a shard (``shard_size``; one part when shards are counted or
shuffled). A part that becomes a shard exactly is moved into place (no copy; it is hashed as it
is written); the others are copied from by the sample sizes recorded in ``SessionTar``, so the
shards are never parsed.

Reproducible bytes. Members come in a fixed order with fixed headers (``tar``), and the JSON
has a fixed structure, so the same bundle always gives the same parts. PNG bytes also depend on
the zlib that Pillow links against; NPY bytes do not.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from reacture_convert.errors import InputError, OutputError
from reacture_convert.formats.wds.tar import (
    BLOCK,
    end_of_archive,
    iter_tar_samples,
    member_header,
    member_size,
    padding,
    tar_size,
)
from reacture_convert.ingest.bundle import BundleRef, StorageOptions
from reacture_convert.ingest.files import HashingReader
from reacture_convert.ingest.validate import Report, validate_bundle
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset.options import WdsOptions
from reacture_convert.writers.webdataset.sample_sink import Member, SampleSink
from reacture_convert.writers.webdataset.sink import HashedFile

__all__ = [
    "SessionPart",
    "SessionSamples",
    "SessionTar",
    "describe_session_tar",
    "write_session_samples",
]

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


class SessionSamples(SampleSink):
    """A session's samples written into its parts next to ``path`` on ``out.fs`` (``<path
    stem>-NNNN.tar``) as validation reads the bundle (a ``ReadSink``): hashed on the way,
    rolled over at ``options.shard_size`` unless shards are counted or shuffled (see the module
    doc). ``finish(report)`` gives what ``write_shards`` takes; ``discard`` deletes the parts."""

    def __init__(self, session: str, out: Output, path: str, options: WdsOptions) -> None:
        parent = path.rsplit("/", 1)[0]
        out.makedirs(parent)
        one_part = options.shard_count is not None or options.shuffle_seed is not None
        self.parts = _Parts(out, path, None if one_part else options.shard_size)
        super().__init__(session, options.encoding, self.parts.add)

    def finish(self, report: Report) -> SessionTar:
        """The parts of a valid bundle's samples, complete. Raises InputError when the report
        is not ok or the samples written are not the bundle's."""
        _check_written(self, report)
        return self.parts.finish(self.session)

    def discard(self) -> None:
        self.parts.abort()


def _check_written(sink: SampleSink, report: Report) -> None:
    if not report.ok or report.n_frames is None:
        raise InputError(f"{report.bundle.prefix}: only a valid bundle can be written as samples")
    why = sink.check(report.n_frames)
    if why is not None:
        raise InputError(
            f"{report.bundle.prefix}: {why}; the bundle changed since it was validated (re-run)"
        )


def _read_again(
    bundle: BundleRef, report: Report, sink: SampleSink, input_options: StorageOptions | None
) -> None:
    """Validate ``bundle`` again with ``sink`` taking its samples; InputError unless it is
    still the valid bundle that ``report`` describes."""
    if not report.ok or report.n_frames is None:
        raise InputError(f"{report.bundle.prefix}: only a valid bundle can be written as samples")
    again = validate_bundle(bundle, input_options, sink=sink)
    if (again.n_frames, again.frame_rows) != (report.n_frames, report.frame_rows):
        raise InputError(
            f"{bundle.prefix}: the frames or their rows changed since validation (re-run)"
        )
    _check_written(sink, again)


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
    count. ``report`` is the bundle's validation report; it must be ok, and the bundle must
    still be as it describes (InputError). ``sink`` is written forward only and left open."""
    content = 0

    def add(members: Sequence[Member]) -> None:
        nonlocal content
        content += _write_members(sink.write, members)

    samples = SampleSink(session, encoding, add)
    _read_again(bundle, report, samples, input_options)
    sink.write(end_of_archive(content))
    return samples.written


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
    part = SessionPart(path, 0, len(sizes), reader.count, reader.hexdigest())
    return SessionTar(session, len(sizes), _session_digest([part]), (part,), tuple(sizes))
