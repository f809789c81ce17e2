"""The known shapes of data.jsonl rows and metadata.json, and the Arrow schema of the rows table.

The msgspec Structs below are the one description of what the game writes (see
docs/bundle-format.md). Everything else is derived from them:

- ``check_shape`` walks a decoded JSON value against a Struct and lists every problem with its
  JSON path (wrong types, missing fields, nulls, unknown fields), for validation messages;
- ``ROWS_SCHEMA`` (the Arrow schema of ``rows/<session>.parquet``) maps the Struct annotations
  to Arrow types, so the Parquet columns and the Structs can never drift apart.

Row Structs forbid unknown fields: ``msgspec.convert(obj, RobotStateRow)`` succeeding is the fast
proof that a row has exactly the known shape. Rows with more are still valid; their extra fields
are reported (``ROW_UNKNOWN_FIELD``) and kept losslessly by the Parquet writer. Numbers are
``float`` (msgspec accepts JSON integers for them) except the two millisecond clocks, which the
game writes as integers. Optional fields default to ``UNSET`` so that "absent" and "null" differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
import msgspec.inspect as mi
import pyarrow as pa
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "Int64",
    "Count",
    "Vec3",
    "KeyPresses",
    "Robot",
    "ActionRobot",
    "Camera",
    "ProximitySensors",
    "Victim",
    "Sensors",
    "FinalStats",
    "RobotStateRow",
    "PlayerActionRow",
    "GameResult",
    "DataStats",
    "Metadata",
    "ROW_TYPES",
    "PERIODIC_EVENT",
    "LEADING_COLUMNS",
    "ROW_FIELD_COLUMNS",
    "ROWS_SCHEMA",
    "arrow_type",
    "rows_schema",
    "ShapeProblem",
    "check_shape",
    "is_exact_shape",
    "json_type_name",
]

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer that fits a signed 64-bit column."""
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
"""A non-negative integer that fits a signed 64-bit column."""


# --- data.jsonl rows ----------------------------------------------------------------------------
class Vec3(Struct, forbid_unknown_fields=True):
    x: float
    y: float
    z: float


class KeyPresses(Struct, forbid_unknown_fields=True):
    W: bool
    A: bool
    S: bool
    D: bool
    Space: bool
    E: bool
    R: bool
    mouse_dx: float
    mouse_dy: float
    inspect: bool
    destroy: bool


class Robot(Struct, forbid_unknown_fields=True):
    """The robot in a robot_state row."""

    position: Vec3
    rotation: Vec3
    velocity: Vec3
    isJumping: bool


class ActionRobot(Struct, forbid_unknown_fields=True):
    """The robot in a player_action row: no velocity, no isJumping."""

    position: Vec3
    rotation: Vec3


class Camera(Struct, forbid_unknown_fields=True):
    position: Vec3
    rotation: Vec3
    yaw: float
    pitch: float


class ProximitySensors(Struct, forbid_unknown_fields=True):
    forward: float
    left: float
    right: float
    back: float


class Victim(Struct, forbid_unknown_fields=True):
    distance: float
    angle: float
    health: float


class Sensors(Struct, forbid_unknown_fields=True):
    proximity: float
    proximitySensors: ProximitySensors
    victimsDetected: float
    victims: list[Victim]
    fuelStationDistance: float
    zone: str
    inYellowZone: bool
    inRedZone: bool


class FinalStats(Struct, forbid_unknown_fields=True):
    timeElapsed: float
    victimsSaved: float
    victimsTotal: float
    robotHealth: float
    robotFuel: float
    finalScore: float


class RobotStateRow(Struct, forbid_unknown_fields=True):
    """A ``type: "robot_state"`` row, periodic (with ``visual_frame_path``) or event.

    Field order is the game's key order, optional extras in an order consistent with every
    observed row, so that rebuilt rows list their keys as the file did.
    """

    timestamp: str  # ISO 8601 UTC with milliseconds
    timestamp_ms: Int64  # ms since game start
    time_elapsed_s: float
    type: str
    event: str
    key_presses: KeyPresses
    robot: Robot
    accelerometer: Vec3
    battery: float
    damage: float  # collision_damage and damage_from_zone rows put the damage *amount* here
    health: float
    fuel: float
    zone: str
    camera: Camera
    sensors: Sensors
    speed: float | UnsetType = UNSET  # collision_damage
    objectType: str | UnsetType = UNSET  # collision_damage
    action: str | UnsetType = UNSET  # inspect, destroy_rubble, rescue
    success: bool | UnsetType = UNSET  # destroy_rubble
    position: Vec3 | UnsetType = UNSET  # destroy_rubble
    finalStats: FinalStats | UnsetType = UNSET  # game_end
    visual_frame_path: str | UnsetType = UNSET  # periodic rows only


class PlayerActionRow(Struct, forbid_unknown_fields=True):
    """A ``type: "player_action"`` row. ``timestamp`` is integer ms since game start here."""

    timestamp: Int64
    type: str
    action: str
    robot: ActionRobot
    sensors: Sensors
    position: Vec3 | UnsetType = UNSET  # destroy_rubble
    rubbleId: float | UnsetType = UNSET  # destroy_rubble
    distance: float | UnsetType = UNSET  # destroy_rubble
    fuelLevel: float | UnsetType = UNSET  # refuel


ROW_TYPES: Final[dict[str, type[RobotStateRow] | type[PlayerActionRow]]] = {
    "robot_state": RobotStateRow,
    "player_action": PlayerActionRow,
}
PERIODIC_EVENT: Final = "periodic_update_10hz"


# --- metadata.json --------------------------------------------------------------------------------
class GameResult(Struct):
    victims_total: Count
    victims_saved: Count
    victims_died: Count
    final_score: float
    final_health: float
    final_fuel: float
    completion_status: str


class DataStats(Struct):
    total_samples: Count  # every JSONL row, both types
    total_frames: Count
    actions_logged: Count  # player_action rows


class Metadata(Struct):
    """metadata.json. Unknown keys are tolerated (the raw object is kept for provenance)."""

    session_id: str
    start_time: str
    end_time: str
    duration_s: float
    sampling_rate_hz: float
    player_id: str
    player_name: str
    robot_model: str
    environment: str
    environment_name: str
    game_result: GameResult
    data_stats: DataStats


# --- Arrow schema, derived from the Structs -----------------------------------------------------
def arrow_type(t: mi.Type) -> pa.DataType:
    """The Arrow type of a msgspec type: float64, int64, string, bool, list and struct.

    ``X | UnsetType`` fields arrive here as ``X`` (msgspec.inspect drops UNSET); every Arrow
    field is nullable, and null means "absent" in the rows table.
    """
    if isinstance(t, mi.FloatType):
        return pa.float64()
    if isinstance(t, mi.IntType):
        return pa.int64()
    if isinstance(t, mi.StrType):
        return pa.string()
    if isinstance(t, mi.BoolType):
        return pa.bool_()
    if isinstance(t, mi.ListType):
        return pa.list_(arrow_type(t.item_type))
    if isinstance(t, mi.StructType):
        return pa.struct([pa.field(f.encode_name, arrow_type(f.type)) for f in t.fields])
    raise TypeError(f"no Arrow mapping for msgspec type {t!r}; extend arrow_type()")


def _merge_types(a: pa.DataType, b: pa.DataType, where: str) -> pa.DataType:
    """The union of two struct types (fields of ``a`` first); other types must be equal."""
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {f.name: f.type for f in a}
        for f in b:
            fields[f.name] = (
                _merge_types(fields[f.name], f.type, f"{where}.{f.name}")
                if (f.name in fields)
                else f.type
            )
        return pa.struct([pa.field(name, typ) for name, typ in fields.items()])
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(_merge_types(a.value_type, b.value_type, f"{where}[]"))
    if a != b:
        raise TypeError(f"{where}: robot_state and player_action disagree ({a} vs {b})")
    return a


LEADING_COLUMNS: Final[tuple[pa.Field, ...]] = (
    pa.field("session", pa.string(), nullable=False),
    pa.field("row_index", pa.int64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # periodic | event | action
    pa.field("type", pa.string(), nullable=False),
    pa.field("event", pa.string()),
    pa.field("action", pa.string()),
    pa.field("timestamp_ms", pa.int64()),  # robot_state.timestamp_ms, player_action.timestamp
    pa.field("frame_index", pa.int32()),  # the number in visual_frame_path
)
# Row fields that live in a leading column instead of a column of their own.
_IN_LEADING: Final = {
    "robot_state": {"type", "event", "action", "timestamp_ms"},
    "player_action": {"type", "action", "timestamp"},
}


def _row_field_columns() -> tuple[pa.Field, ...]:
    """The row's own fields as nested columns: robot_state's first, then player_action's."""
    merged: dict[str, pa.DataType] = {}
    for type_name, cls in ROW_TYPES.items():
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)  # invariant: ROW_TYPES holds Structs
        for f in info.fields:
            if f.encode_name in _IN_LEADING[type_name]:
                continue
            t = arrow_type(f.type)
            name = f.encode_name
            merged[name] = _merge_types(merged[name], t, f"$.{name}") if name in merged else t
    return tuple(pa.field(name, t) for name, t in merged.items())


ROW_FIELD_COLUMNS: Final[tuple[pa.Field, ...]] = _row_field_columns()


def rows_schema() -> pa.Schema:
    """Leading columns, the row's own fields (nested), then ``extra`` (JSON text)."""
    fields = [*LEADING_COLUMNS, *ROW_FIELD_COLUMNS, pa.field("extra", pa.string())]
    return pa.schema(fields, metadata={b"reacture.rows.version": b"1"})


ROWS_SCHEMA: Final[pa.Schema] = rows_schema()


# --- shape checks with JSON paths ---------------------------------------------------------------
ProblemKind = Literal["wrong", "missing", "null", "unknown"]


@dataclass(frozen=True, slots=True)
class ShapeProblem:
    """One way a JSON value differs from its Struct, at a JSON path like ``$.robot.position.x``.

    ``expected`` names the schema's type ("a number"); it is None for unknown fields and for
    nulls found inside unknown fields.
    """

    kind: ProblemKind
    path: str
    expected: str | None = None
    got: str | None = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.path}: missing required field ({self.expected})"
        if self.kind == "unknown":
            return self.path
        if self.kind == "null" and self.expected is None:
            return f"{self.path}: null"
        return f"{self.path}: expected {self.expected}, got {self.got}"


def json_type_name(value: Any) -> str:
    """The JSON-ish name of a decoded value's type, as messages show it."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__  # str, int, float, bool


def _expected(t: mi.Type) -> str:
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.IntType):
        if t.ge is None and t.le is None:
            return "an integer"
        return "a non-negative integer" if t.ge == 0 else "an integer in int64 range"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.BoolType):
        return "a boolean"
    if isinstance(t, mi.ListType):
        return "an array"
    return "an object"


def _scalar_ok(value: Any, t: mi.Type) -> bool:
    if isinstance(t, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(t, mi.IntType):
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return (t.ge is None or value >= t.ge) and (t.le is None or value <= t.le)
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    raise TypeError(f"not a scalar type: {t!r}")


def _nulls_in(value: Any, path: str) -> Iterator[ShapeProblem]:
    """Every null inside a value the schema does not describe."""
    if value is None:
        yield ShapeProblem("null", path)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nulls_in(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nulls_in(v, f"{path}[{i}]")


def _walk(value: Any, t: mi.Type, path: str, nulls_anywhere: bool) -> Iterator[ShapeProblem]:
    if value is None:
        yield ShapeProblem("null", path, _expected(t), "null")
    elif isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            yield ShapeProblem("wrong", path, "an object", json_type_name(value))
            return
        known = {f.encode_name: f for f in t.fields}
        for key, item in value.items():
            field = known.get(key)
            if field is None:
                if not t.forbid_unknown_fields:
                    continue
                yield ShapeProblem("unknown", f"{path}.{key}")
                if nulls_anywhere:
                    yield from _nulls_in(item, f"{path}.{key}")
            else:
                yield from _walk(item, field.type, f"{path}.{key}", nulls_anywhere)
        for f in t.fields:
            if f.required and f.encode_name not in value:
                yield ShapeProblem("missing", f"{path}.{f.encode_name}", _expected(f.type))
    elif isinstance(t, mi.ListType):
        if not isinstance(value, list):
            yield ShapeProblem("wrong", path, "an array", json_type_name(value))
            return
        for i, item in enumerate(value):
            yield from _walk(item, t.item_type, f"{path}[{i}]", nulls_anywhere)
    elif not _scalar_ok(value, t):
        in_type = isinstance(t, mi.IntType) and type(value) is int  # right type, out of range
        got = repr(value) if in_type else json_type_name(value)
        yield ShapeProblem("wrong", path, _expected(t), got)


_TYPE_INFO: dict[type[Struct], mi.Type] = {}


def check_shape(obj: Any, cls: type[Struct], *, nulls_anywhere: bool = False) -> list[ShapeProblem]:
    """Every difference between decoded JSON ``obj`` and Struct ``cls``, in document order.

    Unknown fields are listed only for Structs that forbid them (the row Structs; metadata
    tolerates extra keys). With ``nulls_anywhere``, nulls inside unknown fields are listed too
    (periodic rows promise no null at all).
    """
    info = _TYPE_INFO.get(cls)
    if info is None:
        info = _TYPE_INFO[cls] = mi.type_info(cls)
    return list(_walk(obj, info, "$", nulls_anywhere))


def is_exact_shape(obj: Any, cls: type[Struct]) -> bool:
    """True when ``obj`` has exactly the known shape (C speed; the common case for real rows)."""
    try:
        msgspec.convert(obj, cls, strict=True)
    except msgspec.ValidationError:
        return False
    return True
