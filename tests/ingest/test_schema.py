"""The row/metadata Structs, the Arrow schema derived from them, and shape checks with paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pyarrow as pa
import pytest

from reacture_convert.ingest.schema import (
    ROW_TYPES,
    ROWS_SCHEMA,
    Metadata,
    PlayerActionRow,
    RobotStateRow,
    arrow_type,
    check_shape,
    is_exact_shape,
)
from tests.helpers.paths import REPO

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


GOLDEN_SCHEMA = Path(__file__).parent / "golden" / "rows_schema.txt"


def test_the_rows_schema_is_the_documented_one() -> None:
    """The columns of rows/<session>.parquet are a contract with readers that are not ours
    (docs/output-layout.md): pinned here as text, so a change to them is a deliberate one (to
    update: write ``ROWS_SCHEMA.to_string(show_field_metadata=True,
    show_schema_metadata=True)`` to the golden file and say so in the docs)."""
    text = ROWS_SCHEMA.to_string(show_field_metadata=True, show_schema_metadata=True)
    assert text + "\n" == GOLDEN_SCHEMA.read_text()


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every scalar of a JSON value with its path; ``[]`` steps into list elements."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, (*path, "[]"))
    else:
        yield path, value


def _column_type(path: tuple[str, ...]) -> pa.DataType:
    t: pa.DataType = ROWS_SCHEMA.field(path[0]).type
    for step in path[1:]:
        t = t.value_type if step == "[]" else t.field(step).type
    return t


def test_every_field_of_the_real_rows_has_a_column_of_its_json_type(real_bundle: Path) -> None:
    """Independent of the Structs the schema is derived from: walk every row the game wrote
    and find each value's column by its JSON path, of the type its JSON value needs (numbers
    are float64 as JavaScript wrote doubles; the two millisecond clocks are int64; a
    player_action's integer ``timestamp`` lives in ``timestamp_ms``)."""
    (jsonl,) = real_bundle.glob("*_data.jsonl")
    seen: set[tuple[str, ...]] = set()
    for line in jsonl.read_bytes().splitlines():
        row = json.loads(line)
        for path, value in _leaves(row, ()):
            if row["type"] == "player_action" and path == ("timestamp",):
                path = ("timestamp_ms",)
            if path == ("timestamp_ms",):
                want = pa.int64()
            elif isinstance(value, bool):
                want = pa.bool_()
            elif isinstance(value, int | float):
                want = pa.float64()
            else:
                want = pa.string()
            assert _column_type(path) == want, (path, value)
            seen.add(path)
    assert len(seen) > 60  # every leaf of the game's rows was looked up


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
