"""A sample's ``.json``: one structure whatever the rows hold; what does not fit is in ``extra``;
the same bytes from scanned blocks of rows as from rows decoded one by one."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.formats.wds.sample_json import (
    SAMPLE_ROW,
    SAMPLE_TYPE,
    sample_document,
    sample_json,
)
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.rowscan import scan_rows
from reacture_convert.writers.webdataset.sample_sink import row_documents
from tests.helpers.jsonl import BAD_CASES
from tests.helpers.paths import REPO
from tests.helpers.rows import spelled
from tests.helpers.sources import same_row

VEC = {"x": 1, "y": 2.5, "z": 0}
SENSORS = {
    "proximity": 3,
    "proximitySensors": {"forward": 1, "left": 2, "right": 3, "back": 4},
    "victimsDetected": 0,
    "victims": [],
    "fuelStationDistance": 9.5,
    "zone": "safe",
    "inYellowZone": False,
    "inRedZone": False,
}
PERIODIC: dict[str, Any] = {
    "timestamp": "2026-11-25T20:04:45.625Z",
    "timestamp_ms": 1017,
    "time_elapsed_s": 1.017,
    "type": "robot_state",
    "event": "periodic_update_10hz",
    "key_presses": {
        **{k: False for k in ("W", "A", "S", "D", "Space", "E", "R")},
        "mouse_dx": 0,
        "mouse_dy": 0,
        "inspect": False,
        "destroy": False,
    },
    "robot": {"position": {**VEC}, "rotation": {**VEC}, "velocity": {**VEC}, "isJumping": False},
    "accelerometer": {**VEC},
    "battery": 100,
    "damage": 0,
    "health": 99.5,
    "fuel": 100,
    "zone": "safe",
    "camera": {"position": {**VEC}, "rotation": {**VEC}, "yaw": 0, "pitch": 0},
    "sensors": SENSORS,
    "visual_frame_path": "frames/frame_000003.npy",
}
ACTION: dict[str, Any] = {
    "timestamp": 1010,
    "type": "player_action",
    "action": "refuel",
    "robot": {"position": VEC, "rotation": VEC},
    "sensors": SENSORS,
    "fuelLevel": 40,
}


def parsed(obj: dict[str, Any], row_index: int, kind: str, frame: int | None = None) -> ParsedRow:
    return ParsedRow(row_index, kind, None, frame, obj)


def encode(periodic: dict[str, Any], *events: dict[str, Any]) -> dict[str, Any]:
    rows = [parsed(e, k, "action" if "action" in e else "event") for k, e in enumerate(events)]
    row = parsed(periodic, len(events), "periodic", 3)
    doc: dict[str, Any] = json.loads(sample_json("s", 3, 1017.0, row, rows))
    return doc


def test_every_sample_has_every_field_numbers_as_floats() -> None:
    doc = encode(PERIODIC, ACTION)
    typed = pa.array([doc], type=SAMPLE_TYPE)
    assert typed.to_pylist() == [doc]  # every key of SAMPLE_TYPE, each of its declared type
    row, (action,) = doc["row"], doc["events"]
    assert list(row) == list(action) == SAMPLE_ROW.names
    assert row["battery"] == 100.0 and isinstance(row["battery"], float)
    assert row["robot"]["position"] == {"x": 1.0, "y": 2.5, "z": 0.0}
    assert (row["rubbleId"], row["extra"], row["frame_index"]) == (None, None, 3)
    # a player_action's integer timestamp is its timestamp_ms (as in the rows table) and extra
    assert (action["timestamp"], action["timestamp_ms"]) == (None, 1010)
    assert json.loads(action["extra"]) == {"timestamp": 1010}
    assert action["event"] is None and action["robot"]["velocity"] is None
    assert same_row(row, PERIODIC) and same_row(action, ACTION)


def test_what_does_not_fit_is_in_extra() -> None:
    odd = copy.deepcopy(PERIODIC)
    odd["battery"] = "full"  # another type
    odd["robot"]["position"]["x"] = "left"  # another type, nested
    odd["mood"] = {"happy": True}  # unknown
    row = encode(odd)["row"]
    assert row["battery"] is None and row["robot"]["position"] == {"x": None, "y": 2.5, "z": 0.0}
    assert json.loads(row["extra"]) == {
        "mood": {"happy": True},
        "battery": "full",
        "robot": odd["robot"],
    }
    assert same_row(row, odd)
    assert pa.array([encode(odd)], type=SAMPLE_TYPE).to_pylist() == [encode(odd)]


GOLDEN = Path(__file__).parent / "golden" / "sample_json.json"


def same_rows_bytes() -> bytes:
    """One sample's bytes from fixed rows: a periodic row with fields that go to ``extra``
    (unknown keys, another type) and two events before it."""
    odd = copy.deepcopy(PERIODIC)
    odd["mood"] = {"zeta": 1, "alpha": [1.5, "x", None], "happy": True}
    odd["battery"] = "full"
    row = parsed(odd, 2, "periodic", 3)
    events = [parsed(ACTION, 0, "action"), parsed({**ACTION, "extraKey": 7}, 1, "action")]
    return sample_json("s", 3, 1017.5, row, events)


def test_same_rows_give_the_same_bytes() -> None:
    """Shards are reproducible: the same rows give the same bytes in another process, with
    another hash seed (no set or hash order leaks in), and the bytes committed in the golden
    file (a change of the sample JSON's bytes is a change of the shard format: update the
    golden file on purpose, with ``python -c 'from tests.formats.test_sample_json import
    same_rows_bytes as b; import sys; sys.stdout.buffer.write(b())' > GOLDEN``)."""
    here = same_rows_bytes()
    code = (
        "import sys; from tests.formats.test_sample_json import same_rows_bytes as b; "
        "sys.stdout.buffer.write(b())"
    )
    for seed in ("0", "2718281828"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, check=True
        )
        assert done.stdout == here, seed
    assert here == GOLDEN.read_bytes()


# --- from scanned blocks: the bytes of rows decoded one by one ------------------------------------
def assert_documents_are_the_rows(data: bytes, block_rows: int = 4096) -> None:
    """Each row's document from the scanned blocks (its rows-table columns) is what ``_row``
    makes of the row decoded on its own: compared as the samples they give."""
    rows = [r for r in iter_jsonl(io.BytesIO(data), "data.jsonl") if isinstance(r, ParsedRow)]
    blocks = scan_rows(io.BytesIO(data), "data.jsonl", block_rows=block_rows)
    documents = [d for block in blocks for d in row_documents(block)]
    assert len(documents) == len(rows)
    for row, doc in zip(rows, documents, strict=True):
        want = sample_json("s", 7, 1017.5, row, [row])
        assert sample_document("s", 7, 1017.5, row.row_index, doc, [doc]) == want


def test_documents_of_the_real_rows(real_bundle: Path) -> None:
    assert_documents_are_the_rows(next(real_bundle.glob("*_data.jsonl")).read_bytes())


@pytest.mark.parametrize("lines", [c[1] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_documents_of_bad_lines(lines: list[bytes]) -> None:
    assert_documents_are_the_rows(b"\n".join(lines))


@settings(max_examples=100, deadline=None)
@given(st.lists(spelled(), min_size=1, max_size=6), st.integers(1, 4))
def test_documents_of_any_rows(lines: list[bytes], block_rows: int) -> None:
    """Mutated and re-spelled rows: fast and exact paths mixed within blocks."""
    assert_documents_are_the_rows(b"\n".join(lines), block_rows)
