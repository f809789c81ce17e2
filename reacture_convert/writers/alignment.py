"""Writing the alignment table ``frames/<session>.parquet``: one row per frame, the proof of
alignment (its columns: ``formats.alignment``). ``verify`` recomputes every column from the
outputs (and, with ``--sources``, from the bundle).

A converter keeps the per-frame columns as numpy arrays while it reads (``FrameLedger``: 33
bytes a frame, filled from any thread), so a long session costs no Python object per frame.
"""

from __future__ import annotations

import hashlib
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.arrow import bool_array, numeric_array, repeated_string
from reacture_convert.formats.alignment import FRAMES_SCHEMA

__all__ = ["FrameLedger", "frames_table", "write_frames_table"]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class FrameLedger:
    """The per-frame columns of a session being converted: sha256 (raw, 32 bytes) and blank.

    ``digest(start, block)`` and ``mark_blank(start, lit)`` fill disjoint slices and may run on
    several threads at once (hashlib releases the GIL for a frame's 49,152 bytes)."""

    def __init__(self, n_frames: int) -> None:
        self.sha256 = np.zeros((n_frames, 32), dtype=np.uint8)
        self.blank = np.zeros(n_frames, dtype=bool)

    def digest(self, start: int, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block)
        out = self.sha256[start : start + block.shape[0]]
        for i in range(block.shape[0]):
            out[i] = np.frombuffer(hashlib.sha256(block[i].data).digest(), dtype=np.uint8)

    def mark_blank(self, start: int, lit: npt.NDArray[np.bool_]) -> None:
        self.blank[start : start + lit.shape[0]] = ~lit


def _hex_column(raw: npt.NDArray[np.uint8]) -> pa.Array:
    """Hex digests as an Arrow string column, built from the raw digests without Python strings."""
    n = raw.shape[0]
    text = np.empty((n, raw.shape[1] * 2), dtype=np.uint8)
    text[:, 0::2] = _HEX[raw >> 4]
    text[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, text.size + 1, text.shape[1], dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text.reshape(-1))]
    )


def frames_table(
    session: str,
    timestamps: np.ndarray,
    frame_rows: npt.ArrayLike,
    ledger: FrameLedger,
) -> pa.Table:
    n = ledger.blank.shape[0]
    rows = np.asarray(frame_rows, dtype=np.int64)
    columns = [
        repeated_string(session, n),
        numeric_array(np.arange(n), pa.int32()),
        numeric_array(np.asarray(timestamps), pa.float32()),
        numeric_array(rows, pa.int64(), valid=rows >= 0),
        _hex_column(ledger.sha256),
        bool_array(ledger.blank),
    ]
    return pa.Table.from_arrays(columns, schema=FRAMES_SCHEMA)


def write_frames_table(table: pa.Table, sink: str | IO[bytes], filesystem: Any = None) -> None:
    pq.write_table(table, sink, filesystem=filesystem, compression="zstd")
