"""The row/metadata Structs, the Arrow schema derived from them, and shape checks with paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pyarrow as pa
import pytest
from conftest import REPO

from reacture_convert.ingest.schema import (
    LEADING_COLUMNS,
    ROW_TYPES,
    ROWS_SCHEMA,
    Metadata,
    PlayerActionRow,
    RobotStateRow,
    arrow_type,
    check_shape,
    is_exact_shape,
)

SAMPLE_JSONL = REPO / "sample" / "reacture_1795637238001" / "reacture_1795637238001_data.jsonl"
SAMPLE_ROWS = [json.loads(line) for line in SAMPLE_JSONL.read_bytes().split(b"\n")]


def first(pred: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(next(r for r in SAMPLE_ROWS if pred(r))))
    return copy


PERIODIC = first(lambda r: r.get("event") == "periodic_update_10hz")
ACTION = first(lambda r: r["type"] == "player_action")


# --- the Arrow schema ---------------------------------------------------------------------------
def test_leading_columns_in_order() -> None:
    names = [f.name for f in ROWS_SCHEMA][:8]
    assert names == [
        "session",
        "row_index",
        "kind",
        "type",
        "event",
        "action",
        "timestamp_ms",
        "frame_index",
    ]
    assert ROWS_SCHEMA.field("timestamp_ms").type == pa.int64()
    assert ROWS_SCHEMA.field("frame_index").type == pa.int32()
    assert ROWS_SCHEMA.field("row_index").type == pa.int64()
    assert ROWS_SCHEMA.names[-1] == "extra" and ROWS_SCHEMA.field("extra").type == pa.string()


def test_nested_columns_mirror_the_json() -> None:
    robot = ROWS_SCHEMA.field("robot").type
    assert pa.types.is_struct(robot)
    position = robot.field("position").type
    assert pa.types.is_struct(position) and position.field("x").type == pa.float64()
    assert [f.name for f in robot] == ["position", "rotation", "velocity", "isJumping"]
    victims = ROWS_SCHEMA.field("sensors").type.field("victims").type
    assert pa.types.is_list(victims) and pa.types.is_struct(victims.value_type)
    assert victims.value_type.field("health").type == pa.float64()
    assert ROWS_SCHEMA.field("timestamp").type == pa.string()  # robot_state's ISO string


def _fields(cls: type[msgspec.Struct]) -> tuple[mi.Field, ...]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info.fields


@pytest.mark.parametrize("cls", [RobotStateRow, PlayerActionRow], ids=lambda c: c.__name__)
def test_every_struct_field_has_its_column(cls: type[msgspec.Struct]) -> None:
    """Schema and Structs cannot drift: each field maps to a column of its own Arrow type
    (a struct column may be wider: it is the union of both row types)."""
    leading = {f.name for f in LEADING_COLUMNS}
    for f in _fields(cls):
        name = f.encode_name
        if name in leading or (cls is PlayerActionRow and name == "timestamp"):
            continue  # type/event/action/timestamp_ms and the action's int clock: leading columns
        column = ROWS_SCHEMA.field(name).type
        want = arrow_type(f.type)
        if pa.types.is_struct(want):
            assert all(column.field(sub.name).type == sub.type for sub in want), name
        else:
            assert column == want, name


def test_schema_has_no_column_without_a_struct_field() -> None:
    known = {f.name for f in LEADING_COLUMNS} | {"extra"}
    for cls in ROW_TYPES.values():
        known |= {f.encode_name for f in _fields(cls)}
    assert set(ROWS_SCHEMA.names) <= known


@pytest.mark.parametrize(
    ("annotation", "arrow"),
    [
        (float, pa.float64()),
        (int, pa.int64()),
        (str, pa.string()),
        (bool, pa.bool_()),
        (list[float], pa.list_(pa.float64())),
    ],
    ids=["float", "int", "str", "bool", "list"],
)
def test_arrow_type_mapping(annotation: Any, arrow: pa.DataType) -> None:
    assert arrow_type(mi.type_info(annotation)) == arrow


def test_arrow_type_refuses_unmapped_types() -> None:
    with pytest.raises(TypeError, match="no Arrow mapping"):
        arrow_type(mi.type_info(dict[str, int]))


# --- the Structs against real data --------------------------------------------------------------
def test_every_real_row_has_exactly_the_known_shape(real_bundle: Path) -> None:
    (path,) = real_bundle.glob("*_data.jsonl")
    for line in path.read_bytes().split(b"\n"):
        obj = json.loads(line)
        assert is_exact_shape(obj, ROW_TYPES[obj["type"]]), obj
        assert check_shape(obj, ROW_TYPES[obj["type"]]) == []


def test_real_metadata_converts(real_bundle: Path) -> None:
    (path,) = real_bundle.glob("*_metadata.json")
    meta = msgspec.json.decode(path.read_bytes(), type=Metadata)
    assert meta.data_stats.total_frames > 0
    assert meta.session_id.startswith("reacture_")


def test_optional_fields_are_unset_not_none() -> None:
    event = first(lambda r: r.get("event") == "game_start")
    row = msgspec.convert(event, RobotStateRow)
    assert row.visual_frame_path is msgspec.UNSET and row.finalStats is msgspec.UNSET
    with pytest.raises(msgspec.ValidationError, match="got `null`"):
        msgspec.convert({**event, "visual_frame_path": None}, RobotStateRow)


def test_action_timestamp_is_an_int() -> None:
    assert msgspec.convert(ACTION, PlayerActionRow).timestamp == ACTION["timestamp"]
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**ACTION, "timestamp": 12.5}, PlayerActionRow)


# --- check_shape ----------------------------------------------------------------------------------
def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    target = obj
    for p in parents:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    result: dict[str, Any] = obj
    return result


_DELETE = object()
INT64 = "an integer in int64 range"


@pytest.mark.parametrize(
    ("path", "value", "want"),
    [
        ("battery", "full", "wrong $.battery: expected a number, got str"),
        ("battery", True, "wrong $.battery: expected a number, got bool"),
        ("robot.position.x", "1", "wrong $.robot.position.x: expected a number, got str"),
        ("robot", [], "wrong $.robot: expected an object, got array"),
        ("sensors.victims", {}, "wrong $.sensors.victims: expected an array, got object"),
        ("sensors.victims", [5], "wrong $.sensors.victims[0]: expected an object, got int"),
        ("timestamp_ms", 1.5, f"wrong $.timestamp_ms: expected {INT64}, got float"),
        ("timestamp_ms", 2**63, f"wrong $.timestamp_ms: expected {INT64}, got {2**63}"),
        ("key_presses.W", 0, "wrong $.key_presses.W: expected a boolean, got int"),
        ("zone", 3, "wrong $.zone: expected a string, got int"),
        ("timestamp_ms", _DELETE, f"missing $.timestamp_ms: missing required field ({INT64})"),
        ("robot.velocity", _DELETE, "missing $.robot.velocity: missing required field (an object)"),
        ("health", None, "null $.health: expected a number, got null"),
        ("robot.rotation.y", None, "null $.robot.rotation.y: expected a number, got null"),
        ("robot.wheels", 4, "unknown $.robot.wheels"),
        ("surprise", None, "unknown $.surprise"),
    ],
    ids=[
        "str-number",
        "bool-number",
        "nested-str",
        "array-for-object",
        "object-for-array",
        "list-element",
        "float-int",
        "int64-overflow",
        "int-bool",
        "int-str",
        "missing-top",
        "missing-nested",
        "null-top",
        "null-nested",
        "unknown-nested",
        "unknown-top",
    ],
)
def test_check_shape_names_the_path(path: str, value: Any, want: str) -> None:
    obj = _with(PERIODIC, path, value)
    problems = check_shape(obj, RobotStateRow)
    assert [f"{p.kind} {p}" for p in problems] == [want]
    assert not is_exact_shape(obj, RobotStateRow)


def test_nulls_inside_unknown_fields_only_when_asked() -> None:
    obj = _with(PERIODIC, "extra_info", {"a": [1, None], "b": None})
    assert [str(p) for p in check_shape(obj, RobotStateRow)] == ["$.extra_info"]
    got = [str(p) for p in check_shape(obj, RobotStateRow, nulls_anywhere=True)]
    assert got == ["$.extra_info", "$.extra_info.a[1]: null", "$.extra_info.b: null"]


def test_metadata_tolerates_unknown_keys_but_not_wrong_types() -> None:
    (path,) = SAMPLE_JSONL.parent.glob("*_metadata.json")
    meta = json.loads(path.read_bytes())
    assert check_shape({**meta, "new_key": 1}, Metadata) == []
    meta["data_stats"]["total_frames"] = -1
    problems = [str(p) for p in check_shape(meta, Metadata)]
    assert problems == ["$.data_stats.total_frames: expected a non-negative integer, got -1"]
