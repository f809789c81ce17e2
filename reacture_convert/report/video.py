"""A converted session as a video: ``write_video(OUT, session, "game.mp4")``.

The frames come from the training readers (``read.sources``), so they are what a loader hands
out with ``flip=True, skip_blank=False``: right way up by the one orientation rule, every frame
of the recording in order, blank ones too. The Zarr store is read when it holds the session
(random access, chunk by chunk), else the WebDataset shards (streamed; shards written with
``--shuffle`` are first put back in frame order in a temporary file beside the video).

Each frame is shown at its real time: the stream's time base is a millisecond and a frame's
presentation time is its ``timestamps.npy`` value minus the first frame's, rounded (and kept
strictly increasing: a frame less than 1 ms after the previous one gets the next millisecond).
Pauses stay pauses; the 10 Hz of the metadata is not assumed anywhere.

Encoding: H.264 (libx264, yuv420p, ``crf``), what every player and browser shows; or with
``lossless=True`` libx264rgb at qp 0 (RGB, bit exact, but many players, browsers among them,
cannot show it). Frames are read and encoded ``chunk`` at a time: memory stays bounded however
long the session. The file appears complete or not at all (a temporary file, renamed).

PyAV (``av``, with FFmpeg in its wheels) is optional: ``pip install 'reacture-convert[video]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.storage import Output, fsync_dir
from reacture_convert.read.batch import FRAME_SHAPE
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.session import OutLike, StoredDataset, as_output, open_stored
from reacture_convert.read.sources import ShardSource, ZarrSource

__all__ = [
    "INSTALL_HINT",
    "TIME_BASE",
    "VideoResult",
    "VideoSource",
    "import_av",
    "video_source",
    "write_video",
]

TIME_BASE: Final = Fraction(1, 1000)
"""A frame's presentation time is counted in milliseconds."""
INSTALL_HINT: Final = (
    "exporting a video needs PyAV: pip install 'reacture-convert[video]' (or: pip install av)"
)
DEFAULT_CHUNK: Final = 64  # frames read and encoded at a time (one Zarr chunk by default)
DEFAULT_CRF: Final = 18  # x264's "visually lossless" end of the scale

Frames = npt.NDArray[np.uint8]
Times = npt.NDArray[np.float64]


@dataclass(frozen=True)
class VideoResult:
    """What ``write_video`` wrote: ``frames`` (every frame of the session), ``duration`` (seconds
    from the first frame's time to the last's), ``bytes`` (the file's size), and where from
    (``source``: ``"zarr"`` or ``"wds"``)."""

    path: str
    session: str
    source: str
    frames: int
    duration: float
    bytes: int
    codec: str


def import_av() -> Any:
    """The ``av`` module, imported now; ``ConfigError`` saying how to install it otherwise."""
    try:
        return importlib.import_module("av")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


@dataclass(frozen=True)
class VideoSource:
    """Where a session's video is read from: ``form`` (``"zarr"`` or ``"wds"``), the
    session's full name and its ``frames``, in the opened dataset ``ds``."""

    ds: StoredDataset[Any]
    form: str
    session: str
    frames: int


def video_source(out: Output, session: str) -> VideoSource:
    """Which stored form to read ``session`` (a name, or the prefix of exactly one session)
    from: the Zarr store when it holds the session, else the shards. ``ConfigError`` when
    neither does."""
    ds = open_stored(out)
    index = ds.wds_index
    in_shards = {s.session: s.samples for s in index.sessions} if index else {}
    known = sorted({*ds.sessions, *in_shards})
    name = session if session in known else _by_prefix(session, known, out.url)
    if name in ds.sessions:
        return VideoSource(ds, "zarr", name, ds[name].n_frames)
    return VideoSource(ds, "wds", name, in_shards[name])


def _by_prefix(prefix: str, known: list[str], where: str) -> str:
    matches = [n for n in known if n.startswith(prefix)] if prefix else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(
            f"{prefix!r} names {len(matches)} sessions of {where} ({', '.join(matches)}); "
            "give one session's full name"
        )
    raise ConfigError(
        f"{prefix!r} is not a converted session of {where} (sessions: {', '.join(known) or 'none'})"
    )


def write_video(
    out: OutLike,
    session: str,
    path: str | os.PathLike[str],
    *,
    storage_options: Any = None,
    lossless: bool = False,
    crf: int = DEFAULT_CRF,
    chunk: int = DEFAULT_CHUNK,
) -> VideoResult:
    """Write converted session ``session`` (a name or a unique prefix) of ``out`` to the MP4
    file ``path`` (local; replaced atomically if it exists), at its real frame times, right way
    up (see the module doc). ``ConfigError`` without PyAV or for an unknown session."""
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ConfigError(f"crf={crf!r}: give a whole number from 0 (best) to 51 (smallest)")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk={chunk!r}: give a whole number of frames, 1 or more")
    av = import_av()
    output = as_output(out, storage_options)
    where = video_source(output, session)
    name, total = where.session, where.frames
    final = Path(path).absolute()
    if final.is_dir():
        raise ConfigError(f"{final} is a folder: give the name of the video file to write")
    if total == 0:
        raise OutputError(f"{output.url}: session {name!r} holds no frames: no video to make")
    codec = "libx264rgb" if lossless else "libx264"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "wb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise OutputError(f"{final}: cannot write the video ({e}); give another --mp4 FILE") from e
    try:
        with contextlib.ExitStack() as stack, f:
            chunks = _chunks(where, chunk, final.parent, stack)
            frames, duration = _encode(av, chunks, f, lossless, crf)
            if frames != total:  # the stored form holds fewer frames than it says
                raise OutputError(
                    f"{output.url}: session {name!r} gave {frames} frames of {total}; check "
                    "it with reacture-convert verify, or convert it again"
                )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(str(final.parent))
    finally:
        tmp.unlink(missing_ok=True)
    return VideoResult(str(final), name, where.form, frames, duration, final.stat().st_size, codec)


# --- reading ------------------------------------------------------------------------------------


def _options(name: str) -> ReadOptions:
    """Every frame of ``name``, right way up (the readers' orientation rule)."""
    return ReadOptions(flip=True, skip_blank=False, max_gap_ms=None, sessions=(name,))


def _chunks(
    where: VideoSource, chunk: int, scratch: Path, stack: contextlib.ExitStack
) -> Iterator[tuple[Frames, Times]]:
    """The session's frames (right way up) and their times in ms, ``chunk`` at a time, in
    frame order."""
    options = _options(where.session)
    if where.form == "zarr":
        zarr = ZarrSource(where.ds, options, cache_chunks=2)
        return _in_order(_batches(zarr.iter_batches(chunk, shuffle=False)), where.session)
    shards = ShardSource(where.ds.out, options)
    batches = _batches(shards.iter_batches(chunk, shuffle=False))
    if shards.index.shuffle_seed is None:
        return _in_order(batches, where.session)
    return _reordered(batches, where.frames, chunk, scratch, stack)


def _batches(batches: Iterator[dict[str, Any]]) -> Iterator[tuple[Frames, Times, Any]]:
    for b in batches:
        yield b["frame"], b["frame_timestamp_ms"], b["frame_index"]


def _in_order(
    batches: Iterator[tuple[Frames, Times, Any]], name: str
) -> Iterator[tuple[Frames, Times]]:
    expected = 0
    for frames, times, index in batches:
        if not np.array_equal(index, np.arange(expected, expected + len(index))):
            raise OutputError(
                f"session {name!r}: frames are not stored in order (frame {expected} expected, "
                f"{int(index[0])} found); check the dataset with reacture-convert verify"
            )
        expected += len(index)
        yield frames, times


def _reordered(
    batches: Iterator[tuple[Frames, Times, Any]],
    total: int,
    chunk: int,
    scratch: Path,
    stack: contextlib.ExitStack,
) -> Iterator[tuple[Frames, Times]]:
    """Frames that come in any order (shuffled shards) put in frame order through a temporary
    file (memory stays bounded), then handed out ``chunk`` at a time."""
    spill = stack.enter_context(tempfile.TemporaryFile(dir=scratch, prefix=".video-"))
    spill.truncate(total * int(np.prod(FRAME_SHAPE)))
    frames_at = np.memmap(spill, dtype=np.uint8, mode="r+", shape=(total, *FRAME_SHAPE))
    times = np.full(total, np.nan)
    for frames, ts, index in batches:
        frames_at[index] = frames
        times[index] = ts
    if np.isnan(times).any():
        missing = int(np.flatnonzero(np.isnan(times))[0])
        raise OutputError(
            f"the shards lack frame {missing} of the session ({total} frames in index.json); "
            "check them with reacture-convert verify, or convert the session again"
        )
    for start in range(0, total, chunk):
        yield np.asarray(frames_at[start : start + chunk]), times[start : start + chunk]
    del frames_at


# --- encoding -----------------------------------------------------------------------------------


def _encode(
    av: Any, chunks: Iterator[tuple[Frames, Times]], f: IO[bytes], lossless: bool, crf: int
) -> tuple[int, float]:
    """Encode the frames into the MP4 file ``f``; ``(frames, seconds first to last)``."""
    height, width, _ = FRAME_SHAPE
    with av.open(f, mode="w", format="mp4") as container:
        if lossless:
            stream = container.add_stream("libx264rgb", options={"qp": "0"})
            stream.pix_fmt = "rgb24"
        else:
            stream = container.add_stream("libx264", options={"crf": str(crf)})
            stream.pix_fmt = "yuv420p"
        stream.width, stream.height = width, height
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        first: float | None = None
        last_pts = -1
        n = 0
        for frames, times in chunks:
            for frame, t in zip(frames, times.tolist(), strict=True):
                first = t if first is None else first
                pts = max(round(t - first), last_pts + 1)
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                picture.pts, picture.time_base = pts, TIME_BASE
                container.mux(stream.encode(picture))
                last_pts, n = pts, n + 1
        container.mux(stream.encode(None))
    return n, max(last_pts, 0) / 1000
