"""Arrow arrays straight from numpy buffers.

``pyarrow.array`` (and ``pyarrow.scalar``, ``Schema.empty_table``) first asks whether its input is
a pandas object, which imports pandas: a quarter of a second, in a command that converts a
session in about two. The converter builds its columns here instead, from the buffers Arrow
would have made of the same values, so the Parquet bytes are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["bool_array", "empty_table", "numeric_array", "repeated_string", "string_array"]


_NUMPY: dict[pa.DataType, np.dtype[np.generic]] = {
    pa.int32(): np.dtype("<i4"),
    pa.int64(): np.dtype("<i8"),
    pa.float32(): np.dtype("<f4"),
    pa.float64(): np.dtype("<f8"),
}


def _validity(valid: npt.NDArray[np.bool_] | None) -> pa.Buffer | None:
    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def numeric_array(
    values: npt.NDArray[np.generic], type: pa.DataType, valid: npt.NDArray[np.bool_] | None = None
) -> pa.Array:
    """``values`` (converted to ``type``'s numpy dtype) as an Arrow array; null where not
    ``valid``."""
    data: npt.NDArray[np.generic] = np.ascontiguousarray(values, dtype=_NUMPY[type])
    return pa.Array.from_buffers(type, len(data), [_validity(valid), pa.py_buffer(data)])


def bool_array(values: npt.NDArray[np.bool_]) -> pa.Array:
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def string_array(values: Sequence[str]) -> pa.Array:
    """Strings (none null) as an Arrow string array."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def repeated_string(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times."""
    raw = value.encode()
    offsets = np.arange(0, len(raw) * n + 1, max(1, len(raw)), dtype=np.int32)[: n + 1]
    if not raw:
        offsets = np.zeros(n + 1, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)]
    )


def empty_table(schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
