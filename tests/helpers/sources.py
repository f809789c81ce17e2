"""Bundles' sources read independently of the package (plain ``np.fromfile`` and ``json.loads``):
what the readers and writers must hand back."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NPY_DATA_OFFSET = 129  # where the game's .npy data starts (docs/bundle-format.md)
FRAME_REF = re.compile(r"frame_(\d+)\.npy$")


@dataclass(frozen=True)
class Source:
    frames: np.ndarray
    timestamps: np.ndarray
    rows: list[dict[str, Any]]
    metadata: dict[str, Any]


def one(folder: Path, role: str) -> Path:
    (path,) = folder.glob(f"*_{role}")
    return path


def read_source(folder: Path) -> Source:
    frames = np.fromfile(one(folder, "frames.npy"), np.uint8, offset=NPY_DATA_OFFSET)
    ts = np.fromfile(one(folder, "timestamps.npy"), "<f4", offset=NPY_DATA_OFFSET)
    lines = one(folder, "data.jsonl").read_bytes().split(b"\n")
    return Source(
        frames.reshape(-1, 128, 128, 3),
        ts,
        [json.loads(line) for line in lines],
        json.loads(one(folder, "metadata.json").read_text()),
    )


def expected_labels(src: Source) -> dict[int, dict[str, Any]]:
    """frame index -> labels, walking the JSON rows: a frame's events are the rows since the
    previous periodic row."""
    out: dict[int, dict[str, Any]] = {}
    pending: list[dict[str, Any]] = []
    for line, row in enumerate(src.rows):
        m = FRAME_REF.search(row.get("visual_frame_path", ""))
        if m is None:
            pending.append(row)
            continue
        i = int(m.group(1))
        acts = {e["action"] for e in pending if e["type"] == "player_action"}
        evs = {e["event"] for e in pending if e["type"] == "robot_state"}
        destroy = "destroy_rubble" in acts or "destroy_rubble" in evs
        kp = row["key_presses"]
        out[i] = {
            "row_index": line,
            "keys": [kp["W"], kp["A"], kp["S"], kp["D"], kp["inspect"], destroy],
            "actions": [
                "jump" in acts,
                destroy,
                "refuel" in acts,
                "rescue_victim" in acts or "rescue" in evs,
            ],
            "battery": row["battery"],
            "damage": row["damage"],
            "health": row["health"],
            "position": [row["robot"]["position"][c] for c in "xyz"],
            "velocity": [row["robot"]["velocity"][c] for c in "xyz"],
            "accelerometer": [row["accelerometer"][c] for c in "xyz"],
            "timestamp_ms": float(src.timestamps[i]),
        }
        pending = []
    return out


def same_row(sample_row: dict[str, Any], source: dict[str, Any]) -> bool:
    """The sample's row, its ``extra`` applied, holds every field of the source row, equal as
    JSON numbers (``100.0 == 100``); every other field is null. A player_action's ``timestamp``
    is also its ``timestamp_ms``."""
    got = {k: v for k, v in sample_row.items() if k not in ("row_index", "kind", "frame_index")}
    got.update(json.loads(got.pop("extra") or "{}"))
    src = dict(source)
    if src["type"] == "player_action":
        src["timestamp_ms"] = src["timestamp"]

    def equal(a: Any, b: Any) -> bool:
        if isinstance(b, dict):
            keys = {*a, *b} if isinstance(a, dict) else set()
            return isinstance(a, dict) and all(
                equal(a.get(k), b.get(k)) for k in keys if not (k not in b and a[k] is None)
            )
        if isinstance(b, list):
            return isinstance(a, list) and len(a) == len(b) and all(map(equal, a, b))
        if isinstance(b, bool) or isinstance(a, bool):
            return a is b
        return bool(a == b)

    return equal(got, src)
