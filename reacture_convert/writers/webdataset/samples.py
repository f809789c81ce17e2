"""One session's samples: the *session sample tar* that step 1 writes per session (a Dask task,
in parallel) and that the merge reads back.

One sample per frame, in frame order. The key is ``<session>/<frame_index:06d>``, and the
members are ``<key>.json`` then ``<key>.npy`` (a standard NPY file that
``np.load(allow_pickle=False)`` reads) or ``<key>.png`` (lossless RGB PNG). Either way the
picture's bytes are exactly as frames.npy stores them: bottom row first (WebGL ``readPixels``
order; ``frame[::-1]`` shows it right way up). The ``.json`` member holds ``session``,
``frame_index``, ``timestamp_ms`` (``float(timestamps[i])``, the exact float32 value),
``row_index`` and ``row`` (the periodic row that names the frame, as it was) and ``events``:
the event and player_action rows logged since the previous periodic row, in file order, as they
were. Momentary actions (jump, destroy, refuel) thus label the frame they lead up to. Rows
before the first periodic row (``game_start`` ...) belong to frame 0. **Rows after the last
periodic row (``game_end`` and whatever came with it) belong to no frame and are in no
sample**; the Parquet rows table keeps them.

Frames (``iter_npy_chunks``) and rows (``iter_jsonl``) are read in one lockstep sequential
pass, so memory is one chunk of frames plus the rows between two frames, and an archive member
(a forward-only stream) is read once.

Reproducible bytes. The members come in a fixed order (``.json``, then the picture) with fixed
headers (``tar.write_member``), and the JSON has fixed separators and key order, so the same
bundle always gives the same session tar. PNG bytes also depend on the zlib that Pillow links
against; NPY bytes do not.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
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
from reacture_convert.writers.webdataset.options import check_encoding
from reacture_convert.writers.webdataset.sample_json import sample_json
from reacture_convert.writers.webdataset.tar import (
    HashingReader,
    HashingWriter,
    iter_tar_samples,
    member_size,
    open_tar_writer,
    write_member,
)

__all__ = [
    "Sample",
    "SessionTar",
    "describe_session_tar",
    "read_session_tar",
    "write_session_samples",
    "write_session_tar",
]

_CHUNK_FRAMES = 64  # frames read at once: 3 MiB
_PNG_LEVEL = 6
_FRAME_KEY = re.compile(r"[0-9]{6,}")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class SessionTar:
    """A session sample tar on the output filesystem: what merging needs to know up front."""

    session: str
    path: str
    samples: int
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample as tar members ``(name, data)`` in their fixed order."""

    session: str
    frame_index: int
    members: tuple[tuple[str, bytes], ...]

    @property
    def size(self) -> int:
        """Bytes the sample takes in a tar."""
        return sum(member_size(len(data)) for _, data in self.members)

    def write(self, tar: tarfile.TarFile) -> None:
        for name, data in self.members:
            write_member(tar, name, data)


# --------------------------------------------------------------------------------------------
# writing


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


def _sample(session: str, s: _FrameSample, timestamp_ms: float, encoding: str) -> Sample:
    key = f"{session}/{s.frame_index:06d}"
    return Sample(
        session,
        s.frame_index,
        (
            (f"{key}.json", sample_json(session, s.frame_index, timestamp_ms, s.row, s.events)),
            (f"{key}.{encoding}", _image_bytes(s.frame, encoding)),
        ),
    )


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
        with open_tar_writer(sink) as tar:
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
        writer = HashingWriter(f)
        n = write_session_samples(
            bundle,
            report,
            session,
            cast(IO[bytes], writer),
            encoding=encoding,
            input_options=input_options,
        )
    return SessionTar(session, path, n, writer.hash.hexdigest(), writer.count)


# --------------------------------------------------------------------------------------------
# reading back


def _session_samples(
    stream: IO[bytes], session: str, encoding: str, label: str
) -> Iterator[Sample]:
    """The samples of a session tar, checking that it is what ``write_session_samples``
    writes: keys ``<session>/<frame>`` from frame 0 on, each a ``.json`` then a picture."""
    expected = 0
    exts = ["json", encoding]

    def bad(why: str) -> OutputError:
        return OutputError(
            f"{label}: {why}; it is not a session sample tar of "
            f"{session!r} with {encoding!r} pictures (convert the session again)"
        )

    for key, members in iter_tar_samples(stream, label):
        folder, _, frame = key.partition("/")
        if folder != session or not _FRAME_KEY.fullmatch(frame):
            raise bad(f"unexpected sample {key!r}")
        if int(frame) != expected:
            raise bad(f"sample {key!r} out of order (expected frame {expected})")
        if list(members) != exts:
            got = ", ".join(f".{ext}" for ext in members)
            raise bad(f"sample {key!r} has members {got} (expected .json, .{encoding})")
        yield Sample(session, expected, tuple((f"{key}.{ext}", members[ext]) for ext in exts))
        expected += 1


def read_session_tar(
    out: Output, session: str, path: str, encoding: str
) -> Generator[Sample, None, SessionTar]:
    """Stream the samples of the session tar ``path`` on ``out.fs``, checking them; return
    (as the generator's value) what it is: its sample count, sha256 and size."""
    with out.fs.open(path, "rb") as raw:
        reader = HashingReader(raw)
        n = 0
        for sample in _session_samples(cast(IO[bytes], reader), session, encoding, path):
            n += 1
            yield sample
        reader.drain()
    return SessionTar(session, path, n, reader.hash.hexdigest(), reader.count)


def _result(gen: Generator[Any, None, R]) -> R:
    """Run ``gen`` to its end and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return cast(R, done.value)


def describe_session_tar(out: Output, session: str, path: str, encoding: str = "npy") -> SessionTar:
    """Read a session tar once: its sample count and sha256 (checking its members)."""
    return _result(read_session_tar(out, session, path, encoding))
