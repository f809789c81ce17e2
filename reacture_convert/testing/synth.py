"""Synthetic bundles in the real exporter's exact file format, for tests and benchmarks.

``write_bundle`` writes the five files the way the game does (see docs/bundle-format.md): the .npy
files with the game's UTF-8 magic, JavaScript ``false`` and unaligned 129-byte header; a JSONL
file with periodic, event and action rows interleaved, no trailing newline, ints and floats as
``JSON.stringify`` prints them; pretty-printed metadata whose ``session_id`` differs from the
prefix. Frames are game-like (flat sky, fogged ground, flat-shaded rubble, a moving camera and
moving objects): they compress like the real variant fixture's frames, not like noise.
Everything is driven by a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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


# --- frames -------------------------------------------------------------------------------------
# The scene is a 360-degree panorama strip (top-down rows), rendered once per seed the way the
# real variant fixture looks: a flat sky, ground in distance-fog bands with grass/water patches,
# clusters of flat-shaded grey rubble triangles, walls, red victim markers. Each frame samples it
# nearest-neighbour (as the game samples its canvas) through a camera that holds still, turns,
# drives (zooms) and looks around; a few objects move across the view on their own. Frames where
# the camera holds still repeat the previous frame exactly, as the real timer often does.
# Calibrated so that zstd level 1 over 64-frame chunks compresses like the real variant fixture
# (~62x; see benchmarks/run.py, which prints both).
_PANO_H = 192
_PANO_W = 1024
_HORIZON = 96  # panorama row of the horizon
_N_OBJECTS = 3
_OBJ_BOX = 10  # half-size of a moving object's bounding box, pixels

_U8Image = npt.NDArray[np.uint8]
_Floats = npt.NDArray[np.float64]


def _fill_triangle(img: _U8Image, pts: npt.ArrayLike, colour: npt.ArrayLike) -> None:
    """Fill one triangle (pixel centres inside, either winding) of ``img`` in place."""
    (x0, y0), (x1, y1), (x2, y2) = np.asarray(pts, dtype=np.float64).tolist()
    xa, xb = max(int(min(x0, x1, x2)), 0), min(int(max(x0, x1, x2)) + 1, img.shape[1])
    ya, yb = max(int(min(y0, y1, y2)), 0), min(int(max(y0, y1, y2)) + 1, img.shape[0])
    if xa >= xb or ya >= yb:
        return
    ys, xs = np.mgrid[ya:yb, xa:xb] + 0.5
    e0 = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
    e1 = (x2 - x1) * (ys - y1) - (y2 - y1) * (xs - x1)
    e2 = (x0 - x2) * (ys - y2) - (y0 - y2) * (xs - x2)
    inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    img[ya:yb, xa:xb][inside] = colour


def _fill_ellipse(
    img: _U8Image, cx: float, cy: float, rx: float, ry: float, colour: npt.ArrayLike
) -> None:
    """Fill one axis-aligned ellipse of ``img`` in place."""
    xa, xb = max(int(cx - rx), 0), min(int(cx + rx) + 1, img.shape[1])
    ya, yb = max(int(cy - ry), 0), min(int(cy + ry) + 1, img.shape[0])
    if xa >= xb or ya >= yb:  # entirely outside the picture
        return
    ys, xs = np.mgrid[ya:yb, xa:xb]
    img[ya:yb, xa:xb][((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1] = colour


def _panorama(rng: np.random.Generator) -> _U8Image:
    """The scene around the robot, top-down rows: sky, fogged ground, patches, rubble, walls."""
    img = np.empty((_PANO_H, _PANO_W, 3), np.uint8)
    img[:_HORIZON] = rng.integers(60, 200, 3)
    ground = rng.integers(70, 170, 3)
    for k, y in enumerate(range(_HORIZON, _PANO_H, 12)):  # darker towards the horizon
        img[y : y + 12] = np.clip(ground - 4 * (8 - k), 0, 255)
    for _ in range(14):  # grass, water, scorched earth
        _fill_ellipse(
            img,
            rng.uniform(0, _PANO_W),
            rng.uniform(_HORIZON + 4, _PANO_H),
            rng.uniform(20, 90),
            rng.uniform(4, 30),
            rng.integers(40, 220, 3),
        )
    n_clusters = 24
    for c in range(n_clusters):  # rubble: flat-shaded triangles in shades of grey
        cx = (c + rng.uniform(0, 0.8)) * _PANO_W / n_clusters
        cy, size = rng.uniform(_HORIZON - 10, _HORIZON + 40), rng.uniform(10, 36)
        base = int(rng.integers(60, 110))
        for _ in range(int(rng.integers(10, 26))):
            tri = np.array([cx, cy]) + rng.normal(0, size / 2.5, (3, 2)) * (1, 0.6)
            shade = np.clip(base + int(rng.integers(-25, 25)) + np.array([0, 4, 10]), 0, 255)
            _fill_triangle(img, tri, shade)
        if rng.random() < 0.5:  # a victim
            _fill_ellipse(img, cx + rng.uniform(0, size), cy - 2, 2.5, 3.5, (220, 40, 50))
    for _ in range(6):  # walls and pillars, two shaded faces each
        x, w, h = rng.uniform(0, _PANO_W - 40), rng.uniform(6, 40), rng.uniform(10, 80)
        shade, y1 = int(rng.integers(70, 130)), _HORIZON + rng.uniform(0, 20)
        _fill_triangle(
            img, [(x, y1), (x + w, y1), (x + w * 0.9, y1 - h)], (shade, shade + 5, shade + 12)
        )
        _fill_triangle(
            img,
            [(x, y1), (x + w * 0.9, y1 - h), (x + w * 0.1, y1 - h * 0.9)],
            (shade - 15, shade - 10, shade),
        )
    return img


def _trajectory(n: int, rng: np.random.Generator) -> tuple[_Floats, _Floats, _Floats, _Floats]:
    """Camera path, one value a frame: yaw (panorama column), pitch (rows), zoom, and a render
    tick that advances only on frames rendered anew. Segments of holding still, turning,
    driving and looking around; pitch and zoom drift back to level, so a long session looks
    like a short one. Frame i depends on the seed and i only, not on n."""
    out = np.empty((4, n))
    yaw, pitch, zoom, tick = rng.uniform(0, _PANO_W), 0.0, 1.0, 0.0
    i = 0
    while i < n:
        kind = int(rng.choice(4, p=[0.3, 0.25, 0.3, 0.15]))  # still, turn, drive, look around
        length = int(rng.integers(2, 20)) if kind == 0 else int(rng.integers(4, 40))
        dyaw = (0.0, rng.normal(0, 6), rng.normal(0, 1.5), rng.normal(0, 14))[kind]
        dzoom = rng.normal(0, 0.03) if kind == 2 else 0.0
        dpitch = (0.0, rng.normal(0, 0.5), 0.0, rng.normal(0, 1.5))[kind]
        for _ in range(min(length, n - i)):
            if kind:
                yaw = (yaw + dyaw) % _PANO_W
                pitch = min(max(pitch + dpitch - 0.08 * pitch, -25.0), 25.0)
                zoom = min(max(zoom + dzoom - 0.08 * (zoom - 1), 0.75), 1.6)
                tick += 1
            out[:, i] = yaw, pitch, zoom, tick
            i += 1
    return out[0], out[1], out[2], out[3]


_Object = tuple[float, float, float, float, _U8Image, npt.NDArray[np.bool_]]


def _objects(rng: np.random.Generator) -> list[_Object]:
    """Moving objects: start x, y, velocity x, y (pixels a tick), colour, shape mask."""
    objs: list[_Object] = []
    d = np.arange(-_OBJ_BOX, _OBJ_BOX + 1)
    for _ in range(_N_OBJECTS):
        x, y = rng.uniform(0, 128), rng.uniform(20, 100)
        vx, vy, r = rng.normal(0, 1.5), rng.normal(0, 0.7), rng.uniform(3, 9)
        colour = rng.integers(30, 250, 3).astype(np.uint8)
        mask = np.abs(d)[None, :] + np.abs(d)[:, None] * 0.7 < r
        objs.append((x, y, vx, vy, colour, mask))
    return objs


def iter_game_frames(
    n: int, seed: int, blank: bool = False, chunk: int = 256
) -> Iterator[npt.NDArray[np.uint8]]:
    """``n`` game-like frames (bottom row first, as readPixels stores them) in chunks of
    ``chunk``; all zeros when ``blank``. Deterministic in ``seed``; frame i does not depend on
    ``n`` or ``chunk``. Vectorised: several thousand frames a second."""
    rng = np.random.default_rng(seed)
    rgba = np.zeros((_PANO_H, _PANO_W, 4), np.uint8)
    rgba[..., :3] = _panorama(rng)
    pano = rgba.view(np.uint32)[..., 0]  # gather 4-byte pixels: much faster than 3-byte ones
    yaw, pitch, zoom, tick = _trajectory(n, np.random.default_rng([seed, 1]))
    objects = _objects(np.random.default_rng([seed, 2]))
    grid = np.arange(128) - 64.0
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        if blank:
            yield np.zeros((m, *FRAME_SHAPE), dtype=np.uint8)
            continue
        s = slice(start, start + m)
        rows = (_HORIZON - 10 + pitch[s, None] + grid / zoom[s, None]).astype(np.intp)
        rows = np.clip(rows, 0, _PANO_H - 1)[:, ::-1]  # bottom row first
        cols = (yaw[s, None] + grid * 1.4 / zoom[s, None]).astype(np.intp) % _PANO_W
        out = pano[rows[:, :, None], cols[:, None, :]].view(np.uint8)
        out = np.ascontiguousarray(out.reshape(m, 128, 128, 4)[..., :3])
        for x0, y0, vx, vy, colour, mask in objects:
            xs = ((x0 + vx * tick[s]) % 160 - 16).astype(np.intp)
            ys = ((y0 + vy * tick[s]) % 128).astype(np.intp)
            for j in range(m):
                _stamp(out[j], int(xs[j]), int(ys[j]), mask, colour)
        yield out


def _stamp(frame: _U8Image, x: int, y: int, mask: npt.NDArray[np.bool_], colour: _U8Image) -> None:
    """Paint ``mask`` (centred on x, y, clipped to the frame) in ``colour``."""
    b = _OBJ_BOX
    xa, ya, xb, yb = max(x - b, 0), max(y - b, 0), min(x + b + 1, 128), min(y + b + 1, 128)
    if xa < xb and ya < yb:
        frame[ya:yb, xa:xb][mask[ya - y + b : yb - y + b, xa - x + b : xb - x + b]] = colour


def _vec(rng: random.Random, scale: float = 5.0, int_zero: bool = False) -> dict[str, Any]:
    return {k: (0 if int_zero else _js_num(rng.uniform(-scale, scale))) for k in "xyz"}


def _sensors(rng: random.Random, zone: str) -> dict[str, Any]:
    victims = [
        {
            "distance": rng.uniform(1, 30),
            "angle": rng.uniform(-3.14, 3.14),
            "health": rng.uniform(50, 100),
        }
        for _ in range(rng.randrange(3))
    ]
    return {
        "proximity": _js_num(rng.choice([10, rng.uniform(0.5, 10)])),
        "proximitySensors": {
            k: _js_num(rng.choice([10, rng.uniform(0.5, 10)]))
            for k in ("forward", "left", "right", "back")
        },
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
        "key_presses": {
            **keys,
            "Space": False,
            "E": inspect,
            "R": False,
            "mouse_dx": 0,
            "mouse_dy": 0,
            "inspect": inspect,
            "destroy": False,
        },
        "robot": {
            "position": _vec(rng),
            "rotation": {"x": 0, "y": _js_num(rng.uniform(-7, 7)), "z": 0},
            "velocity": _vec(rng, 3),
            "isJumping": rng.random() < 0.05,
        },
        "accelerometer": {
            "x": _js_num(rng.uniform(-1, 1)),
            "y": 0,
            "z": _js_num(rng.uniform(-1, 1)),
        },
        "battery": _js_num(state["battery"]),
        "damage": _js_num(state["damage"]),
        "health": _js_num(state["health"]),
        "fuel": _js_num(state["fuel"]),
        "zone": state["zone"],
        "camera": {
            "position": _vec(rng),
            "rotation": _vec(rng, 1),
            "yaw": _js_num(rng.uniform(-7, 7)),
            "pitch": _js_num(rng.uniform(-1, 1)),
        },
        "sensors": _sensors(rng, state["zone"]),
    }


_EVENTS = ("collision_damage", "zone_change", "inspect", "destroy_rubble")
_ACTIONS = (
    "move_forward_start",
    "move_forward_stop",
    "jump",
    "inspect_start",
    "inspect_end",
    "destroy_rubble",
    "refuel",
)


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
        "robot": {
            "position": _vec(rng),
            "rotation": {"x": 0, "y": _js_num(rng.uniform(-7, 7)), "z": 0},
        },
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
    state: dict[str, Any] = {
        "battery": 100,
        "damage": 0,
        "health": 100,
        "fuel": 100,
        "zone": "safe",
    }
    rows: list[dict[str, Any]] = []
    start_ms = 49
    # The exporter's quirk: an inner zone_change is logged before the outer game_start.
    rows.append(_state_row(rng, start_ms + 10, "zone_change", {**state, "zone": "yellow"}))
    rows.append(_state_row(rng, start_ms, "game_start", state))
    prev = start_ms
    for i, t in enumerate(timestamps.tolist()):
        t_ms = int(t)
        n_extra = int(rng.random() < spec.events_per_frame) + int(
            rng.random() < spec.events_per_frame / 2
        )
        for _ in range(n_extra):
            te = rng.randint(prev, max(prev, t_ms - 1))
            rows.append(
                _action_row(rng, te, state) if rng.random() < 0.6 else _event_row(rng, te, state)
            )
        state["battery"] = max(0.0, state["battery"] - rng.uniform(0, 0.05))
        state["fuel"] = max(0.0, state["fuel"] - rng.uniform(0, 0.05))
        state["health"] = max(0.0, state["health"] - rng.choice([0, 0, 0, 0.5]))
        state["damage"] = min(1.0, state["damage"] + rng.choice([0, 0, 0.001]))
        row = _state_row(rng, t_ms + rng.choice([0, 0, 0, 1]), "periodic_update_10hz", state)
        row["visual_frame_path"] = f"frames/frame_{i:06d}.npy"
        rows.append(row)
        prev = t_ms
    end = _state_row(rng, prev + 100, "game_end", state)
    end["finalStats"] = {
        "timeElapsed": (prev + 100) // 1000,
        "victimsSaved": 0,
        "victimsTotal": 7,
        "robotHealth": 0,
        "robotFuel": state["fuel"],
        "finalScore": 600,
    }
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
        "game_result": {
            "victims_total": 7,
            "victims_saved": 0,
            "victims_died": 0,
            "final_score": 600,
            "final_health": 0,
            "final_fuel": 80.5,
            "completion_status": "failed",
        },
        "data_stats": {
            "total_samples": len(rows),
            "total_frames": spec.n_frames,
            "actions_logged": sum(r["type"] == "player_action" for r in rows),
        },
    }
    (folder / f"{p}_metadata.json").write_text(json.dumps(meta, indent=2), encoding="ascii")
    (folder / f"{p}_README.md").write_text(
        f"# ReActure Dataset - {meta['session_id']}\n", encoding="utf-8"
    )
    return folder


def write_legacy_bundle(source: str | Path, dest: str | Path) -> Path:
    """Rewrite the five-file bundle in folder ``source`` as the game's earlier four-file export
    in folder ``dest``: metadata, rows and README copied byte for byte, frames and timestamps
    as ``<prefix>_frames.json`` (a JSON list of base64 frames). Streams frame by frame."""
    import base64
    import shutil

    source, dest = Path(source), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (meta,) = source.glob("*_metadata.json")
    prefix = meta.name[: -len("_metadata.json")]
    for role in ("metadata.json", "data.jsonl", "README.md"):
        shutil.copyfile(source / f"{prefix}_{role}", dest / f"{prefix}_{role}")
    n = ((source / f"{prefix}_frames.npy").stat().st_size - 129) // FRAME_BYTES
    ts = np.fromfile(source / f"{prefix}_timestamps.npy", dtype="<f4", offset=129)
    frames = np.memmap(
        source / f"{prefix}_frames.npy",
        dtype=np.uint8,
        mode="r",
        offset=129,
        shape=(n, *FRAME_SHAPE),
    )
    with open(dest / f"{prefix}_frames.json", "w", encoding="ascii") as f:
        f.write("[")
        for i in range(n):
            obj = {
                "path": f"frames/frame_{i:06d}.npy",
                "timestamp_ms": _js_num(float(ts[i])),
                "width": 128,
                "height": 128,
                "shape": [128, 128, 3],
                "dtype": "uint8",
                "data_base64": base64.b64encode(frames[i].tobytes()).decode("ascii"),
            }
            f.write(("," if i else "") + json.dumps(obj, separators=(",", ":")))
        f.write("]")
    return dest
