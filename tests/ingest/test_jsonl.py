"""data.jsonl parsing: real fixtures, a table of bad lines, streaming limits, metadata."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.findings import CODES, Finding, Severity
from reacture_convert.ingest.jsonl import (
    MAX_LINE_BYTES,
    ParsedRow,
    _iter_lines,
    iter_jsonl,
    parse_metadata,
)
from reacture_convert.ingest.schema import Metadata
from tests.helpers.jsonl import ACTION, BAD_CASES, EVENT, PERIODIC, edit
from tests.helpers.paths import SAMPLE_DIR

SAMPLE = SAMPLE_DIR


def parse(data: bytes, **kwargs: Any) -> list[ParsedRow | Finding]:
    return list(iter_jsonl(io.BytesIO(data), "data.jsonl", **kwargs))


def rows_of(items: list[ParsedRow | Finding]) -> list[ParsedRow]:
    return [i for i in items if isinstance(i, ParsedRow)]


def findings_of(items: list[ParsedRow | Finding]) -> list[Finding]:
    return [i for i in items if isinstance(i, Finding)]


# --- real fixtures ------------------------------------------------------------------------------
# docs/bundle-format.md, "The recordings in tests/data": rows, robot_state, player_action,
# robot_state events, actions.
EXPECTED: dict[str, dict[str, Any]] = {
    "reacture_1795637238001": {
        "rows": 173,
        "robot_state": 113,
        "player_action": 60,
        "events": {
            "periodic_update_10hz": 92,
            "collision_damage": 10,
            "zone_change": 5,
            "inspect": 3,
            "destroy_rubble": 1,
            "game_start": 1,
            "game_end": 1,
        },
        "actions": {
            "move_*_start": 27,
            "move_*_stop": 25,
            "inspect_start": 3,
            "inspect_end": 3,
            "jump": 1,
            "destroy_rubble": 1,
        },
    },
    "reacture_1795637693305": {
        "rows": 416,
        "robot_state": 310,
        "player_action": 106,
        "events": {
            "periodic_update_10hz": 279,
            "collision_damage": 12,
            "inspect": 8,
            "zone_change": 4,
            "rescue": 3,
            "destroy_rubble": 2,
            "game_start": 1,
            "game_end": 1,
        },
        "actions": {
            "move_*_start": 41,
            "move_*_stop": 40,
            "inspect_start": 8,
            "inspect_end": 8,
            "refuel": 3,
            "jump": 2,
            "destroy_rubble": 2,
            "game_paused": 1,
            "game_resumed": 1,
        },
    },
    "reacture_1795637148842": {
        "rows": 331,
        "robot_state": 201,
        "player_action": 130,
        "events": {
            "periodic_update_10hz": 163,
            "zone_change": 16,
            "collision_damage": 11,
            "inspect": 7,
            "damage_from_zone": 2,
            "game_start": 1,
            "game_end": 1,
        },
        "actions": {
            "move_*_start": 56,
            "move_*_stop": 56,
            "inspect_start": 7,
            "inspect_end": 7,
            "jump": 4,
        },
    },
}


def _jsonl(bundle: Path) -> Path:
    (path,) = bundle.glob("*_data.jsonl")
    return path


def test_real_fixture_parses_without_findings(real_bundle: Path) -> None:
    with open(_jsonl(real_bundle), "rb") as f:
        items = list(iter_jsonl(f, "data.jsonl"))
    assert findings_of(items) == []


def test_real_fixture_counts_match_the_readme(real_bundle: Path) -> None:
    want = EXPECTED[real_bundle.name]
    rows = rows_of(parse(_jsonl(real_bundle).read_bytes()))
    kinds = Counter(r.kind for r in rows)
    assert len(rows) == want["rows"]
    assert kinds["periodic"] == want["events"]["periodic_update_10hz"]
    assert kinds["event"] == want["robot_state"] - kinds["periodic"]
    assert kinds["action"] == want["player_action"]
    events = Counter(r.obj["event"] for r in rows if r.kind != "action")
    actions = Counter(
        re.sub(r"^move_\w+?_(start|stop)$", r"move_*_\1", r.obj["action"])
        for r in rows
        if r.kind == "action"
    )
    assert events == want["events"]
    assert actions == want["actions"]


def test_real_fixture_row_fields(real_bundle: Path) -> None:
    lines = _jsonl(real_bundle).read_bytes().split(b"\n")
    rows = rows_of(parse(b"\n".join(lines)))
    assert [r.row_index for r in rows] == list(range(len(lines)))
    assert [r.line for r in rows] == list(range(1, len(lines) + 1))
    for row, line in zip(rows, lines, strict=True):
        assert row.obj == json.loads(line)
        if row.kind == "action":
            assert row.timestamp_ms == row.obj["timestamp"] and isinstance(row.timestamp_ms, int)
            assert row.frame_index is None
        else:
            assert row.timestamp_ms == row.obj["timestamp_ms"]
        if row.kind == "periodic":
            number = re.fullmatch(r"frames/frame_(\d+)\.npy", row.obj["visual_frame_path"])
            assert number is not None and row.frame_index == int(number.group(1))
    assert [r.frame_index for r in rows if r.kind == "periodic"] == list(
        range(sum(r.kind == "periodic" for r in rows))
    )


def test_real_metadata_parses(real_bundle: Path) -> None:
    (path,) = real_bundle.glob("*_metadata.json")
    meta, raw, findings = parse_metadata(path.read_bytes(), path.name)
    assert findings == [] and isinstance(meta, Metadata) and raw == json.loads(path.read_bytes())
    rows = rows_of(parse(_jsonl(real_bundle).read_bytes()))
    assert meta.data_stats.total_samples == len(rows)
    assert meta.data_stats.actions_logged == sum(r.kind == "action" for r in rows)


# --- bad lines ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "code", "line"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_line_is_reported_at_its_line(
    lines: list[bytes], code: str | tuple[str, ...], line: int
) -> None:
    items = parse(b"\n".join(lines))
    findings = findings_of(items)
    codes = (code,) if isinstance(code, str) else code
    assert [(f.code, f.line) for f in findings] == [(c, line) for c in codes], [
        str(f) for f in findings
    ]
    assert findings[0].file == "data.jsonl"
    # the good lines around it are still rows, at their own line numbers
    good = [n for n, raw in enumerate(lines, 1) if n != line and raw.strip()]
    assert {r.line for r in rows_of(items)} >= set(good)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"battery": "100"}, "$.battery: expected a number, got str"),
        (
            {
                "robot": {
                    "position": {"x": "0", "y": 1, "z": 0},
                    "rotation": {"x": 0, "y": 0, "z": 0},
                    "velocity": {"x": 0, "y": 0, "z": 0},
                    "isJumping": False,
                }
            },
            "$.robot.position.x: expected a number, got str",
        ),
        ({"timestamp_ms": ...}, "$.timestamp_ms: missing required field"),
        ({"battery": 120, "damage": 1.5}, "$.battery = 120 is outside 0..100; $.damage = 1.5"),
        ({"battery": None, "sensors": None}, "null in a periodic row: $.battery; $.sensors"),
        ({"wheels": 4, "note": "x"}, "(kept in `extra`): $.wheels; $.note"),
    ],
    ids=["top", "nested", "missing", "range", "nulls", "unknown"],
)
def test_messages_name_the_path(changes: dict[str, Any], message: str) -> None:
    (f,) = findings_of(parse(edit(PERIODIC, **changes)))
    assert message in f.message


def test_damage_amount_events_are_not_range_checked() -> None:
    line = edit(EVENT, event="collision_damage", damage=10, speed=3.5, objectType="rubble")
    assert findings_of(parse(line)) == []


def test_rows_with_errors_are_yielded_after_their_findings() -> None:
    items = parse(b"\n".join([EVENT, edit(PERIODIC, battery="x"), PERIODIC]))
    assert [type(i).__name__ for i in items] == ["ParsedRow", "Finding", "ParsedRow", "ParsedRow"]
    bad = items[2]
    assert isinstance(bad, ParsedRow) and bad.row_index == 1 and bad.obj["battery"] == "x"


def test_duplicate_key_row_keeps_the_last_value() -> None:
    items = parse(PERIODIC[:-1] + b',"battery":5}')
    (f,) = findings_of(items)
    assert "$.battery" in f.message
    assert rows_of(items)[0].obj["battery"] == 5


def test_depth_at_the_limit_is_accepted() -> None:
    # an unknown field nesting MAX_DEPTH - 1 arrays inside the row object: depth == MAX_DEPTH
    line = edit(EVENT, deep=[]).replace(b'"deep":[]', b'"deep":' + b"[" * 63 + b"]" * 63)
    assert [f.code for f in findings_of(parse(line))] == ["ROW_UNKNOWN_FIELD"]


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    line = edit(EVENT, zone="[" * 500 + "{" * 500)
    assert findings_of(parse(line)) == []


# --- files as a whole ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "codes"),
    [
        (b"", ["JSONL_EMPTY"]),
        (b"\n", ["JSONL_EMPTY_LINE", "JSONL_EMPTY"]),
        (b"\n\n", ["JSONL_EMPTY_LINE", "JSONL_EMPTY_LINE", "JSONL_EMPTY"]),
        (b"\xef\xbb\xbf", ["JSONL_BOM", "JSONL_EMPTY_LINE", "JSONL_EMPTY"]),
    ],
    ids=["empty", "newline", "two-newlines", "bom-only"],
)
def test_files_without_rows(data: bytes, codes: list[str]) -> None:
    assert [f.code for f in findings_of(parse(data))] == codes


@pytest.mark.parametrize("ending", [b"", b"\n"], ids=["no-final-newline", "final-newline"])
def test_final_newline_is_optional(ending: bytes) -> None:
    items = parse(EVENT + b"\n" + PERIODIC + ending)
    assert findings_of(items) == [] and len(rows_of(items)) == 2


def test_row_index_counts_rows_line_counts_lines() -> None:
    items = parse(b"\n".join([EVENT, b"", PERIODIC]))
    rows = rows_of(items)
    assert [(r.row_index, r.line) for r in rows] == [(0, 1), (1, 3)]


class TrickleStream(io.RawIOBase):
    """A stream that returns at most ``step`` bytes a read, like a slow network file."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        out = self.data[self.pos : self.pos + min(self.step, n if n >= 0 else self.step)]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("step", [1, 7, 4096], ids=["1-byte", "7-bytes", "4k"])
def test_short_reads_give_the_same_result(step: int) -> None:
    data = b"\n".join([EVENT, b"", PERIODIC, edit(PERIODIC, battery=120), ACTION]) + b"\n"
    want = parse(data)
    got = list(iter_jsonl(TrickleStream(data, step), "data.jsonl"))  # type: ignore[arg-type]
    assert got == want


class EndlessLine(io.RawIOBase):
    """``size`` bytes of one line, made on demand, then a newline and a good row."""

    def __init__(self, size: int, tail: bytes) -> None:
        self.left, self.tail = size, tail

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left > 0:
            k = min(n, self.left)
            self.left -= k
            return b"x" * k
        out, self.tail = self.tail[:n], self.tail[n:]
        return out


def test_over_long_line_is_skipped_in_bounded_memory() -> None:
    stream = EndlessLine(64 * MAX_LINE_BYTES, b"\n" + EVENT)
    tracemalloc.start()
    try:
        items = list(iter_jsonl(stream, "data.jsonl"))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(f.code, f.line) for f in findings_of(items)] == [("JSONL_LINE_TOO_LONG", 1)]
    assert [(r.row_index, r.line) for r in rows_of(items)] == [(1, 2)]
    assert peak < 4 * MAX_LINE_BYTES  # never the whole 64 MiB line


def test_line_limit_is_a_parameter() -> None:
    items = parse(EVENT + b"\n" + PERIODIC, max_line_bytes=len(EVENT))
    assert [(f.code, f.line) for f in findings_of(items)] == [("JSONL_LINE_TOO_LONG", 2)]


PIECES = [EVENT, PERIODIC, ACTION, b"{}", b"[", b'{"a":1,"a":2}', b"\xef\xbb\xbf"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), st.sampled_from(PIECES)), max_size=6))
def test_never_crashes_and_every_code_is_registered(parts: list[bytes]) -> None:
    data = b"\n".join(parts)
    n_lines = data.count(b"\n") + 1
    for item in parse(data):
        if isinstance(item, Finding):
            assert item.code in CODES and item.severity is CODES[item.code][0]
            assert item.line is None or 1 <= item.line <= n_lines
        else:
            assert item.kind in ("periodic", "event", "action")


# --- metadata -----------------------------------------------------------------------------------
META = (SAMPLE / "reacture_1795637238001_metadata.json").read_bytes()


@pytest.mark.parametrize(
    ("data", "code", "message", "raw_kept"),
    [
        (b"{", "META_BAD_JSON", "not valid JSON", False),
        (b"\xef\xbb\xbf" + META, "META_BAD_JSON", "not valid JSON", False),
        (b"[1]", "META_BAD_JSON", "a JSON array, not an object", False),
        (b"[" * 100_000 + b"]" * 100_000, "META_BAD_JSON", "", False),
        (
            META.replace(b'"total_frames": 92', b'"total_frames": "92"'),
            "META_SCHEMA",
            "$.data_stats.total_frames: expected a non-negative integer, got str",
            True,
        ),
        (
            META.replace(b'"session_id"', b'"sessionId"'),
            "META_SCHEMA",
            "$.session_id: missing required field",
            True,
        ),
    ],
    ids=["truncated", "bom", "array", "deep", "string-count", "missing-field"],
)
def test_bad_metadata(data: bytes, code: str, message: str, raw_kept: bool) -> None:
    meta, raw, findings = parse_metadata(data, "m.json")
    assert meta is None
    assert [f.code for f in findings] == [code] and message in findings[0].message
    assert findings[0].severity is Severity.ERROR
    assert (raw is not None) == raw_kept


def test_metadata_unknown_keys_are_kept_in_raw() -> None:
    data = META[:-1] + b',\n  "new": {"a": 1}\n}'
    meta, raw, findings = parse_metadata(data, "m.json")
    assert findings == [] and meta is not None and raw is not None and raw["new"] == {"a": 1}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b"bb", b"\n", b"cccc"]), max_size=40),
    st.integers(1, 9),
    st.integers(0, 12),
)
def test_line_splitter_matches_a_reference(parts: list[bytes], step: int, limit: int) -> None:
    data = b"".join(parts)
    pieces = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        pieces = pieces[:-1]  # a final newline ends the last line; it starts no new one
    want = [(n, p if len(p) <= limit else None) for n, p in enumerate(pieces, 1)]
    assert list(_iter_lines(TrickleStream(data, step), limit)) == want  # type: ignore[arg-type]
