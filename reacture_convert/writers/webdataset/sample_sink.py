"""A session's samples built as validation reads its bundle: ``SampleSink``, a ``ReadSink``.

Validation hands over the frames in blocks (on its frames thread) and the rows in blocks (on its
own thread). The sink turns each block of rows into the ``.json`` members of the frames its
periodic rows name (``row_documents``: each row encoded once, from the rows table's
columns), and pairs them, in frame order, with the frames as they come: each complete sample
(``.json`` then the ``.npy``, ``.png`` or ``.webp`` picture) goes to ``add``, one sample at a
time, from whichever thread completed it. So the frames are read once, for validation, the Zarr
chunks and the samples alike, and data.jsonl is parsed once.

Pairing. Frame ``i`` takes the ``i``-th periodic row, which must name frame ``i``; the event and
player_action rows since the previous periodic row are its events; rows after the last periodic
row belong to no sample (the rows table keeps them). A bundle that does not pair up (a periodic
row naming another frame, more frames than rows or the reverse, no usable timestamps) is not
valid: the sink stops, drops what it holds, and ``check`` says why.

Memory. When frames and rows are read at once, the side that runs ahead waits once it holds
``FRAME_BYTES`` of frames, or ``SAMPLES_AHEAD`` samples' JSON, that the other side has not
caught up with (and stops waiting when that side's pass ends). When they are read in turns on
one thread, validation keeps them in step (``validate._in_turns``) and the sink never waits.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from reacture_convert.arrow import numeric_array
from reacture_convert.errors import ConfigError
from reacture_convert.formats.wds.encodings import check_encoding, encode_image
from reacture_convert.formats.wds.sample_json import (
    record_document,
    row_document,
    sample_document,
)
from reacture_convert.ingest.npy import npy_bytes
from reacture_convert.ingest.rowscan import KINDS, RowBlock
from reacture_convert.output.naming import is_safe_name
from reacture_convert.writers.rows import block_records

__all__ = ["FRAME_BYTES", "SAMPLES_AHEAD", "Member", "SampleSink", "row_documents"]

FRAME_BYTES: Final = 16 << 20  # frames held, waiting for their rows
SAMPLES_AHEAD: Final = 4096  # samples' JSON held, waiting for their frames
_PERIODIC: Final = KINDS.index("periodic")

Member = tuple[str, Sequence[Any]]  # name, data in pieces


def row_documents(block: RowBlock) -> list[bytes]:
    """Every row of a scanned block as the sample struct, encoded, in block order: the rows
    shaped like the game's from their columns in the rows table (``writers.rows.block_records``
    then ``record_document``), the others through ``row_document``. Each is the ``row`` or an
    ``events`` entry of a sample."""
    out = [b""] * len(block)
    fast_at = block.fast_at.tolist()
    if fast_at:
        records = block_records(block)
        if block.slow:
            records = records.take(numeric_array(block.fast_at, pa.int64()))
        for at, rec in zip(fast_at, records.to_pylist(), strict=True):
            out[at] = record_document(rec)
    for at, row in zip(block.slow_at.tolist(), block.slow, strict=True):
        out[at] = row_document(row)
    return out


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
    return (encode_image(frame, encoding),)


class SampleSink:
    """Pairs the rows and frames that validation reads into samples and hands each one's two
    members to ``add`` (see the module doc). ``check(n_frames)`` after the read: None when
    exactly ``n_frames`` samples were handed over, else why not."""

    block_frames = 64  # any size will do (beside the Zarr writer, its blocks are used)

    def __init__(self, session: str, encoding: str, add: Callable[[Sequence[Member]], None]):
        if not is_safe_name(session):
            raise ConfigError(
                f"session name {session!r} is not safe in a WebDataset key: use 1-128 "
                "characters of A-Z, a-z, 0-9, '_' and '-'"
            )
        check_encoding(encoding)
        self.session, self.encoding, self._add = session, encoding, add
        self._cond = threading.Condition()
        self._timestamps: npt.NDArray[np.float32] | None = None
        self._wait = False  # frames and rows come from two threads: the one ahead waits
        self._json: deque[bytes] = deque()  # documents of frames not here yet, in frame order
        self._frames: deque[npt.NDArray[np.uint8]] = deque()  # frames not paired yet
        self._frame_bytes = 0
        self._events: list[bytes] = []  # rows since the last periodic row
        self._named = 0  # frames named by periodic rows so far
        self._received = 0  # frames received so far
        self.written = 0  # samples handed to ``add``
        self._writing = False  # a thread is pairing
        self._ended: set[str] = set()
        self._broken: str | None = None

    # --- ReadSink -----------------------------------------------------------------------------
    def start(self, timestamps: npt.NDArray[np.float32] | None, concurrent: bool) -> None:
        self._timestamps, self._wait = timestamps, concurrent

    def frames(self, start: int, block: np.ndarray, lit: npt.NDArray[np.bool_]) -> None:
        with self._cond:
            if self._broken is not None:
                return
            if start != self._received:
                self._break(f"frames from {start} arrived after {self._received}")
                return
            self._received += len(block)
            self._frames.extend(block)
            self._frame_bytes += block.nbytes
        self._pair()
        self._hold(lambda: self._frame_bytes > FRAME_BYTES, "rows")

    def rows(self, block: RowBlock) -> None:
        if self._broken is not None:
            return
        ts = self._timestamps
        if ts is None:
            with self._cond:
                self._break("timestamps.npy is not usable")
            return
        documents = row_documents(block)
        kinds, frames, row_index = block.kind.tolist(), block.frame_index.tolist(), block.row_index
        samples: list[bytes] = []
        for i, document in enumerate(documents):
            if kinds[i] != _PERIODIC:
                self._events.append(document)
                continue
            frame = frames[i]
            if frame != self._named or frame >= ts.size:
                with self._cond:
                    self._break(f"line {block.line[i]} names frame {frame}, not {self._named}")
                return
            samples.append(
                sample_document(
                    self.session, frame, float(ts[frame]), int(row_index[i]), document, self._events
                )
            )
            self._events = []
            self._named += 1
        with self._cond:
            if self._broken is not None:
                return
            self._json.extend(samples)
        self._pair()
        self._hold(lambda: len(self._json) > SAMPLES_AHEAD, "frames")

    def end(self, part: str) -> None:
        with self._cond:
            self._ended.add(part)
            if part == "rows":
                self._events = []  # rows after the last periodic row: in no sample
            self._check_ends()
            self._cond.notify_all()

    # --- pairing ------------------------------------------------------------------------------
    def _hold(self, over: Callable[[], bool], other: str) -> None:
        """The side that ran ahead waits while it holds too much (``over``) and ``other`` may
        still come; it pairs what can be paired when no thread is at it, and waits while the
        other thread pairs (whichever thread pairs, the held frames or documents go down)."""
        while True:
            with self._cond:
                if not (self._wait and over() and other not in self._ended):
                    return
                if self._broken is not None:
                    return
                if self._writing or not (self._json and self._frames):
                    self._cond.wait()
                    continue
            self._pair()

    def _pair(self) -> None:
        """Hand over every sample whose document and frame are both here, in frame order; one
        thread at a time (another that finds one at it leaves its part to it)."""
        with self._cond:
            if self._writing:
                return
            self._writing = True
        try:
            while True:
                with self._cond:
                    n = min(len(self._json), len(self._frames))
                    if n == 0 or self._broken is not None:
                        self._writing = False
                        self._check_ends()
                        self._cond.notify_all()
                        return
                    pairs = [(self._json.popleft(), self._frames.popleft()) for _ in range(n)]
                    self._frame_bytes -= sum(frame.nbytes for _, frame in pairs)
                    self._cond.notify_all()
                for document, frame in pairs:
                    key = f"{self.session}/{self.written:06d}"
                    self._add(
                        (
                            (f"{key}.json", (document,)),
                            (f"{key}.{self.encoding}", _picture(frame, self.encoding)),
                        )
                    )
                    self.written += 1
        except BaseException as e:
            with self._cond:
                self._writing = False
                self._break(f"writing sample {self.written} failed ({type(e).__name__}: {e})")
            raise

    def _check_ends(self) -> None:
        """Once one side is over, what the other holds beyond it can never pair."""
        if ("rows" in self._ended and self._frames and not self._json) or (
            "frames" in self._ended and self._json and not self._frames
        ):
            self._break(
                f"frames.npy holds {self._received} frames, its periodic rows name {self._named}"
            )

    def _break(self, why: str) -> None:
        """Stop: the bundle does not pair up (or a write failed). Holds the lock."""
        if self._broken is None:
            self._broken = why
        self._json.clear()
        self._frames.clear()
        self._frame_bytes = 0
        self._cond.notify_all()

    def check(self, n_frames: int) -> str | None:
        """Why the samples handed over are not the bundle's ``n_frames`` samples, or None."""
        if self._broken is not None:
            return self._broken
        if self.written != n_frames or self._json or self._frames:
            return f"{self.written} samples written of {n_frames} frames"
        return None
