"""data.jsonl rows -> ``rows/<session>.parquet``, losslessly, and back.

Each row becomes one record of ``ROWS_SCHEMA``: leading columns (session, row_index, kind,
type, event, action, timestamp_ms, frame_index), the row's own fields as nested columns, and
``extra``: a JSON deep-merge patch holding whatever the typed columns cannot represent exactly:

- fields the schema does not know, at any depth;
- values of the wrong type for their column (a string where a number belongs, a float in an
  integer column), including whole lists when an element does not fit;
- explicit JSON nulls (a null column means "absent");
- numbers whose JSON type would not survive: an integer beyond 2**53 in a float column, or a
  float with an integral value (rebuilding gives back ``int`` for integral floats up to 2**53,
  which is what ``JSON.stringify`` wrote; an override in ``extra`` restores the exceptions).

``extra`` is null when nothing is left over, which is every row the game writes. The patch is
merged into the rebuilt typed row: objects merge key by key, a list of the same length merges
element-wise (``{}`` meaning "this element as typed"), anything else replaces.

Rows whose shape is exactly the schema's go straight to ``pa.array(list_of_dicts, type=struct)``;
only the others are split field by field in Python. "Exactly" is proved at C speed:
``msgspec.convert`` against the row's Struct (types, nulls, unknown fields), substring tests on
the re-encoded row for integral floats (msgspec writes them ``X.0`` below 1e16; larger ones are
beyond 2**53 and come back as floats anyway), and pyarrow itself, which refuses an integer
beyond 2**53 in a float64 column: a batch it refuses is redone with the exact split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Final

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.ingest.jsonl import ParsedRow
from reacture_convert.ingest.schema import (
    ROW_FIELD_COLUMNS,
    ROW_TYPES,
    ROWS_SCHEMA,
    PlayerActionRow,
    is_exact_shape,
)

__all__ = ["ROWS_BATCH", "RowsWriter", "iter_record_batches", "write_rows", "rebuild_row"]

ROWS_BATCH: Final = 4096

_EXACT_INT: Final = 2**53  # integral floats up to this come back as int (pyarrow's bound too)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# How msgspec writes an integral float below 1e16 (or a string holding ".0", then: harmless).
_INTEGRAL_FLOAT_MARKS: Final = (b".0,", b".0}", b".0]")

_RECORD_TYPE: Final = pa.struct([f for f in ROWS_SCHEMA if f.name != "session"])
_ROW_FIELDS: Final[dict[str, pa.DataType]] = {f.name: f.type for f in ROW_FIELD_COLUMNS}
_STRING_LEADING: Final = ("type", "event", "action")
# Rebuilt key order per row type: the Struct's field order (the game's), then any other column.
_KEY_ORDER: Final[dict[str, tuple[str, ...]]] = {
    type_name: tuple(cls.__struct_fields__)
    + tuple(n for n in (*_STRING_LEADING, *_ROW_FIELDS) if n not in cls.__struct_fields__)
    for type_name, cls in ROW_TYPES.items()
}
_NO_PATCH: Final = object()


# --- splitting a row into typed columns and an exact patch ---------------------------------------
def _split_scalar(value: Any, t: pa.DataType) -> tuple[Any, Any]:
    """``(typed value or None, patch or _NO_PATCH)`` for a scalar column."""
    if pa.types.is_float64(t):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, value
        if isinstance(value, float):
            integral = value.is_integer() and abs(value) <= _EXACT_INT
            return value, (value if integral else _NO_PATCH)  # keep a float a float
        if abs(value) <= _EXACT_INT:
            return value, _NO_PATCH
        return None, value  # beyond 2**53: kept exactly in extra
    if pa.types.is_int64(t):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (value, _NO_PATCH) if ok and _INT64_MIN <= value <= _INT64_MAX else (None, value)
    if pa.types.is_string(t):
        return (value, _NO_PATCH) if isinstance(value, str) else (None, value)
    if pa.types.is_boolean(t):
        return (value, _NO_PATCH) if isinstance(value, bool) else (None, value)
    raise TypeError(f"no split rule for Arrow type {t}")


def _split_struct(value: dict[str, Any], t: pa.StructType) -> tuple[dict[str, Any], Any]:
    typed: dict[str, Any] = {}
    patch: dict[str, Any] = {}
    for key, item in value.items():
        idx = t.get_field_index(key)
        if idx < 0:
            patch[key] = item
            continue
        typed[key], sub = _split(item, t.field(idx).type)
        if sub is not _NO_PATCH:
            patch[key] = sub
    return typed, (patch if patch else _NO_PATCH)


def _split_list(value: list[Any], t: pa.ListType) -> tuple[list[Any] | None, Any]:
    item_type = t.value_type
    typed: list[Any] = []
    patches: list[Any] = []
    for item in value:
        if item is None:  # a null element is representable in a list
            typed.append(None)
            patches.append({})
            continue
        if pa.types.is_struct(item_type) and not isinstance(item, dict):
            return None, value  # an element that does not fit: keep the whole list in extra
        sub_typed, sub = _split(item, item_type)
        if sub is not _NO_PATCH and not isinstance(sub, dict):
            return None, value
        typed.append(sub_typed)
        patches.append({} if sub is _NO_PATCH else sub)
    return typed, (patches if any(patches) else _NO_PATCH)


def _split(value: Any, t: pa.DataType) -> tuple[Any, Any]:
    """Split a JSON value against column type ``t`` into its typed part and its exact patch."""
    if value is None:
        return None, None  # an explicit null, distinct from an absent field
    if pa.types.is_struct(t):
        return _split_struct(value, t) if isinstance(value, dict) else (None, value)
    if pa.types.is_list(t):
        return _split_list(value, t) if isinstance(value, list) else (None, value)
    return _split_scalar(value, t)


def _record_exact(row: ParsedRow) -> dict[str, Any] | None:
    """The record of a row whose shape is exactly the schema's, else None (C-speed checks)."""
    obj = row.obj
    cls = ROW_TYPES[obj["type"]]
    if not is_exact_shape(obj, cls):
        return None
    encoded = msgspec.json.encode(obj)
    if any(mark in encoded for mark in _INTEGRAL_FLOAT_MARKS):
        return None
    rec = dict(obj)
    if cls is PlayerActionRow:
        rec["timestamp_ms"] = rec.pop("timestamp")
    rec["row_index"] = row.row_index
    rec["kind"] = row.kind
    rec["frame_index"] = row.frame_index
    return rec


def _record_split(row: ParsedRow) -> dict[str, Any]:
    """The record of any row: typed columns plus the ``extra`` patch."""
    is_action = row.obj["type"] == "player_action"
    clock = "timestamp" if is_action else "timestamp_ms"
    rec: dict[str, Any] = {
        "row_index": row.row_index,
        "kind": row.kind,
        "frame_index": row.frame_index,
    }
    patch: dict[str, Any] = {}
    for key, value in row.obj.items():
        if key == clock:
            col, t = "timestamp_ms", pa.int64()
        elif key in _STRING_LEADING:
            col, t = key, pa.string()
        elif key in _ROW_FIELDS and not (is_action and key == "timestamp"):
            col, t = key, _ROW_FIELDS[key]
        else:  # unknown, or a name the leading columns use for something else
            patch[key] = value
            continue
        rec[col], sub = _split(value, t)
        if sub is not _NO_PATCH:
            patch[key] = sub
    rec["extra"] = msgspec.json.encode(patch).decode() if patch else None
    return rec


def _check_type(row: ParsedRow) -> None:
    row_type = row.obj.get("type")
    if not isinstance(row_type, str) or row_type not in ROW_TYPES:
        raise ValueError(f"row {row.row_index}: type {row_type!r} is not a known row type")


def _batch(rows: list[ParsedRow], session: str) -> pa.RecordBatch:
    """One record batch: the fast records when pyarrow takes them all, else the exact split."""
    for row in rows:
        _check_type(row)
    records = [_record_exact(row) or _record_split(row) for row in rows]
    try:
        struct = pa.array(records, type=_RECORD_TYPE)
    except pa.ArrowInvalid:  # an integer beyond 2**53 in a float column, somewhere
        records = [_record_split(row) for row in rows]
        struct = pa.array(records, type=_RECORD_TYPE)
    session_col = pa.array([session] * len(rows), type=pa.string())
    return pa.RecordBatch.from_arrays([session_col, *struct.flatten()], schema=ROWS_SCHEMA)


def iter_record_batches(
    rows: Iterable[ParsedRow], session: str, batch_rows: int = ROWS_BATCH
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``ROWS_SCHEMA``, ``batch_rows`` rows each (the last may be shorter)."""
    pending: list[ParsedRow] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= batch_rows:
            yield _batch(pending, session)
            pending = []
    if pending:
        yield _batch(pending, session)


def write_rows(
    rows: Iterable[ParsedRow],
    session: str,
    sink: str | IO[bytes],
    *,
    filesystem: Any = None,
) -> int:
    """Stream ``rows`` into one Parquet file (zstd); returns the number of rows written.

    Memory is bounded by one batch. The same rows give byte-identical files: no timestamps are
    written, and row groups follow the fixed batch size. ``filesystem`` is a pyarrow or fsspec
    filesystem for a path ``sink``.
    """
    with RowsWriter(sink, session, filesystem=filesystem) as writer:
        for row in rows:
            writer.add(row)
    return writer.count


class RowsWriter:
    """The push form of ``write_rows``: ``add`` rows one by one (as a validator reads them),
    ``close`` at the end. Batches of ``batch_rows``; memory bounded by one batch."""

    def __init__(
        self,
        sink: str | IO[bytes],
        session: str,
        *,
        filesystem: Any = None,
        batch_rows: int = ROWS_BATCH,
    ) -> None:
        self.session = session
        self.batch_rows = batch_rows
        self.pending: list[ParsedRow] = []
        self.count = 0
        self.writer = pq.ParquetWriter(
            sink, ROWS_SCHEMA, filesystem=filesystem, compression="zstd", write_statistics=True
        )

    def add(self, row: ParsedRow) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            batch = _batch(self.pending, self.session)
            self.writer.write_batch(batch)
            self.count += batch.num_rows
            self.pending = []

    def close(self) -> int:
        self._flush()
        self.writer.close()
        return self.count

    def __enter__(self) -> RowsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.writer.close()


# --- rebuilding ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A typed column value as JSON: absent (None) struct fields dropped, integral floats int."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INT:
        return int(value)
    return value


def _merge(base: Any, patch: Any) -> Any:
    """Apply an ``extra`` patch (see the module docstring for the rules)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        for key, sub in patch.items():
            base[key] = _merge(base[key], sub) if key in base else sub
        return base
    if isinstance(patch, list) and isinstance(base, list) and len(patch) == len(base):
        return [b if p == {} else _merge(b, p) for b, p in zip(base, patch, strict=True)]
    return patch


def rebuild_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One record of ``table.to_pylist()`` -> the original JSON object, equal as parsed JSON."""
    is_action = record.get("kind") == "action"
    out: dict[str, Any] = {}
    for key in _KEY_ORDER["player_action" if is_action else "robot_state"]:
        if key == "timestamp" and is_action:
            value = record.get("timestamp_ms")
        elif key == "timestamp_ms" and is_action:
            continue
        else:
            value = record.get(key)
        if value is not None:
            out[key] = _plain(value)
    extra = record.get("extra")
    if extra is not None:
        out = _merge(out, msgspec.json.decode(extra))
    return out
