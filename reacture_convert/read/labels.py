"""The training labels of a session's frames, computed once per session, vectorised.

``FrameLabels`` is the one definition of a frame's labels (used by the PyTorch readers and by
``stats``): the periodic row's keys and state, plus the momentary actions logged in the frame's
*interval*: the rows after the previous periodic row up to this one (the WebDataset sample's
``events``). Rows before the first periodic row belong to frame 0; rows after the last one
belong to no frame. ``FrameLabels.from_sample_json`` computes the same from a WebDataset
sample's ``.json`` member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from reacture_convert.errors import OutputError

__all__ = ["KEYS", "LABEL_COLUMNS", "MOMENTARY_ACTIONS", "FrameLabels"]

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
        row, events = meta["row"], meta["events"]
        kp = row["key_presses"]
        actions = np.array(
            [[any(_momentary(e, name) for e in events) for name in MOMENTARY_ACTIONS]], dtype=bool
        )
        held = np.array([[bool(kp[k]) for k in _HELD_KEYS]], dtype=bool)
        destroy = actions[:, MOMENTARY_ACTIONS.index("destroy")]

        def vec(*path: str) -> F64:
            obj: Any = row
            for p in path:
                obj = obj[p]
            return np.array([[float(obj[c]) for c in "xyz"]], dtype=np.float64)

        return cls(
            session=str(meta["session"]),
            frame_index=np.array([meta["frame_index"]], dtype=np.int64),
            row_index=np.array([meta["row_index"]], dtype=np.int64),
            timestamp_ms=np.array([meta["timestamp_ms"]], dtype=np.float64),
            keys=np.concatenate([held, destroy[:, None]], axis=1),
            actions=actions,
            **{name: np.array([float(row[name])], dtype=np.float64) for name in _SCALARS},
            **{name: vec(*path) for name, path in _VECTORS.items()},
        )


def _momentary(row: Mapping[str, Any], name: str) -> bool:
    actions, events = _MOMENTARY_MATCH[name]
    if row.get("type") == "player_action":
        return row.get("action") in actions
    return row.get("event") in events


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
