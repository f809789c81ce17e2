"""Synthetic bundles in the real exporter's exact file format, for tests and benchmarks.

``write_bundle`` writes the five files the way the game does (see BUNDLE_FORMAT.md): the .npy
files with the game's UTF-8 magic, JavaScript ``false`` and unaligned 129-byte header; a JSONL
file with periodic, event and action rows interleaved, no trailing newline, ints and floats as
``JSON.stringify`` prints them; pretty-printed metadata whose ``session_id`` differs from the
prefix. Frames are game-like (sky, ground, blocks that move with the robot): they compress like
the real variant fixture's frames, not like noise. Everything is driven by a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BundleSpec", "write_bundle", "game_npy_header", "iter_game_frames"]

FRAME_SHAPE = (128, 128, 3)
FRAME_BYTES = 128 * 128 * 3


@dataclass(frozen=True)
class BundleSpec:
    """What to generate. ``pauses`` are (frame index, gap ms) pairs inserted before that frame."""

    n_frames: int = 20
    seed: int = 0
    prefix: str = "reacture_1795600000000"
    interval_ms: int = 250
    blank: bool = False
    events_per_frame: float = 0.5
    pauses: tuple[tuple[int, int], ...] = ()
    first_frame_ms: int = 1200
    environment: str = "wildfire"


def game_npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """The 129-byte header the game writes: UTF-8 encoded magic, JS ``false``, no newline."""
    shape_txt = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"
    text = f"{{'descr': '{descr}', 'fortran_order': false, 'shape': {shape_txt}, }}"
    text = text.ljust(118)
    return "\x93NUMPY".encode() + b"\x01\x00" + (118).to_bytes(2, "little") + text.encode()


def _js_num(x: float, ndigits: int = 12) -> float | int:
    """A number as JSON.stringify would print it: integral values without a fraction."""
    x = round(x, ndigits)
    return int(x) if x == int(x) and abs(x) < 2**53 else x


def iter_game_frames(n: int, seed: int, blank: bool = False, chunk: int = 256) -> Iterator[np.ndarray]:
    """Game-like frames in chunks: horizon, sky gradient, ground, a few coloured boxes."""
    rng = np.random.default_rng(seed)
    sky = np.linspace(200, 120, 64, dtype=np.float32)[:, None]
    boxes = [(int(rng.integers(0, 128)), int(rng.integers(64, 120)), int(rng.integers(6, 24)),
              tuple(int(c) for c in rng.integers(40, 230, 3))) for _ in range(6)]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        out = np.zeros((m, *FRAME_SHAPE), dtype=np.uint8)
        if blank:
            yield out
            continue
        for k in range(m):
            i = start + k
            f = out[k]
            horizon = 60 + int(6 * np.sin(i / 40))
            # bottom row first, as readPixels stores it: ground on top rows after the flip
            f[:, :, 2] = 180
            f[128 - horizon:, :, 0] = sky[: horizon].astype(np.uint8) if horizon <= 64 else 150
            f[128 - horizon:, :, 1] = 170
            f[: 128 - horizon, :, :] = (90, 80, 60)
            shift = (i * 2) % 128
            for x, y, s, colour in boxes:
                x0 = (x + shift) % 128
                f[128 - y: 128 - y + s, x0: x0 + s] = colour
        yield out


def _vec(rng: random.Random, scale: float = 5.0, int_zero: bool = False) -> dict[str, Any]:
    return {k: (0 if int_zero else _js_num(rng.uniform(-scale, scale))) for k in "xyz"}


def _sensors(rng: random.Random, zone: str) -> dict[str, Any]:
    victims = [
        {"distance": rng.uniform(1, 30), "angle": rng.uniform(-3.14, 3.14), "health": rng.uniform(50, 100)}
        for _ in range(rng.randrange(3))
    ]
    return {
        "proximity": _js_num(rng.choice([10, rng.uniform(0.5, 10)])),
        "proximitySensors": {k: _js_num(rng.choice([10, rng.uniform(0.5, 10)]))
                             for k in ("forward", "left", "right", "back")},
        "victimsDetected": len(victims),
        "victims": victims,
        "fuelStationDistance": rng.uniform(1, 60),
        "zone": zone,
        "inYellowZone": zone == "yellow",
        "inRedZone": zone == "red",
    }


def _state_row(rng: random.Random, t_ms: int, event: str, state: dict[str, Any]) -> dict[str, Any]:
    iso_ms = 1795600000000 + t_ms
    secs, ms = divmod(iso_ms, 1000)
    import datetime as _dt

    iso = _dt.datetime.fromtimestamp(secs, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"
    keys = {k: rng.random() < 0.3 for k in ("W", "A", "S", "D")}
    inspect = rng.random() < 0.05
    return {
        "timestamp": iso,
        "timestamp_ms": t_ms,
        "time_elapsed_s": t_ms / 1000,
        "type": "robot_state",
        "event": event,
        "key_presses": {**keys, "Space": False, "E": inspect, "R": False, "mouse_dx": 0,
                        "mouse_dy": 0, "inspect": inspect, "destroy": False},
        "robot": {"position": _vec(rng), "rotation": {"x": 0, "y": _js_num(rng.uniform(-7, 7)), "z": 0},
                  "velocity": _vec(rng, 3), "isJumping": rng.random() < 0.05},
        "accelerometer": {"x": _js_num(rng.uniform(-1, 1)), "y": 0, "z": _js_num(rng.uniform(-1, 1))},
        "battery": _js_num(state["battery"]),
        "damage": _js_num(state["damage"]),
        "health": _js_num(state["health"]),
        "fuel": _js_num(state["fuel"]),
        "zone": state["zone"],
        "camera": {"position": _vec(rng), "rotation": _vec(rng, 1), "yaw": _js_num(rng.uniform(-7, 7)),
                   "pitch": _js_num(rng.uniform(-1, 1))},
        "sensors": _sensors(rng, state["zone"]),
    }


_EVENTS = ("collision_damage", "zone_change", "inspect", "destroy_rubble")
_ACTIONS = ("move_forward_start", "move_forward_stop", "jump", "inspect_start", "inspect_end",
            "destroy_rubble", "refuel")


def _event_row(rng: random.Random, t_ms: int, state: dict[str, Any]) -> dict[str, Any]:
    event = rng.choice(_EVENTS)
    row = _state_row(rng, t_ms, event, state)
    if event == "collision_damage":
        row.update(speed=rng.uniform(0, 5), damage=_js_num(state["damage"]), objectType="rubble")
    elif event == "destroy_rubble":
        row.update(action="destroy_rubble", success=True, position=_vec(rng))
    elif event == "inspect":
        row.update(action="inspect")
    return row


def _action_row(rng: random.Random, t_ms: int, state: dict[str, Any]) -> dict[str, Any]:
    action = rng.choice(_ACTIONS)
    row: dict[str, Any] = {
        "timestamp": t_ms,
        "type": "player_action",
        "action": action,
        "robot": {"position": _vec(rng), "rotation": {"x": 0, "y": _js_num(rng.uniform(-7, 7)), "z": 0}},
        "sensors": _sensors(rng, state["zone"]),
    }
    if action == "destroy_rubble":
        row.update(position=_vec(rng), rubbleId=rng.randrange(100), distance=rng.uniform(0, 3))
    elif action == "refuel":
        row.update(fuelLevel=100)
    return row


def build_rows(spec: BundleSpec, timestamps: np.ndarray) -> list[dict[str, Any]]:
    """All JSONL rows: game_start first (after an earlier-logged zone_change), one periodic row
    per frame with events/actions between frames, game_end last."""
    rng = random.Random(spec.seed)
    state: dict[str, Any] = {"battery": 100, "damage": 0, "health": 100, "fuel": 100, "zone": "safe"}
    rows: list[dict[str, Any]] = []
    start_ms = 49
    # The exporter's quirk: an inner zone_change is logged before the outer game_start.
    rows.append(_state_row(rng, start_ms + 10, "zone_change", {**state, "zone": "yellow"}))
    rows.append(_state_row(rng, start_ms, "game_start", state))
    prev = start_ms
    for i, t in enumerate(timestamps.tolist()):
        t_ms = int(t)
        n_extra = int(rng.random() < spec.events_per_frame) + int(rng.random() < spec.events_per_frame / 2)
        for _ in range(n_extra):
            te = rng.randint(prev, max(prev, t_ms - 1))
            rows.append(_action_row(rng, te, state) if rng.random() < 0.6 else _event_row(rng, te, state))
        state["battery"] = max(0.0, state["battery"] - rng.uniform(0, 0.05))
        state["fuel"] = max(0.0, state["fuel"] - rng.uniform(0, 0.05))
        state["health"] = max(0.0, state["health"] - rng.choice([0, 0, 0, 0.5]))
        state["damage"] = min(1.0, state["damage"] + rng.choice([0, 0, 0.001]))
        row = _state_row(rng, t_ms + rng.choice([0, 0, 0, 1]), "periodic_update_10hz", state)
        row["visual_frame_path"] = f"frames/frame_{i:06d}.npy"
        rows.append(row)
        prev = t_ms
    end = _state_row(rng, prev + 100, "game_end", state)
    end["finalStats"] = {"timeElapsed": (prev + 100) // 1000, "victimsSaved": 0, "victimsTotal": 7,
                         "robotHealth": 0, "robotFuel": state["fuel"], "finalScore": 600}
    rows.append(end)
    return rows


def make_timestamps(spec: BundleSpec) -> np.ndarray:
    rng = random.Random(spec.seed + 1)
    pauses = dict(spec.pauses)
    t = spec.first_frame_ms
    out = np.empty(spec.n_frames, dtype=np.float32)
    for i in range(spec.n_frames):
        t += pauses.get(i, 0)
        out[i] = t
        t += max(1, int(rng.gauss(spec.interval_ms, spec.interval_ms / 4)))
    return out


def write_bundle(folder: str | Path, spec: BundleSpec = BundleSpec()) -> Path:
    """Write the five files of ``spec`` into ``folder`` (created); return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = spec.prefix
    ts = make_timestamps(spec)
    rows = build_rows(spec, ts)
    with open(folder / f"{p}_frames.npy", "wb") as f:
        f.write(game_npy_header("|u1", (spec.n_frames, *FRAME_SHAPE)))
        for chunk in iter_game_frames(spec.n_frames, spec.seed, spec.blank):
            f.write(chunk.tobytes())
    with open(folder / f"{p}_timestamps.npy", "wb") as f:
        f.write(game_npy_header("<f4", (spec.n_frames,)))
        f.write(ts.astype("<f4").tobytes())
    text = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    (folder / f"{p}_data.jsonl").write_text(text, encoding="ascii")
    end_ms = int(rows[-1]["timestamp_ms"]) + 5000
    meta = {
        "session_id": f"{p}_{random.Random(spec.seed).getrandbits(40):09x}"[: len(p) + 10],
        "start_time": "2026-11-25T20:00:00.000Z",
        "end_time": "2026-11-25T20:10:00.000Z",
        "duration_s": end_ms / 1000,
        "sampling_rate_hz": 10,
        "player_id": "player1",
        "player_name": "Player 1",
        "robot_model": "ReActure_v1",
        "environment": spec.environment,
        "environment_name": spec.environment.title() + " Zone",
        "game_result": {"victims_total": 7, "victims_saved": 0, "victims_died": 0, "final_score": 600,
                        "final_health": 0, "final_fuel": 80.5, "completion_status": "failed"},
        "data_stats": {"total_samples": len(rows), "total_frames": spec.n_frames,
                       "actions_logged": sum(r["type"] == "player_action" for r in rows)},
    }
    (folder / f"{p}_metadata.json").write_text(json.dumps(meta, indent=2), encoding="ascii")
    (folder / f"{p}_README.md").write_text(f"# ReActure Dataset - {meta['session_id']}\n", encoding="utf-8")
    return folder
