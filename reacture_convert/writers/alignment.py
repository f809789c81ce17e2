"""The alignment table ``frames/<session>.parquet``: one row per frame, the proof of alignment.

For frame ``i``: its time from timestamps.npy (float32, exact), the ``row_index`` of the periodic
row whose ``visual_frame_path`` names it, and the sha256 of its 49,152 bytes as stored. The Zarr
index, the Parquet row and the WebDataset key of one frame all meet here; ``verify`` recomputes
every column from the outputs (and, with ``--sources``, from the bundle).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FRAMES_SCHEMA", "frame_digests", "frames_table", "write_frames_table"]

FRAMES_SCHEMA = pa.schema(
    [
        ("session", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_ms", pa.float32()),
        ("row_index", pa.int64()),
        ("frame_sha256", pa.string()),
        ("blank", pa.bool_()),  # extension: the frame is all zeros
    ]
)


def frame_digests(block: np.ndarray) -> list[str]:
    """sha256 hex digest of each frame of a (k, 128, 128, 3) uint8 block, as stored (C order)."""
    block = np.ascontiguousarray(block)
    return [hashlib.sha256(block[i].data).hexdigest() for i in range(block.shape[0])]


def frames_table(
    session: str,
    timestamps: np.ndarray,
    frame_rows: Sequence[int],
    digests: Sequence[str],
    blank: Sequence[bool],
) -> pa.Table:
    n = len(digests)
    rows = np.asarray(frame_rows, dtype=np.int64)
    return pa.table(
        {
            "session": pa.array([session] * n, pa.string()),
            "frame_index": pa.array(np.arange(n, dtype=np.int32)),
            "timestamp_ms": pa.array(np.asarray(timestamps, dtype="<f4")),
            "row_index": pa.array(rows, mask=rows < 0),
            "frame_sha256": pa.array(list(digests), pa.string()),
            "blank": pa.array(list(blank), pa.bool_()),
        },
        schema=FRAMES_SCHEMA,
    )


def write_frames_table(table: pa.Table, sink: str | IO[bytes], filesystem: Any = None) -> None:
    pq.write_table(table, sink, filesystem=filesystem, compression="zstd")
