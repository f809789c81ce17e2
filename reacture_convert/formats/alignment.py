"""The alignment table ``frames/<session>.parquet``: its schema, and the frame digests it holds.

For frame ``i``: its time from timestamps.npy (float32, exact), the ``row_index`` of the periodic
row whose ``visual_frame_path`` names it, and the sha256 of its 49,152 bytes as stored. The Zarr
index, the Parquet row and the WebDataset key of one frame all meet here; ``verify`` recomputes
every column from the outputs (``frame_digests``), the converter writes them
(``writers.alignment``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

__all__ = ["FRAMES_SCHEMA", "frame_digests"]

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
