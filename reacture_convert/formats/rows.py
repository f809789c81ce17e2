"""The rows table ``rows/<session>.parquet``: a data.jsonl row as a record, and back.

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

``rebuild_row`` turns a record back into the source row (``verify --sources`` compares it with
the JSON line); ``writers.rows`` splits rows into records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec
import pyarrow as pa

from reacture_convert.ingest.schema import ROW_FIELD_COLUMNS, ROW_TYPES

__all__ = ["EXACT_INT", "ROW_FIELDS", "STRING_LEADING", "rebuild_row"]

EXACT_INT: Final = 2**53  # integral floats up to this come back as int (pyarrow's bound too)
ROW_FIELDS: Final[dict[str, pa.DataType]] = {f.name: f.type for f in ROW_FIELD_COLUMNS}
"""The row's own fields, by column name, with their Arrow types."""
STRING_LEADING: Final = ("type", "event", "action")
"""The leading columns that hold a field of the row as it is (strings)."""
# Rebuilt key order per row type: the Struct's field order (the game's), then any other column.
_KEY_ORDER: Final[dict[str, tuple[str, ...]]] = {
    type_name: tuple(cls.__struct_fields__)
    + tuple(n for n in (*STRING_LEADING, *ROW_FIELDS) if n not in cls.__struct_fields__)
    for type_name, cls in ROW_TYPES.items()
}


def _plain(value: Any) -> Any:
    """A typed column value as JSON: absent (None) struct fields dropped, integral floats int."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_INT:
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
