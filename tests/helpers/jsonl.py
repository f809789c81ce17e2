"""Lines of data.jsonl for the line readers' tests: the shipped sample's lines, three of them
as they are, and a table of bad lines with the finding each gives."""

from __future__ import annotations

import json
from typing import Any

from reacture_convert.ingest.jsonl import MAX_DEPTH, MAX_LINE_BYTES

from .paths import SAMPLE_DIR

SAMPLE_LINES = (SAMPLE_DIR / "reacture_1795637238001_data.jsonl").read_bytes().split(b"\n")


def _line(pred: Any) -> bytes:
    return next(line for line in SAMPLE_LINES if pred(json.loads(line)))


PERIODIC = _line(lambda r: r.get("event") == "periodic_update_10hz")
EVENT = _line(lambda r: r.get("event") == "game_start")
ACTION = _line(lambda r: r["type"] == "player_action")


def edit(line: bytes, **changes: Any) -> bytes:
    """A JSON line with top-level fields changed (a value of ``...`` deletes the field)."""
    obj = json.loads(line)
    for k, v in changes.items():
        if v is ...:
            del obj[k]
        else:
            obj[k] = v
    return json.dumps(obj, separators=(",", ":")).encode()


def deep(n: int) -> bytes:
    return b'{"type":"robot_state","x":' + b"[" * n + b"]" * n + b"}"


def nested_dup() -> bytes:
    text = PERIODIC.decode()
    return text.replace('"position":{"x":', '"position":{"x":7,"x":', 1).encode()


# (id, lines of the file, expected code(s), expected 1-based line). The bad line sits between
# good lines so that the line number is checked.
BAD_CASES: list[tuple[str, list[bytes], str | tuple[str, ...], int]] = [
    ("bom", [b"\xef\xbb\xbf" + EVENT, PERIODIC], "JSONL_BOM", 1),
    (
        "bad-utf8-in-string",
        [EVENT, edit(EVENT, zone="Z").replace(b'"Z"', b'"\xff"'), PERIODIC],
        "JSONL_BAD_UTF8",
        2,
    ),
    ("bad-utf8-outside-string", [EVENT, b"\xc3\x28" + PERIODIC], "JSONL_BAD_UTF8", 2),
    (
        "nan",
        [EVENT, PERIODIC.replace(b'"battery":100', b'"battery":NaN'), PERIODIC],
        "JSONL_BAD_JSON",
        2,
    ),
    (
        "infinity",
        [EVENT, PERIODIC.replace(b'"battery":100', b'"battery":Infinity')],
        "JSONL_BAD_JSON",
        2,
    ),
    ("truncated", [EVENT, PERIODIC[:-7], PERIODIC], "JSONL_BAD_JSON", 2),
    ("trailing-garbage", [EVENT, PERIODIC + b" x", PERIODIC], "JSONL_BAD_JSON", 2),
    (
        "control-char",
        [EVENT, PERIODIC.replace(b'"zone":"safe"', b'"zone":"sa\x01fe"'), PERIODIC],
        "JSONL_BAD_JSON",
        2,
    ),
    (
        "lone-surrogate",
        [EVENT, edit(EVENT, zone="Z").replace(b'"Z"', b'"\\ud800"')],
        "JSONL_BAD_JSON",
        2,
    ),
    (
        "number-too-big",
        [EVENT, PERIODIC.replace(b'"battery":100', b'"battery":1e400')],
        "JSONL_BAD_JSON",
        2,
    ),
    ("deep-100000", [EVENT, deep(100_000), PERIODIC], "JSONL_TOO_DEEP", 2),
    ("deep-just-over", [EVENT, deep(MAX_DEPTH), PERIODIC], "JSONL_TOO_DEEP", 2),
    (
        "over-long",
        [EVENT, b'{"pad":"' + b"x" * MAX_LINE_BYTES + b'"}', PERIODIC],
        "JSONL_LINE_TOO_LONG",
        2,
    ),
    ("dup-key-top", [EVENT, PERIODIC[:-1] + b',"battery":5}', PERIODIC], "JSONL_DUPLICATE_KEY", 2),
    ("dup-key-nested", [EVENT, nested_dup(), PERIODIC], "JSONL_DUPLICATE_KEY", 2),
    ("dup-key-spaces", [EVENT, EVENT[:-1] + b', "zone" : "safe" }'], "JSONL_DUPLICATE_KEY", 2),
    ("dup-key-escaped", [EVENT, EVENT[:-1] + b',"\\u007aone":"safe"}'], "JSONL_DUPLICATE_KEY", 2),
    ("array-line", [EVENT, b"[1,2]", PERIODIC], "JSONL_NOT_OBJECT", 2),
    ("number-line", [EVENT, b"42", PERIODIC], "JSONL_NOT_OBJECT", 2),
    ("string-line", [EVENT, b'"robot_state"'], "JSONL_NOT_OBJECT", 2),
    ("unknown-type", [EVENT, edit(PERIODIC, type="robot_dream"), PERIODIC], "ROW_UNKNOWN_TYPE", 2),
    ("missing-type", [EVENT, edit(PERIODIC, type=...)], "ROW_UNKNOWN_TYPE", 2),
    ("list-type", [EVENT, edit(PERIODIC, type=["robot_state"])], "ROW_UNKNOWN_TYPE", 2),
    ("missing-timestamp_ms", [EVENT, edit(PERIODIC, timestamp_ms=...)], "ROW_SCHEMA", 2),
    ("string-battery", [EVENT, edit(PERIODIC, battery="100"), PERIODIC], "ROW_SCHEMA", 2),
    ("bool-health", [EVENT, edit(EVENT, health=True)], "ROW_SCHEMA", 2),
    ("float-timestamp_ms", [EVENT, edit(EVENT, timestamp_ms=12.5)], "ROW_SCHEMA", 2),
    (
        "string-action-timestamp",
        [EVENT, edit(ACTION, timestamp="2026-11-25T20:06:40.009Z")],
        "ROW_SCHEMA",
        2,
    ),
    ("null-in-event-row", [EVENT, edit(EVENT, fuel=None)], "ROW_SCHEMA", 2),
    ("periodic-without-frame", [EVENT, edit(PERIODIC, visual_frame_path=...)], "ROW_SCHEMA", 2),
    ("null-in-periodic", [EVENT, edit(PERIODIC, battery=None), PERIODIC], "ROW_NULL", 2),
    (
        "null-in-unknown-field",
        [EVENT, edit(PERIODIC, note={"a": None})],
        ("ROW_NULL", "ROW_UNKNOWN_FIELD"),
        2,
    ),
    ("battery-120", [EVENT, edit(PERIODIC, battery=120), PERIODIC], "ROW_OUT_OF_RANGE", 2),
    ("health-negative", [EVENT, edit(EVENT, health=-0.5)], "ROW_OUT_OF_RANGE", 2),
    ("damage-1.5", [EVENT, edit(PERIODIC, damage=1.5), PERIODIC], "ROW_OUT_OF_RANGE", 2),
    ("unknown-field", [EVENT, edit(PERIODIC, wheels=4)], "ROW_UNKNOWN_FIELD", 2),
    (
        "bad-frame-path",
        [EVENT, edit(PERIODIC, visual_frame_path="frame_1.png"), PERIODIC],
        "FRAME_REF_BAD",
        2,
    ),
    (
        "short-frame-number",
        [EVENT, edit(PERIODIC, visual_frame_path="frames/frame_12345.npy")],
        "FRAME_REF_BAD",
        2,
    ),
    (
        "frame-number-over-int32",
        [EVENT, edit(PERIODIC, visual_frame_path="frames/frame_9999999999.npy")],
        "FRAME_REF_BAD",
        2,
    ),
    ("empty-line-middle", [EVENT, b"", PERIODIC], "JSONL_EMPTY_LINE", 2),
    ("blank-line-middle", [EVENT, b" \t", PERIODIC], "JSONL_EMPTY_LINE", 2),
]
