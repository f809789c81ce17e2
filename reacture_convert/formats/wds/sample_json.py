"""A sample's ``.json`` member: one fixed structure for every sample, encoded in C.

Every sample's JSON has the same keys with the same types, so that readers which build one table
schema from the samples (Hugging Face ``datasets``, Arrow, DuckDB) can unify them:

- ``session`` (string), ``frame_index`` (int), ``timestamp_ms`` (float: the exact float32 value
  of timestamps.npy), ``row_index`` (int), ``row`` (the periodic row that names the frame) and
  ``events`` (the event and player_action rows logged since the previous periodic row, in file
  order);
- ``row`` and every ``events`` entry are one struct, ``SAMPLE_ROW``: the typed columns of
  ``rows/<session>.parquet`` (``row_index``, ``kind``, ``type``, ``event``, ``action``,
  ``timestamp_ms``, ``frame_index``, then the row's own fields, nested) and ``extra``. Every
  field is present, null when the row lacks it (a player_action row has no ``event``,
  ``key_presses`` or ``robot.velocity``; a robot_state row no ``rubbleId``). Every number of a
  row's own fields is a float (``100`` is written ``100.0``); ``row_index``, ``timestamp_ms``
  and ``frame_index`` are ints. ``timestamp`` is robot_state's ISO string; a player_action's
  integer ``timestamp`` is in ``timestamp_ms``, as in the rows table.
- ``extra`` (JSON text, or null) holds every top-level field of the source row that the struct
  does not hold exactly under its own name: a player_action's ``timestamp``, fields the schema
  does not know, and values of another type (whose typed field keeps what fits, else null).
  The struct's fields updated by ``extra`` give the source row's values; the exact row
  (key order, ints) is rebuilt from ``rows/<session>.parquet`` at ``row_index``.

The bytes are deterministic: fixed field order and msgspec's number formatting. A converter
builds them from the blocks of rows that validation scans (``record_document``: the rows table's
columns of each row, encoded once; ``writers.webdataset.sample_sink.row_documents``), not from
rows decoded one by one (``row_document``, ``sample_json``); both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import pyarrow as pa

from reacture_convert.ingest.jsonl import ParsedRow
from reacture_convert.ingest.schema import LEADING_COLUMNS, ROW_FIELD_COLUMNS

__all__ = [
    "SAMPLE_ROW",
    "SAMPLE_TYPE",
    "record_document",
    "row_document",
    "sample_document",
    "sample_json",
]

_JSON_INT: Final = pa.int64()


def _json_type(t: pa.DataType) -> pa.DataType:
    """The type a JSON reader gives a column of type ``t``: ints are int64."""
    if pa.types.is_integer(t):
        return _JSON_INT
    if pa.types.is_list(t):
        return pa.list_(_json_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _json_type(f.type)) for f in t])
    return t


SAMPLE_ROW: Final[pa.StructType] = _json_type(
    pa.struct(
        [
            *(f for f in (*LEADING_COLUMNS, *ROW_FIELD_COLUMNS) if f.name != "session"),
            pa.field("extra", pa.string()),
        ]
    )
)
"""The Arrow type of ``row`` and of each ``events`` entry."""
SAMPLE_TYPE: Final[pa.StructType] = pa.struct(
    [
        pa.field("session", pa.string()),
        pa.field("frame_index", _JSON_INT),
        pa.field("timestamp_ms", pa.float64()),
        pa.field("row_index", _JSON_INT),
        pa.field("row", SAMPLE_ROW),
        pa.field("events", pa.list_(SAMPLE_ROW)),
    ]
)
"""The Arrow type of a whole ``.json`` member."""


# --- msgspec Structs derived from the Arrow types -------------------------------------------------
def _py_type(t: pa.DataType, name: str) -> Any:
    if pa.types.is_float64(t):
        return float
    if pa.types.is_integer(t):
        return int
    if pa.types.is_string(t):
        return str
    if pa.types.is_boolean(t):
        return bool
    if pa.types.is_list(t):
        return list[_py_type(t.value_type, name) | None]  # type: ignore[misc]
    if pa.types.is_struct(t):
        return _struct(t, name)
    raise TypeError(f"no JSON type for Arrow type {t}")


def _struct(t: pa.StructType, name: str) -> type[msgspec.Struct]:
    """A Struct with every field of ``t``, each ``X | None`` defaulting to None, encoded in
    ``t``'s field order with nulls written out; unknown fields are ignored when converting."""
    fields = [(f.name, _py_type(f.type, f"{name}_{f.name}") | None, None) for f in t]
    return msgspec.defstruct(name, fields, omit_defaults=False, forbid_unknown_fields=False)


_Row: Final = _struct(SAMPLE_ROW, "SampleRow")


class _Sample(msgspec.Struct):
    session: str
    frame_index: int
    timestamp_ms: float
    row_index: int
    row: Any
    events: list[Any]


_ENCODER: Final = msgspec.json.Encoder()
_LEADING: Final = frozenset({"row_index", "kind", "frame_index", "extra"})  # not row fields


# --- a row as the sample struct -------------------------------------------------------------------
def _fit(value: Any, t: pa.DataType) -> Any:
    """``value`` as a value of ``t``, or None where it does not fit (the slow path)."""
    if value is None:
        return None
    if pa.types.is_float64(t):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            return float(value)
        except OverflowError:
            return None
    if pa.types.is_integer(t):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and -(2**63) <= value < 2**63 else None
    if pa.types.is_string(t):
        return value if isinstance(value, str) else None
    if pa.types.is_boolean(t):
        return value if isinstance(value, bool) else None
    if pa.types.is_list(t):
        return [_fit(v, t.value_type) for v in value] if isinstance(value, list) else None
    if pa.types.is_struct(t):
        if not isinstance(value, dict):
            return None
        return {f.name: _fit(value.get(f.name), f.type) for f in t}
    raise TypeError(f"no JSON type for Arrow type {t}")


_FIELD_TYPES: Final = {f.name: f.type for f in msgspec.structs.fields(_Row)}


def _fits(value: Any, name: str) -> bool:
    try:
        msgspec.convert(value, _FIELD_TYPES[name])
    except msgspec.ValidationError:
        return False
    return True


def _row(row: ParsedRow) -> Any:
    """The row as the sample struct: its fields under the rows table's column names, and in
    ``extra`` (JSON text) every top-level field it does not hold exactly under its own name."""
    rec: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    is_action = row.obj.get("type") == "player_action"
    for key, value in row.obj.items():
        if is_action and key == "timestamp":  # an int here, the ISO string for robot_state
            rec["timestamp_ms"] = extra[key] = value
        elif key in _FIELD_TYPES and key not in _LEADING:
            rec[key] = value
        else:
            extra[key] = value
    rec.update(row_index=row.row_index, kind=row.kind, frame_index=row.frame_index)
    try:
        typed = msgspec.convert(rec, _Row)
    except msgspec.ValidationError:  # a value of another type somewhere: only its fit part
        for key, value in list(rec.items()):
            if not _fits(value, key):
                rec[key] = _fit(value, SAMPLE_ROW.field(key).type)
                if key in row.obj:
                    extra[key] = value
        typed = msgspec.convert(rec, _Row)
    if extra:
        typed = msgspec.structs.replace(typed, extra=_ENCODER.encode(extra).decode())
    return typed


def row_document(row: ParsedRow) -> bytes:
    """A row decoded one by one as the sample struct, encoded: the ``row`` or an ``events``
    entry of a sample."""
    return _ENCODER.encode(_row(row))


def record_document(record: dict[str, Any]) -> bytes:
    """A row shaped like the game's, as its record in the rows table (the columns of
    ``writers.rows.block_records``, key order included), as the sample struct, encoded: the
    same bytes as ``row_document`` of that row (a player_action's integer ``timestamp`` goes to
    ``extra`` too, as ``_row`` puts it). ``record`` is changed."""
    if record["kind"] == "action":
        record["extra"] = _ENCODER.encode({"timestamp": record["timestamp_ms"]}).decode()
    return _ENCODER.encode(record)


def sample_document(
    session: str,
    frame_index: int,
    timestamp_ms: float,
    row_index: int,
    row: bytes,
    events: Sequence[bytes],
) -> bytes:
    """The ``.json`` member of frame ``frame_index`` from its periodic row and the events
    logged since the previous periodic row, each already encoded (``row_documents``)."""
    return _ENCODER.encode(
        _Sample(
            session=session,
            frame_index=frame_index,
            timestamp_ms=timestamp_ms,
            row_index=row_index,
            row=msgspec.Raw(row),
            events=[msgspec.Raw(e) for e in events],
        )
    )


def sample_json(
    session: str,
    frame_index: int,
    timestamp_ms: float,
    row: ParsedRow,
    events: Sequence[ParsedRow],
) -> bytes:
    """The ``.json`` member of frame ``frame_index``: its periodic ``row`` and the ``events``
    logged since the previous periodic row, decoded rows (see the module doc)."""
    return sample_document(
        session,
        frame_index,
        timestamp_ms,
        row.row_index,
        row_document(row),
        [row_document(e) for e in events],
    )
