"""The last step of the fast path of ``ingest.rowscan``: over the Arrow columns of decoded rows,
which rows are not exactly their row Struct's shape, and which would have findings.

``pyarrow.json`` has checked every value's JSON type against the columns; what it cannot check
is per row type. ``shape_differs`` applies the row Structs of ``ingest.schema`` (the same rules
``msgspec`` applies to the slow path): a required field present, no field of the other row type
(a player_action has no ``battery``, its robot no ``velocity``), and no number the rows table must
keep exactly in ``extra`` (an integer beyond 2**53 or ``-0`` in a float column).
``would_have_findings`` picks the rows ``jsonl.line_items`` would report on: a frame path that is
not ``frames/frame_NNNNNN.npy``, a value out of range, a periodic event without its frame. Those
rows go to the exact path, which says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec
import msgspec.inspect as mi
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from reacture_convert.ingest.jsonl import DAMAGE_AMOUNT_EVENTS, PERCENT_FIELDS
from reacture_convert.ingest.schema import PERIODIC_EVENT, PlayerActionRow, RobotStateRow

__all__ = ["shape_differs", "would_have_findings"]

_EXACT_FLOAT: Final = 2.0**53
_PERIODIC_MARK: Final = b'"event":"' + PERIODIC_EVENT.encode() + b'"'
_AMOUNT_MARKS: Final = tuple(b'"event":"%s"' % e.encode() for e in sorted(DAMAGE_AMOUNT_EVENTS))
_RANGES: Final = (*((name, 100.0) for name in PERCENT_FIELDS), ("damage", 1.0))
_FRAME_PREFIX: Final = b"frames/frame_"
_FRAME_SUFFIX: Final = b".npy"
_INT32_MAX: Final = 2**31 - 1


# --- the shape rules, from the row Structs --------------------------------------------------------
def _struct_info(cls: type[msgspec.Struct]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)  # invariant: row types are Structs
    return info


# Column of each row field, per row type: a player_action's ``timestamp`` is ``timestamp_ms``.
_TOP: Final[dict[bool, tuple[mi.StructType, dict[str, str]]]] = {
    False: (_struct_info(RobotStateRow), {}),
    True: (_struct_info(PlayerActionRow), {"timestamp": "timestamp_ms"}),
}


def _valid(arr: pa.Array) -> npt.NDArray[np.bool_]:
    """Which elements of ``arr`` are not null (its own validity, not its parents')."""
    n = len(arr)
    if arr.null_count == 0:
        return np.ones(n, dtype=bool)
    if arr.null_count == n:
        return np.zeros(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(arr.buffers()[0], np.uint8), bitorder="little")
    return bits[arr.offset : arr.offset + n].astype(bool)


def _bad_struct(
    children: Mapping[str, pa.Array],
    n: int,
    t: mi.StructType,
    present: npt.NDArray[np.bool_],
    column_of: Mapping[str, str],
) -> npt.NDArray[np.bool_]:
    """Elements (where ``present``) whose object differs from Struct ``t``: a required field
    missing, a field ``t`` does not have, or a value that differs below."""
    bad = np.zeros(n, dtype=bool)
    fields = {column_of.get(f.encode_name, f.encode_name): f for f in t.fields}
    for name, child in children.items():
        there = _valid(child) & present
        field = fields.get(name)
        if field is None:
            bad |= there  # the other row type's field (or a nested one this object lacks)
            continue
        if field.required:
            bad |= present & ~there
        bad |= _bad_value(child, field.type, there)
    return bad


def _bad_value(arr: pa.Array, t: mi.Type, present: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Elements (where ``present``) that differ from type ``t`` or need the exact path."""
    if isinstance(t, mi.StructType):
        children = {arr.type.field(i).name: arr.field(i) for i in range(arr.type.num_fields)}
        return _bad_struct(children, len(arr), t, present, {})
    if isinstance(t, mi.ListType):
        offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
        owner = np.repeat(np.arange(len(arr)), np.diff(offsets))
        items = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        item_there = _valid(items)
        item_bad = (~item_there & present[owner]) | _bad_value(
            items, t.item_type, item_there & present[owner]
        )
        return np.bincount(owner, weights=item_bad, minlength=len(arr)) > 0
    if isinstance(t, mi.FloatType):
        values = np.frombuffer(arr.buffers()[1], np.float64)[arr.offset : arr.offset + len(arr)]
        # beyond 2**53 the JSON may have held an exact integer; -0 is an integer 0 in JSON;
        # NaN and Infinity are not JSON at all
        odd: npt.NDArray[np.bool_] = ~(np.abs(values) < _EXACT_FLOAT) | (
            (values == 0) & np.signbit(values)
        )
        return present & odd
    return np.zeros(len(arr), dtype=bool)


def shape_differs(table: pa.Table, is_action: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Rows of ``table`` that are not exactly their Struct's shape (or need the exact path)."""
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    bad = np.zeros(table.num_rows, dtype=bool)
    for action, (info, column_of) in _TOP.items():
        rows = is_action if action else ~is_action
        if rows.any():
            bad |= rows & _bad_struct(columns, table.num_rows, info, rows, column_of)
    return bad


# --- rows that would have findings (those rows take the exact path) ---------------------------
def _float_column(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    arr = table.column(name).combine_chunks()
    return np.frombuffer(arr.buffers()[1], np.float64)[arr.offset : arr.offset + len(arr)]


def _frame_numbers(arr: pa.Array, rows: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """The frame number of each ``frames/frame_NNNNNN.npy`` path at ``rows``; -1 elsewhere and
    where the path is anything else (those rows take the exact path, which says why)."""
    out = np.full(len(arr), -1, dtype=np.int64)
    if not rows.any():
        return out
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    lengths = np.diff(offsets)
    fixed = len(_FRAME_PREFIX) + len(_FRAME_SUFFIX)
    for n_digits in range(6, 11):  # 10 digits hold INT32_MAX
        at = np.flatnonzero(rows & (lengths == fixed + n_digits))
        if at.size == 0:
            continue
        text = data[offsets[at][:, None] + np.arange(fixed + n_digits)]
        digits = text[:, len(_FRAME_PREFIX) : len(_FRAME_PREFIX) + n_digits].astype(np.int64) - 48
        ok = (
            (text[:, : len(_FRAME_PREFIX)] == np.frombuffer(_FRAME_PREFIX, np.uint8)).all(axis=1)
            & (text[:, -len(_FRAME_SUFFIX) :] == np.frombuffer(_FRAME_SUFFIX, np.uint8)).all(1)
            & ((digits >= 0) & (digits <= 9)).all(axis=1)
        )
        numbers = digits @ (10 ** np.arange(n_digits - 1, -1, -1, dtype=np.int64))
        ok &= numbers <= _INT32_MAX
        out[at[ok]] = numbers[ok]
    return out


def would_have_findings(
    table: pa.Table, is_action: npt.NDArray[np.bool_], raws: list[bytes]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(rows that would have findings, frame numbers, rows that are periodic)."""
    path = table.column("visual_frame_path").combine_chunks()
    periodic = _valid(path) & ~is_action
    frames = _frame_numbers(path, periodic)
    suspect = periodic & (frames < 0)
    robot = ~is_action
    for name, high in _RANGES:
        values = _float_column(table, name)
        out = robot & ((values < 0) | (values > high))
        if name == "damage":  # these events put the damage amount there: no range
            for i in np.flatnonzero(out):
                out[i] = not any(mark in raws[i] for mark in _AMOUNT_MARKS)
        suspect |= out
    for i in np.flatnonzero(robot & ~periodic):
        suspect[i] |= _PERIODIC_MARK in raws[i]  # a periodic row without its frame
    return suspect, frames, periodic
