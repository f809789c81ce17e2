"""Arrow arrays straight from numpy buffers and Python values, without pandas.

``pyarrow.array`` (and ``pyarrow.scalar``, ``Schema.empty_table``) first asks whether its input is
a pandas object, which imports pandas: 0.15-0.25 s, in a command that converts a session in about
one. The converter and the catalog build their columns here instead, from the buffers Arrow
would have made of the same values (``array_of`` for Python values of the nested types the
catalog uses), so the arrays, and the Parquet bytes written from them, are the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "array_of",
    "bool_array",
    "empty_table",
    "numeric_array",
    "numeric_values",
    "repeated_string",
    "string_array",
]


_NUMPY: dict[pa.DataType, np.dtype[np.generic]] = {
    pa.int32(): np.dtype("<i4"),
    pa.int64(): np.dtype("<i8"),
    pa.float32(): np.dtype("<f4"),
    pa.float64(): np.dtype("<f8"),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_UNIT = {
    "s": dt.timedelta(seconds=1),
    "ms": dt.timedelta(milliseconds=1),
    "us": dt.timedelta(microseconds=1),
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


def numeric_values(array: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    """The values of a numeric array without nulls, as numpy (``Array.to_numpy`` imports
    pandas): a view of its buffer when it is one chunk."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        raise ValueError("numeric_values: the array has nulls")
    dtype = np.dtype(array.type.to_pandas_dtype())
    data = array.buffers()[1]
    if data is None:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype)[array.offset : array.offset + len(array)]


def bool_array(
    values: npt.NDArray[np.bool_], valid: npt.NDArray[np.bool_] | None = None
) -> pa.Array:
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [_validity(valid), pa.py_buffer(bits)])


def string_array(values: Sequence[str | None]) -> pa.Array:
    """Strings (None: null) as an Arrow string array."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    valid = np.fromiter((v is not None for v in values), bool, len(values))
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [_validity(valid), pa.py_buffer(offsets), data]
    )


def repeated_string(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times."""
    raw = value.encode()
    offsets = np.arange(0, len(raw) * n + 1, max(1, len(raw)), dtype=np.int32)[: n + 1]
    if not raw:
        offsets = np.zeros(n + 1, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)]
    )


def _timestamp_array(values: Sequence[Any], t: pa.TimestampType) -> pa.Array:
    """Datetimes (a naive one counts as UTC, as pyarrow takes it) as ``t``."""
    unit = _UNIT[t.unit]

    def ticks(v: dt.datetime) -> int:
        return ((v if v.tzinfo is not None else v.replace(tzinfo=dt.UTC)) - _EPOCH) // unit

    data = np.fromiter((0 if v is None else ticks(v) for v in values), np.int64, len(values))
    valid = np.fromiter((v is not None for v in values), bool, len(values))
    return pa.Array.from_buffers(t, len(values), [_validity(valid), pa.py_buffer(data)])


def array_of(values: Sequence[Any], t: pa.DataType) -> pa.Array:
    """Python values (None: null) as an Arrow array of type ``t``: what ``pa.array(values, t)``
    gives, for strings, 32/64-bit ints and floats, booleans, timestamps (from datetimes), lists
    and structs (from dicts; keys the struct lacks are ignored, fields the dict lacks are null)
    of these. Raises TypeError for another type."""
    n = len(values)
    valid = np.fromiter((v is not None for v in values), bool, n)
    if pa.types.is_string(t):
        return string_array(values)
    if t in _NUMPY:
        data = np.fromiter((0 if v is None else v for v in values), _NUMPY[t], n)
        return numeric_array(data, t, valid)
    if pa.types.is_boolean(t):
        return bool_array(np.fromiter((bool(v) for v in values), bool, n), valid)
    if pa.types.is_timestamp(t):
        return _timestamp_array(values, t)
    if pa.types.is_list(t):
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([0 if v is None else len(v) for v in values], out=offsets[1:])
        items = array_of([x for v in values if v is not None for x in v], t.value_type)
        return pa.Array.from_buffers(
            t, n, [_validity(valid), pa.py_buffer(offsets)], children=[items]
        )
    if pa.types.is_struct(t):
        children = [
            array_of([None if v is None else v.get(f.name) for v in values], f.type) for f in t
        ]
        return pa.Array.from_buffers(t, n, [_validity(valid)], children=children)
    raise TypeError(f"array_of: no conversion to Arrow type {t}")


def empty_table(schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
