"""Rows of data.jsonl as Hypothesis draws them: real rows of the shipped sample, mutated (any
JSON anywhere, keys named like the table's columns) and spelled in every way JSON allows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from .jsonl import SAMPLE_LINES


def _line(pred: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(next(x for x in SAMPLE_LINES if pred(json.loads(x))))
    return obj


PERIODIC = _line(lambda r: r.get("event") == "periodic_update_10hz" and r["sensors"]["victims"])
EVENT = _line(lambda r: r.get("event") == "game_end")
ACTION = _line(lambda r: r["type"] == "player_action" and r["action"] == "destroy_rubble")


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**54), max_value=2**54),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1.0, 100.0, 1.2e-7, 2**53, 2**53 + 1, float(2**53), 1e21, 1e16]),
    st.text(max_size=8),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
TRICKY_KEYS = [
    "session",
    "row_index",
    "kind",
    "frame_index",
    "extra",
    "timestamp_ms",
    "timestamp",
    "velocity",
    "visual_frame_path",
    "rubbleId",
    "x",
    "victims",
    "event",
]
BASES = [json.loads(x) for x in SAMPLE_LINES[::9]] + [PERIODIC, EVENT, ACTION]


def _containers(value: Any) -> Iterator[dict[str, Any] | list[Any]]:
    if isinstance(value, dict | list):
        yield value
        for v in value.values() if isinstance(value, dict) else value:
            yield from _containers(v)


@st.composite
def mutated_rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(0, 4))):
        targets = list(_containers(row))
        target = targets[draw(st.integers(0, len(targets) - 1))]
        op = draw(st.sampled_from(["set", "add", "delete", "victims"]))
        if op == "victims":
            victim = st.fixed_dictionaries(
                {"distance": st.floats(0, 20), "angle": st.floats(-4, 4), "health": SCALARS},
                optional={"id": JSON},
            )
            sensors = row.get("sensors")  # an earlier step may have set it to any JSON value
            row["sensors"] = {
                **(sensors if isinstance(sensors, dict) else {}),
                "victims": draw(st.lists(st.none() | victim, max_size=3)),
            }
        elif isinstance(target, list):
            if target and op != "add":
                target[draw(st.integers(0, len(target) - 1))] = draw(JSON)
            else:
                target.append(draw(JSON))
        elif op == "add":
            target[draw(st.sampled_from(TRICKY_KEYS) | st.text(max_size=6))] = draw(JSON)
        else:
            keys = [k for k in target if not (target is row and k == "type")]
            if keys:
                key = draw(st.sampled_from(keys))
                if op == "delete":
                    del target[key]
                else:
                    target[key] = draw(JSON)
    return row


def _respell_number(m: re.Match[bytes], choice: int) -> bytes:
    """Another spelling of a JSON number (some change its type: that is the point)."""
    text = m.group(0)
    if b"." in text or b"e" in text or b"E" in text:
        return [text, text + b"0", text.upper(), text][choice % 4]
    return [text, text + b".0", text + b"e0", text + b".00", b"-0" if text == b"0" else text][
        choice % 5
    ]


_NUMBER = re.compile(rb"(?<=[:\[,])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@st.composite
def spelled(draw: st.DrawFn) -> bytes:
    row = draw(st.one_of(mutated_rows(), st.sampled_from(BASES)))
    compact = draw(st.booleans())
    text = json.dumps(
        row,
        ensure_ascii=draw(st.booleans()),
        separators=(",", ":") if compact else (", ", ": "),
    ).encode()
    if draw(st.booleans()):
        choices = iter(draw(st.lists(st.integers(0, 9), min_size=1, max_size=64)))
        text = _NUMBER.sub(lambda m: _respell_number(m, next(choices, 0)), text)
    trick = draw(
        st.sampled_from(["none", "dup-type", "nan", "null", "escape", "two-objects", "space"])
    )
    if trick == "dup-type" and text.startswith(b"{"):
        text = b'{"type":"robot_state",' + text[1:]
    elif trick == "nan":
        text = text.replace(b'"battery":100', b'"battery":NaN', 1)
    elif trick == "null":
        text = text.replace(b'"speed":', b'"speed":null,"s0":', 1)
    elif trick == "escape":
        text = text.replace(b'"zone":"', b'"zone":"\\u0041', 1)
    elif trick == "two-objects":
        text = text + b'{"type":"robot_state"}'
    elif trick == "space":
        text = text.replace(b":", b" : ", 2)
    return text
