"""The training labels of a session's frames, computed once per session, vectorised.

``FrameLabels`` is the one definition of a frame's labels (used by the PyTorch readers and by
``stats``): the periodic row's keys and state, plus the momentary actions logged in the frame's
*interval*: the rows after the previous periodic row up to this one (the WebDataset sample's
``events``). Rows before the first periodic row belong to frame 0; rows after the last one
belong to no frame. ``FrameLabels.from_sample_json`` computes the same from a WebDataset
sample's ``.json`` member (``from_samples`` from several at once, parsed with
``decode_sample_json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from reacture_convert.errors import OutputError

__all__ = [
    "KEYS",
    "LABEL_COLUMNS",
    "MOMENTARY_ACTIONS",
    "FrameLabels",
    "SampleJson",
    "decode_sample_json",
]

KEYS: Final = ("W", "A", "S", "D", "inspect", "destroy")
"""The 6 entries of ``keys``, as ReActure's own loader ordered them."""

MOMENTARY_ACTIONS: Final = ("jump", "destroy", "refuel", "rescue")
"""Actions that exist only as rows between two frames (the periodic flags never show them)."""

# What marks a momentary action in a frame's interval: player_action ``action`` names and
# robot_state ``event`` names. A destroy logs both (event destroy_rubble + action destroy_rubble).
_MOMENTARY_MATCH: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "jump": (frozenset({"jump"}), frozenset()),
    "destroy": (frozenset({"destroy_rubble"}), frozenset({"destroy_rubble"})),
    "refuel": (frozenset({"refuel"}), frozenset()),
    "rescue": (frozenset({"rescue_victim"}), frozenset({"rescue"})),
}
_HELD_KEYS: Final = KEYS[:5]  # from the periodic row's key_presses
_VECTORS: Final = {
    "position": ("robot", "position"),
    "velocity": ("robot", "velocity"),
    "accelerometer": ("accelerometer",),
}
_SCALARS: Final = ("battery", "damage", "health")
LABEL_COLUMNS: Final = [
    "row_index",
    "kind",
    "type",
    "event",
    "action",
    "frame_index",
    "key_presses",
    "robot",
    "accelerometer",
    *_SCALARS,
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


# --- labels ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FrameLabels:
    """The labels of ``n`` frames of one session, row k for ``frame_index[k]``.

    ``keys`` (n, 6) bool: W, A, S, D, inspect from the periodic row's ``key_presses``, destroy
    from the interval's rows (the periodic ``destroy`` flag is always false). ``actions`` (n, 4)
    bool: ``MOMENTARY_ACTIONS`` seen in the interval. ``timestamp_ms`` is the frame's exact time
    from timestamps.npy (float64 holding the float32 value); ``battery``, ``damage``, ``health``
    (n,) and ``position``, ``velocity``, ``accelerometer`` (n, 3) come from the periodic row.
    """

    session: str
    frame_index: I64
    row_index: I64
    timestamp_ms: F64
    keys: Bools
    actions: Bools
    battery: F64
    damage: F64
    health: F64
    position: F64
    velocity: F64
    accelerometer: F64

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @classmethod
    def from_tables(cls, session: str, rows: pa.Table, timestamps: npt.NDArray[Any]) -> FrameLabels:
        """Labels of every frame that has a periodic row, from the rows table (vectorised)."""
        periodic = rows.filter(pc.equal(rows["kind"], "periodic"))
        order = np.argsort(_ints(periodic["frame_index"]), kind="stable")
        periodic = periodic.take(pa.array(order))
        frame_index = _ints(periodic["frame_index"])
        row_index = _ints(periodic["row_index"])
        if np.any(np.diff(row_index) <= 0):  # validation promises frames in row order
            raise OutputError(
                f"rows/{session}.parquet: periodic rows do not name frames in "
                "file order; convert the session again"
            )
        held = np.stack([_bools(periodic, ("key_presses", k)) for k in _HELD_KEYS], axis=1)
        actions = _interval_actions(rows, row_index)
        destroy = actions[:, MOMENTARY_ACTIONS.index("destroy")]
        ts = np.asarray(timestamps)[frame_index].astype(np.float64)
        return cls(
            session=session,
            frame_index=frame_index,
            row_index=row_index,
            timestamp_ms=ts,
            keys=np.concatenate([held, destroy[:, None]], axis=1),
            actions=actions,
            **{name: _floats(periodic, (name,)) for name in _SCALARS},
            **{
                name: np.stack([_floats(periodic, (*path, c)) for c in "xyz"], axis=1)
                for name, path in _VECTORS.items()
            },
        )

    @classmethod
    def from_sample_json(cls, meta: Mapping[str, Any]) -> FrameLabels:
        """The labels of one WebDataset sample (its ``.json`` member, parsed): the same values
        ``from_tables`` gives for that frame."""
        return cls.from_samples([_as_sample(meta)])

    @classmethod
    def from_samples(cls, samples: Sequence[SampleJson]) -> FrameLabels:
        """The labels of several WebDataset samples (``decode_sample_json`` of their ``.json``
        members), one row each, in the order given (``session`` is the first one's)."""
        rows = [s.row for s in samples]
        keys = [r.key_presses or _NO_KEYS for r in rows]
        actions = np.array(
            [[any(_momentary(e, n) for e in s.events) for n in MOMENTARY_ACTIONS] for s in samples],
            dtype=bool,
        ).reshape(len(samples), len(MOMENTARY_ACTIONS))
        held = np.array(
            [[bool(getattr(kp, k)) for k in _HELD_KEYS] for kp in keys], dtype=bool
        ).reshape(len(samples), len(_HELD_KEYS))
        destroy = actions[:, MOMENTARY_ACTIONS.index("destroy")]

        def vec(pick: Callable[[_Row], _Xyz | None]) -> F64:
            out = [_xyz(pick(r)) for r in rows]
            return np.array(out, dtype=np.float64).reshape(len(rows), 3)

        return cls(
            session=samples[0].session if samples else "",
            frame_index=np.array([int(s.frame_index) for s in samples], dtype=np.int64),
            row_index=np.array([int(s.row_index) for s in samples], dtype=np.int64),
            timestamp_ms=np.array([s.timestamp_ms for s in samples], dtype=np.float64),
            keys=np.concatenate([held, destroy[:, None]], axis=1),
            actions=actions,
            battery=np.array([_num(r.battery) for r in rows], dtype=np.float64),
            damage=np.array([_num(r.damage) for r in rows], dtype=np.float64),
            health=np.array([_num(r.health) for r in rows], dtype=np.float64),
            position=vec(lambda r: r.robot.position if r.robot else None),
            velocity=vec(lambda r: r.robot.velocity if r.robot else None),
            accelerometer=vec(lambda r: r.accelerometer),
        )


# --- the WebDataset sample's .json member ---------------------------------------------------------
# Only the fields the labels use; others are skipped unread. Absent and null fields are None
# (NaN or False in the labels, as a null column gives in ``from_tables``); numbers may be
# written as integers or floats.
class _Xyz(msgspec.Struct):
    x: float | None = None
    y: float | None = None
    z: float | None = None


class _Keys(msgspec.Struct):
    W: bool | None = None
    A: bool | None = None
    S: bool | None = None
    D: bool | None = None
    inspect: bool | None = None


class _Robot(msgspec.Struct):
    position: _Xyz | None = None
    velocity: _Xyz | None = None


class _Row(msgspec.Struct):
    key_presses: _Keys | None = None
    robot: _Robot | None = None
    accelerometer: _Xyz | None = None
    battery: float | None = None
    damage: float | None = None
    health: float | None = None


class _Event(msgspec.Struct):
    type: str | None = None
    action: str | None = None
    event: str | None = None


class SampleJson(msgspec.Struct):
    """What the labels need of a sample's ``.json`` member."""

    session: str
    frame_index: float
    timestamp_ms: float
    row_index: float
    row: _Row
    events: list[_Event] = msgspec.field(default_factory=list)


_NO_KEYS: Final = _Keys()
_DECODER: Final = msgspec.json.Decoder(SampleJson)


def decode_sample_json(data: bytes, where: str) -> SampleJson:
    """Parse a sample's ``.json`` member; ``where`` names it in the OutputError raised when it
    is not a ReActure sample."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError as e:
        raise OutputError(
            f"{where}: the .json member is not a ReActure sample ({e}); convert again "
            "(or check the shard against index.json: reacture-convert verify)"
        ) from None


def _as_sample(meta: Mapping[str, Any]) -> SampleJson:
    try:
        return msgspec.convert(meta, SampleJson)
    except msgspec.ValidationError as e:
        raise OutputError(f"not a ReActure sample's .json ({e})") from None


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _xyz(v: _Xyz | None) -> tuple[float, float, float]:
    if v is None:
        return (math.nan, math.nan, math.nan)
    return (_num(v.x), _num(v.y), _num(v.z))


def _momentary(row: _Event, name: str) -> bool:
    actions, events = _MOMENTARY_MATCH[name]
    if row.type == "player_action":
        return row.action in actions
    return row.event in events


def _interval_actions(rows: pa.Table, periodic_rows: I64) -> Bools:
    """(n, len(MOMENTARY_ACTIONS)): which momentary actions each frame's interval holds.

    A non-periodic row belongs to the first periodic row after it (``searchsorted``); rows
    after the last periodic row land in slot n and are dropped."""
    n = periodic_rows.shape[0]
    other = rows.filter(pc.not_equal(rows["kind"], "periodic"))
    slot = np.searchsorted(periodic_rows, _ints(other["row_index"]), side="left")
    is_action = _fill(pc.equal(other["type"], "player_action"))
    out = np.zeros((n, len(MOMENTARY_ACTIONS)), dtype=bool)
    for k, name in enumerate(MOMENTARY_ACTIONS):
        actions, events = _MOMENTARY_MATCH[name]
        hit = (is_action & _isin(other["action"], actions)) | (
            ~is_action & _isin(other["event"], events)
        )
        out[:, k] = np.bincount(slot[hit], minlength=n + 1)[:n] > 0
    return out


def _isin(col: pa.ChunkedArray, values: frozenset[str]) -> Bools:
    if not values:
        return np.zeros(len(col), dtype=bool)
    return _fill(pc.is_in(col, value_set=pa.array(sorted(values), pa.string())))


def _fill(col: pa.ChunkedArray | pa.Array) -> Bools:
    return np.asarray(pc.fill_null(col, False).to_numpy(zero_copy_only=False), dtype=bool)


def _leaf(table: pa.Table, path: Sequence[str]) -> pa.ChunkedArray:
    col = table[path[0]]
    return pc.struct_field(col, list(path[1:])) if len(path) > 1 else col


def _ints(col: pa.ChunkedArray) -> I64:
    return np.asarray(col.to_numpy(), dtype=np.int64)


def _floats(table: pa.Table, path: Sequence[str]) -> F64:
    """A float64 leaf; a null (absent) value becomes NaN."""
    col = pc.cast(_leaf(table, path), pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _bools(table: pa.Table, path: Sequence[str]) -> Bools:
    return _fill(_leaf(table, path))
