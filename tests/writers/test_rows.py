"""rows/<session>.parquet: lossless round trip, nested columns, determinism, streaming."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.formats.rows import rebuild_row
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.schema import ROWS_SCHEMA
from reacture_convert.writers.rows import iter_record_batches, write_rows
from tests.helpers.jsonl import SAMPLE_LINES
from tests.helpers.rows import ACTION, EVENT, PERIODIC, mutated_rows


def same(a: Any, b: Any) -> bool:
    """Equal as parsed JSON *and* of the same JSON types (1 vs 1.0 differ; key order does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)  # noqa: PLR0124 (NaN never comes from JSON)


def parsed(lines: list[bytes]) -> list[ParsedRow]:
    items = iter_jsonl(io.BytesIO(b"\n".join(lines)), "data.jsonl")
    return [i for i in items if isinstance(i, ParsedRow)]


def round_trip(lines: list[bytes], session: str = "s1") -> tuple[pa.Table, list[dict[str, Any]]]:
    buf = io.BytesIO()
    n = write_rows(parsed(lines), session, buf)
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    assert n == table.num_rows
    return table, [rebuild_row(r) for r in table.to_pylist()]


def assert_lossless(lines: list[bytes]) -> pa.Table:
    table, rebuilt = round_trip(lines)
    assert len(rebuilt) == len(lines)
    for line, got in zip(lines, rebuilt, strict=True):
        want = json.loads(line)
        assert got == want  # the contract: equal as parsed JSON
        assert same(got, want), (want, got)  # and no int/float drift either
    return table


# --- real fixtures ------------------------------------------------------------------------------
def test_real_fixture_round_trips(real_bundle: Path) -> None:
    (path,) = real_bundle.glob("*_data.jsonl")
    lines = path.read_bytes().split(b"\n")
    table = assert_lossless(lines)
    _, rebuilt = round_trip(lines)
    # the game's key order comes back too
    assert [list(r) for r in rebuilt] == [list(json.loads(line)) for line in lines]
    assert table.column("extra").null_count == len(lines)  # nothing left over in real rows


def test_real_fixture_columns(real_bundle: Path) -> None:
    (path,) = real_bundle.glob("*_data.jsonl")
    lines = path.read_bytes().split(b"\n")
    table, _ = round_trip(lines, session="sess")
    assert table.schema.equals(ROWS_SCHEMA, check_metadata=False)
    records = table.to_pylist()
    assert {r["session"] for r in records} == {"sess"}
    assert [r["row_index"] for r in records] == list(range(len(lines)))
    for rec, line in zip(records, lines, strict=True):
        obj = json.loads(line)
        if obj["type"] == "player_action":
            assert rec["kind"] == "action" and rec["timestamp_ms"] == obj["timestamp"]
            assert rec["timestamp"] is None and rec["frame_index"] is None
        else:
            assert rec["timestamp_ms"] == obj["timestamp_ms"]
            assert rec["timestamp"] == obj["timestamp"]
            assert rec["event"] == obj["event"]
        if "visual_frame_path" in obj:
            assert rec["kind"] == "periodic"
            assert rec["frame_index"] == int(obj["visual_frame_path"][13:19])
        assert rec["robot"]["position"]["x"] == obj["robot"]["position"]["x"]
        assert len(rec["sensors"]["victims"]) == len(obj["sensors"]["victims"])


def test_output_opens_with_nested_struct_and_list_columns(tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    write_rows(parsed(SAMPLE_LINES), "s", str(out))
    schema = pq.read_schema(out)
    position = schema.field("robot").type.field("position").type
    assert pa.types.is_struct(position) and position.field("x").type == pa.float64()
    victims = schema.field("sensors").type.field("victims").type
    assert pa.types.is_list(victims) and pa.types.is_struct(victims.value_type)
    assert schema.field("timestamp_ms").type == pa.int64()
    assert schema.field("frame_index").type == pa.int32()
    x = pq.read_table(out, columns=["robot"]).column("robot").combine_chunks().field("position")
    assert x.field("x").type == pa.float64()
    meta = pq.ParquetFile(out).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    write_rows(parsed(SAMPLE_LINES), "s", a)
    write_rows(parsed(SAMPLE_LINES), "s", b)
    assert a.getvalue() == b.getvalue()


@pytest.mark.parametrize(
    "fs", [pafs.LocalFileSystem(), fsspec.filesystem("file")], ids=["pyarrow", "fsspec"]
)
def test_write_through_a_filesystem(tmp_path: Path, fs: Any) -> None:
    out = str(tmp_path / "rows.parquet")
    assert write_rows(parsed(SAMPLE_LINES[:10]), "s", out, filesystem=fs) == 10
    assert pq.read_table(out).num_rows == 10


# --- batching and streaming -----------------------------------------------------------------------
def test_batches_have_the_requested_size() -> None:
    rows = parsed(SAMPLE_LINES)
    sizes = [b.num_rows for b in iter_record_batches(rows, "s", batch_rows=50)]
    assert sizes == [50, 50, 50, 23]


def test_batches_are_built_lazily() -> None:
    consumed = 0
    rows = parsed(SAMPLE_LINES)

    def source() -> Iterator[ParsedRow]:
        nonlocal consumed
        for r in rows:
            consumed += 1
            yield r

    batches = iter_record_batches(source(), "s", batch_rows=20)
    next(batches)
    assert consumed == 20


def test_empty_input_writes_a_valid_empty_file() -> None:
    buf = io.BytesIO()
    assert write_rows([], "s", buf) == 0
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    assert table.num_rows == 0 and table.schema.equals(ROWS_SCHEMA, check_metadata=False)


def test_rows_without_a_known_type_are_refused() -> None:
    with pytest.raises(ValueError, match="not a known row type"):
        list(iter_record_batches([ParsedRow(0, "event", None, None, {"type": "x"})], "s"))


# --- edge cases, one by one ---------------------------------------------------------------------
def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``value`` at a dotted path (list indices are numbers)."""
    obj: dict[str, Any] = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    target: Any = obj
    for p in parents:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return obj


EDGE_CASES: list[tuple[str, dict[str, Any], str, Any]] = [
    ("unknown-top", PERIODIC, "wheels", {"n": 4, "ok": [True, None]}),
    ("unknown-nested", PERIODIC, "robot.position.w", 1),
    ("unknown-in-victim", PERIODIC, "sensors.victims.0.id", "v7"),
    ("unknown-named-like-leading", PERIODIC, "session", "other"),
    ("unknown-row_index", EVENT, "row_index", 99),
    ("unknown-extra", EVENT, "extra", "{}"),
    ("unknown-kind", ACTION, "kind", None),
    ("action-timestamp_ms", ACTION, "timestamp_ms", 5),
    ("action-velocity", ACTION, "robot.velocity", {"x": 1, "y": 2.5, "z": None}),
    ("null-top", PERIODIC, "battery", None),
    ("null-struct", PERIODIC, "camera", None),
    ("null-nested", PERIODIC, "camera.rotation.y", None),
    ("null-victim", PERIODIC, "sensors.victims.0", None),
    ("null-victims", PERIODIC, "sensors.victims", None),
    ("empty-victims", PERIODIC, "sensors.victims", []),
    ("empty-victim", PERIODIC, "sensors.victims.0", {}),
    ("victim-not-object", PERIODIC, "sensors.victims.0", 3),
    ("victim-list", PERIODIC, "sensors.victims.0", [1.5]),
    ("victim-wrong-type", PERIODIC, "sensors.victims.0.health", "ok"),
    ("string-for-number", PERIODIC, "robot.position.x", "0.5"),
    ("bool-for-number", PERIODIC, "battery", True),
    ("number-for-bool", PERIODIC, "key_presses.W", 1),
    ("object-for-number", PERIODIC, "fuel", {"level": 3}),
    ("array-for-struct", PERIODIC, "robot", [1, 2]),
    ("empty-struct", PERIODIC, "robot", {}),
    ("int-2^53", PERIODIC, "battery", 2**53),
    ("int-2^53+1", PERIODIC, "battery", 2**53 + 1),
    ("int-negative-big", PERIODIC, "robot.velocity.z", -(2**60)),
    ("int-beyond-uint64", PERIODIC, "sensors.proximity", 2**70),
    ("float-integral", PERIODIC, "battery", 100.0),
    ("float-negative-zero", PERIODIC, "robot.velocity.x", -0.0),
    ("float-tiny", PERIODIC, "robot.velocity.x", 1.2e-7),
    ("float-denormal", PERIODIC, "robot.velocity.y", 5e-324),
    ("float-huge", PERIODIC, "speed", 1e300),
    ("float-1e21", PERIODIC, "camera.yaw", 1e21),
    ("float-1e16", PERIODIC, "camera.yaw", 1e16),
    ("float-2^53", PERIODIC, "camera.pitch", float(2**53)),
    ("float-timestamp_ms", PERIODIC, "timestamp_ms", 1206.0),
    ("huge-timestamp_ms", PERIODIC, "timestamp_ms", 2**63),
    ("negative-timestamp_ms", PERIODIC, "timestamp_ms", -5),
    ("string-action-timestamp", ACTION, "timestamp", "2026-11-25T20:06:40.009Z"),
    ("float-action-timestamp", ACTION, "timestamp", 12.5),
    ("int-robot-timestamp", EVENT, "timestamp", 12),
    ("null-event", EVENT, "event", None),
    ("number-action", ACTION, "action", 3),
    ("unicode", PERIODIC, "zone", 'zóne \u2028 \U0001f525 "q" \\'),
    ("unicode-key", PERIODIC, "sensors.Ωmega", "\x00"),
    ("float-in-final-stats", EVENT, "finalStats.victimsSaved", 0.0),
    ("bad-frame-path", PERIODIC, "visual_frame_path", "frames/frame_12.npy"),
    ("frame-path-null", PERIODIC, "visual_frame_path", None),
    ("frame-path-number", PERIODIC, "visual_frame_path", 3),
]


@pytest.mark.parametrize(
    ("base", "path", "value"), [c[1:] for c in EDGE_CASES], ids=[c[0] for c in EDGE_CASES]
)
def test_edge_case_round_trips(base: dict[str, Any], path: str, value: Any) -> None:
    obj = changed(base, path, value)
    line = json.dumps(obj, ensure_ascii=False).encode()
    assert_lossless([line, json.dumps(base).encode()])


def test_wrong_values_leave_the_column_null_and_go_to_extra() -> None:
    obj = changed(PERIODIC, "robot.position.x", "far")
    table, _ = round_trip([json.dumps(obj).encode()])
    (rec,) = table.to_pylist()
    assert rec["robot"]["position"]["x"] is None
    assert rec["robot"]["position"]["y"] == PERIODIC["robot"]["position"]["y"]
    assert json.loads(rec["extra"]) == {"robot": {"position": {"x": "far"}}}


def test_big_int_in_one_row_keeps_the_other_rows_typed() -> None:
    lines = [json.dumps(changed(PERIODIC, "battery", 2**60)).encode(), *SAMPLE_LINES[:30]]
    table = assert_lossless(lines)
    assert table.column("extra").null_count == len(lines) - 1
    n_actions = sum(json.loads(x)["type"] == "player_action" for x in lines)
    assert table.column("battery").null_count == 1 + n_actions  # actions have no battery


# --- Hypothesis: any mutation of a real row survives ---------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(mutated_rows(), min_size=1, max_size=4), st.booleans())
def test_any_mutated_row_round_trips(rows: list[dict[str, Any]], ascii_only: bool) -> None:
    lines = [json.dumps(r, ensure_ascii=ascii_only).encode() for r in rows]
    assert_lossless(lines)
