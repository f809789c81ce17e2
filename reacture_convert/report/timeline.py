"""A session's rows as a timeline: the periodic samples as time series (battery, health, fuel,
damage, speed, held keys), event and action markers, pauses, and the gaps between frames.

Built from either source of rows without reading anything itself: the rows Parquet of a
converted session (``from_table``) or the parsed data.jsonl rows of a bundle (``from_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from reacture_convert.ingest.jsonl import ParsedRow

__all__ = [
    "GAP_FACTOR",
    "KEYS",
    "ROW_COLUMNS",
    "Marker",
    "Timeline",
    "from_rows",
    "from_table",
    "gaps",
    "num",
]

GAP_FACTOR: Final = 5.0  # a frame interval above GAP_FACTOR x the median is a gap (pause/stall)
KEYS: Final = ("W", "A", "S", "D", "inspect")
# Fields plotted, as paths into a row (JSON) or dotted column names (flattened Parquet).
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "battery": ("battery",),
    "health": ("health",),
    "fuel": ("fuel",),
    "damage": ("damage",),
    "vx": ("robot", "velocity", "x"),
    "vy": ("robot", "velocity", "y"),
    "vz": ("robot", "velocity", "z"),
    **{f"key_{k}": ("key_presses", k) for k in KEYS},
}
# The columns of rows/<session>.parquet that ``from_table`` needs.
ROW_COLUMNS: Final = (
    "kind",
    "event",
    "action",
    "timestamp_ms",
    "battery",
    "health",
    "fuel",
    "damage",
    "robot",
    "key_presses",
)


@dataclass(frozen=True, slots=True)
class Marker:
    t_s: float
    kind: str  # "event" | "action"
    name: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """The periodic rows as time series (sorted by time), and the event/action markers."""

    t_s: npt.NDArray[np.float64]
    values: Mapping[str, npt.NDArray[np.float64]]  # battery, health, fuel, damage, speed
    keys: Mapping[str, npt.NDArray[np.bool_]]
    markers: tuple[Marker, ...]
    pauses: tuple[tuple[float, float], ...]  # game_paused .. game_resumed, seconds
    n_periodic: int
    n_events: int
    n_actions: int
    end_s: float | None  # time of game_end


def num(value: Any) -> float:
    """A JSON number as float; NaN for anything else (null, bool, string, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    x = float(value)
    return x if math.isfinite(x) else math.nan


def from_rows(rows: Iterable[ParsedRow]) -> Timeline:
    """The timeline of parsed data.jsonl rows, in file order."""
    builder = _Builder()
    for row in rows:
        obj = row.obj
        builder.add(
            row.kind,
            row.timestamp_ms,
            obj.get("event"),
            obj.get("action"),
            {name: _dig(obj, path) for name, path in _FIELDS.items()},
        )
    return builder.result()


def from_table(table: pa.Table) -> Timeline:
    """The timeline of rows read from ``rows/<session>.parquet`` (``ROW_COLUMNS``)."""
    cols = _flat(table).to_pydict()
    n = table.num_rows
    builder = _Builder()
    fields = {name: cols.get(".".join(path), [None] * n) for name, path in _FIELDS.items()}
    for i in range(n):
        builder.add(
            cols["kind"][i],
            cols["timestamp_ms"][i],
            _get(cols, "event", i),
            _get(cols, "action", i),
            {name: values[i] for name, values in fields.items()},
        )
    return builder.result()


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _flat(table: pa.Table) -> pa.Table:
    """Flatten nested struct columns to dotted names (``robot.velocity.x``)."""
    while any(pa.types.is_struct(c.type) for c in table.columns):
        table = table.flatten()
    return table


def _get(cols: Mapping[str, list[Any]], name: str, i: int) -> Any:
    values = cols.get(name)
    return values[i] if values is not None else None


class _Builder:
    """Collects rows one at a time (file order) and sorts them by time at the end."""

    def __init__(self) -> None:
        self.periodic: list[tuple[float, Mapping[str, Any]]] = []
        self.markers: list[Marker] = []
        self.n_events = 0
        self.n_actions = 0

    def add(self, kind: Any, t_ms: Any, event: Any, action: Any, values: Mapping[str, Any]) -> None:
        t = num(t_ms)
        if kind == "periodic":
            if not math.isnan(t):
                self.periodic.append((t / 1000.0, values))
            return
        name = event if kind == "event" else action
        if kind == "event":
            self.n_events += 1
        elif kind == "action":
            self.n_actions += 1
        else:
            return
        if not math.isnan(t):
            self.markers.append(Marker(t / 1000.0, kind, str(name) if name is not None else "?"))

    def result(self) -> Timeline:
        rows = sorted(self.periodic, key=lambda r: r[0])
        t = np.array([r[0] for r in rows], dtype=np.float64)

        def col(name: str) -> npt.NDArray[np.float64]:
            return np.array([num(r[1].get(name)) for r in rows], dtype=np.float64)

        speed = np.sqrt(col("vx") ** 2 + col("vy") ** 2 + col("vz") ** 2)
        values = {k: col(k) for k in ("battery", "health", "fuel", "damage")} | {"speed": speed}
        keys = {
            k: np.array([r[1].get(f"key_{k}") is True for r in rows], dtype=np.bool_) for k in KEYS
        }
        markers = tuple(sorted(self.markers, key=lambda m: m.t_s))
        ends = [m.t_s for m in markers if m.kind == "event" and m.name == "game_end"]
        return Timeline(
            t,
            values,
            keys,
            markers,
            _pauses(markers),
            len(rows),
            self.n_events,
            self.n_actions,
            max(ends) if ends else None,
        )


def _pauses(markers: Sequence[Marker]) -> tuple[tuple[float, float], ...]:
    """``game_paused`` .. next ``game_resumed`` spans; an unmatched pause runs to the end."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for m in markers:
        if m.kind != "action":
            continue
        if m.name == "game_paused" and start is None:
            start = m.t_s
        elif m.name == "game_resumed" and start is not None:
            spans.append((start, m.t_s))
            start = None
    if start is not None:
        spans.append((start, max([start, *(m.t_s for m in markers)])))
    return tuple(spans)


def gaps(times_s: npt.NDArray[np.float64]) -> tuple[list[tuple[float, float]], float | None]:
    """Spans between consecutive times more than GAP_FACTOR x the median interval apart, and
    that median (None with fewer than two ordered times)."""
    finite = times_s[np.isfinite(times_s)]
    diffs = np.diff(finite)
    good = diffs[diffs >= 0]
    if good.size == 0:
        return [], None
    median = float(np.median(good))
    if median <= 0:
        return [], median
    idx = np.flatnonzero(diffs > GAP_FACTOR * median)
    return [(float(finite[i]), float(finite[i + 1])) for i in idx], median
