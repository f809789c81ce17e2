"""The ``zarr`` format of one session, written during the pass that validates it.

``SessionWriter`` is the validator's ``ReadSink``: it takes each block of frames (from the
validator's frames thread) and each block of rows (from its main thread) as they are read and
writes ``zarr/<session>.zarr``, ``rows/<session>.parquet`` and ``frames/<session>.parquet``
into a staging folder. Per block of frames, the sha256 of every frame and the encoding and
writing of its chunks run on a small thread pool (hashlib, zstd and file writes release the
GIL), overlapped with reading the next block and with parsing the rows; at most a few blocks
are in flight, so memory stays flat. ``complete`` adds what needs the whole report; ``discard``
drops it all. ``open_session`` is the format's entry in the writer registry.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from reacture_convert import __version__
from reacture_convert.errors import InputError
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, is_damaged_member, open_file
from reacture_convert.ingest.npy import read_npy_header
from reacture_convert.ingest.rowscan import RowBlock
from reacture_convert.ingest.validate import Report
from reacture_convert.output.digests import FileDigest
from reacture_convert.output.layout import frames_table_path, rows_path, session_parts, zarr_path
from reacture_convert.phases import reached
from reacture_convert.writers.alignment import FrameLedger, frames_table, write_frames_table
from reacture_convert.writers.base import SessionContext, Written
from reacture_convert.writers.rows import RowsWriter
from reacture_convert.writers.zarr import ZarrOptions, ZarrSessionWriter

__all__ = ["SessionWriter", "open_session", "zarr_attributes"]

_IN_FLIGHT_BYTES = 32 << 20  # frame blocks queued or being encoded (at least two blocks)


def zarr_attributes(
    session: str, bundle: BundleRef, report: Report, hashes: Mapping[str, str]
) -> dict[str, Any]:
    """Group attributes: metadata, provenance and how the pictures are stored. No clock times,
    so the same bundle always gives the same bytes."""
    return {
        "session": session,
        "prefix": bundle.prefix,
        "metadata_session_id": report.metadata_session_id,
        "metadata": dict(report.metadata or {}),
        "provenance": {
            "source": bundle.source,
            "files": {role: ref.name for role, ref in sorted(bundle.files.items())},
            "sha256": dict(sorted(hashes.items())),
            "converter": "reacture-convert",
            "converter_version": __version__,
        },
        "frames": {
            "layout": "N x height x width x RGB, uint8, exact bytes of frames.npy",
            "orientation": "bottom-up",
            "note": "WebGL readPixels order: row 0 is the bottom of the picture; "
            "frames[:, ::-1] shows it right way up",
            "blank_frames": report.blank_frames,
        },
        "timestamps": {
            "unit": "ms since game start",
            "dtype": "float32, exact bytes of timestamps.npy",
        },
    }


def _n_frames(bundle: BundleRef, opts: StorageOptions | None) -> int:
    """N from frames.npy's header (0 when it is unusable or unreadable: validation then rejects
    the bundle)."""
    ref = bundle.files.get("frames.npy")
    if ref is None:
        return 0
    try:
        with open_file(ref, opts) as f:
            header, _ = read_npy_header(f, ref.size, ref.name)
    except Exception as e:
        if is_damaged_member(ref, e):
            return 0  # a damaged archive member: validation says so
        raise
    return header.shape[0] if header is not None and header.shape else 0


def open_session(ctx: SessionContext, options: ZarrOptions) -> SessionWriter:
    """The ``zarr`` format's writer of a session, into an emptied staging folder."""
    ctx.out.clear_staging(ctx.stage_key)
    return SessionWriter(ctx, options)


class SessionWriter:
    """Writes a session's ``zarr`` format outputs into ``OUT/.staging/<key>`` while validation
    reads the bundle (see the module doc). ``ctx.threads``: the pool that hashes and encodes
    frame blocks (1: on the reading thread itself, and Parquet written there too)."""

    def __init__(self, ctx: SessionContext, options: ZarrOptions) -> None:
        bundle, session, out, threads = ctx.view, ctx.session, ctx.out, ctx.threads
        self.bundle, self.session, self.out = bundle, session, out
        self.provenance, self.key = ctx.provenance, ctx.stage_key
        self.opts = ctx.input_options
        self.stage = out.staging(ctx.stage_key)
        n = _n_frames(bundle, ctx.input_options)
        self.ledger = FrameLedger(n)
        self._keys = out.keys(f"{self.stage}/{zarr_path(session)}")
        self.zarr = ZarrSessionWriter(self._keys, n, {}, options)
        self.block_frames = self.zarr.block_frames
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="reacture-encode")
            if threads >= 2
            else None
        )
        self._in_flight: deque[tuple[Future[None], int]] = deque()
        self._in_flight_bytes = 0
        self._timestamps: npt.NDArray[np.float32] | None = None  # as validation read them
        rows = self._rows_path = f"{self.stage}/{rows_path(session)}"
        out.makedirs(rows.rsplit("/", 1)[0])
        self._rows_file, rows_sink = out.parquet_sink(rows)
        self.rows_writer = RowsWriter(rows_sink, session, background=threads >= 2)

    # --- ReadSink -----------------------------------------------------------------------------
    def start(self, timestamps: npt.NDArray[np.float32] | None, concurrent: bool) -> None:
        self._timestamps = timestamps

    def frames(self, start: int, block: np.ndarray, lit: npt.NDArray[np.bool_]) -> None:
        if start == 0:
            reached("staging", self.session)
        self.ledger.mark_blank(start, lit)
        if self._pool is None:
            self._encode(start, block)
            return
        while self._in_flight and self._in_flight_bytes + block.nbytes > _IN_FLIGHT_BYTES:
            self._settle_one()
        task = self._pool.submit(self._encode, start, block)
        self._in_flight.append((task, block.nbytes))
        self._in_flight_bytes += block.nbytes

    def _encode(self, start: int, block: np.ndarray) -> None:
        self.ledger.digest(start, block)
        self.zarr.put(self.zarr.encode_block(start, block))

    def _settle_one(self) -> None:
        task, nbytes = self._in_flight.popleft()
        self._in_flight_bytes -= nbytes
        task.result()

    def rows(self, block: RowBlock) -> None:
        self.rows_writer.add_block(block)

    def end(self, part: str) -> None:
        pass

    # --- end ----------------------------------------------------------------------------------
    def complete(self, report: Report, hashes: Mapping[str, str]) -> Written:
        """Complete the staged outputs of a valid bundle; return their parts."""
        while self._in_flight:
            self._settle_one()
        self.rows_writer.close()
        if self._rows_file is not None:
            self._rows_file.close()
        ts = self._timestamps
        if ts is None or report.n_frames is None or ts.shape != (report.n_frames,):
            raise InputError(f"{self.session}: finish() is for a valid bundle's complete read")
        self.zarr.write_timestamps(ts)
        self.zarr.write_attributes(zarr_attributes(self.session, self.provenance, report, hashes))
        path = f"{self.stage}/{frames_table_path(self.session)}"
        self.out.makedirs(path.rsplit("/", 1)[0])
        table = frames_table(self.session, ts, report.frame_rows.array, self.ledger)
        table_file, sink = self.out.parquet_sink(path)
        try:
            write_frames_table(table, sink)
        finally:
            if table_file is not None:
                table_file.close()
        if self._pool is not None:
            self._pool.shutdown()
        group = zarr_path(self.session)
        files = [FileDigest(f"{group}/{key}", *d) for key, d in self._keys.digests().items()]
        for rel, staged, file in (
            (rows_path(self.session), self._rows_path, self._rows_file),
            (frames_table_path(self.session), path, table_file),
        ):
            files.append(FileDigest(rel, *self.out.written_digest(staged, file)))
        return Written(outputs=tuple(session_parts(self.session)), files=tuple(sorted(files)))

    def discard(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.rows_writer.abort()
        if self._rows_file is not None:
            with contextlib.suppress(Exception):
                self._rows_file.close()
        self.out.clear_staging(self.key)
