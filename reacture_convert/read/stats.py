"""Dataset statistics: the numbers people normalise with (``reacture-convert stats OUT``).

``compute_stats(OUT)`` reads every converted session once:

- ``fields``: for every numeric leaf of the rows schema (``battery``, ``robot.position.x``,
  ``sensors.proximitySensors.left``, ``sensors.victims[].distance`` -- list elements pooled --,
  ...), over the **periodic rows** (one per frame): count of non-null values, mean, std
  (population, ddof 0), min and max. Fields that no periodic row holds are left out.
- ``key_presses``: the fraction of periodic rows with each ``key_presses`` flag true (as the game
  logged them: ``Space``, ``R`` and ``destroy`` are always false there); ``flags``: the same for
  the other boolean fields (``robot.isJumping``, ``sensors.inRedZone``, ...).
- ``keys`` and ``actions``: the fraction of frames whose training label is on, as the PyTorch
  readers give them (``dataset.FrameLabels``): the 6 ``keys`` (destroy from the frame's
  interval) and the momentary actions per frame interval.
- ``frames``: per-channel (R, G, B) mean and std of all pixels of all frames, on the [0, 1] scale
  of float frames (value / 255), read chunk by chunk from Zarr (memory: one chunk plus 3 x 256
  counters), plus the number of blank (all-zero) frames and the same statistics over the
  non-blank frames only (blank frames are included in the main numbers, as asked, but they
  drag the mean towards 0: the real exporter's frames are often all black).

Everything is computed with pyarrow.compute and numpy, never row by row in Python. Per-session
partial results merge exactly (Chan's parallel formulas for moments, pixel histograms for
frames), so the numbers do not depend on how the data is split into sessions.

``write_stats(OUT, stats)`` writes ``OUT/stats.json`` (atomically; no clock time, so the same
dataset gives the same bytes); ``format_stats`` renders the table the CLI prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from reacture_convert.errors import OutputError
from reacture_convert.output.layout import STATS
from reacture_convert.read.dataset import OutLike, SessionData, as_output, open_dataset
from reacture_convert.read.labels import KEYS, MOMENTARY_ACTIONS

__all__ = [
    "STATS",
    "FieldStats",
    "Frequency",
    "FrameStats",
    "Stats",
    "compute_stats",
    "format_stats",
    "read_stats",
    "write_stats",
]

FORMAT: Final = "reacture-stats"
VERSION: Final = 1
CHANNELS: Final = ("R", "G", "B")
# Leading columns that are bookkeeping, not measurements.
_SKIP: Final = frozenset({"session", "row_index", "frame_index", "extra"})
_KEY_PRESSES: Final = "key_presses"
_PIXELS_PER_FRAME: Final = 128 * 128

Path = tuple[str, ...]  # column path; "[]" steps into list elements


# --- values ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldStats:
    """Moments of one numeric field. Stats are None when ``count`` is 0."""

    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
        }


@dataclass(frozen=True)
class Frequency:
    """``count`` of ``total`` (rows or frames) had it; ``fraction`` = count / total."""

    count: int
    total: int

    @property
    def fraction(self) -> float:
        return self.count / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "fraction": self.fraction}


@dataclass(frozen=True)
class FrameStats:
    """Per-channel (R, G, B) pixel statistics on the [0, 1] scale (uint8 value / 255)."""

    n_frames: int
    blank_frames: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean_nonblank: tuple[float, ...] | None
    std_nonblank: tuple[float, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_frames": self.n_frames,
            "blank_frames": self.blank_frames,
            "channels": list(CHANNELS),
            "scale": "0-1 (uint8 value / 255)",
            "mean": list(self.mean),
            "std": list(self.std),
            "mean_nonblank": _list(self.mean_nonblank),
            "std_nonblank": _list(self.std_nonblank),
        }


def _list(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


@dataclass(frozen=True)
class Stats:
    """Statistics of a converted dataset (see the module docstring for each part)."""

    sessions: tuple[str, ...]
    periodic_rows: int
    fields: Mapping[str, FieldStats] = field(default_factory=dict)
    key_presses: Mapping[str, Frequency] = field(default_factory=dict)
    flags: Mapping[str, Frequency] = field(default_factory=dict)
    keys: Mapping[str, Frequency] = field(default_factory=dict)
    actions: Mapping[str, Frequency] = field(default_factory=dict)
    frames: FrameStats | None = None

    def to_dict(self) -> dict[str, Any]:
        def freq(m: Mapping[str, Frequency]) -> dict[str, Any]:
            return {k: v.to_dict() for k, v in m.items()}

        return {
            "format": FORMAT,
            "version": VERSION,
            "sessions": list(self.sessions),
            "periodic_rows": self.periodic_rows,
            "fields": {k: v.to_dict() for k, v in self.fields.items()},
            "key_presses": freq(self.key_presses),
            "flags": freq(self.flags),
            "keys": freq(self.keys),
            "actions": freq(self.actions),
            "frames": None if self.frames is None else self.frames.to_dict(),
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode("ascii")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stats:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise OutputError(
                f"{STATS}: not a {FORMAT} version {VERSION} file; run "
                "`reacture-convert stats OUT` again"
            )

        def freq(m: Mapping[str, Any]) -> dict[str, Frequency]:
            return {k: Frequency(v["count"], v["total"]) for k, v in m.items()}

        fr = d.get("frames")
        frames = (
            None
            if fr is None
            else FrameStats(
                fr["n_frames"],
                fr["blank_frames"],
                tuple(fr["mean"]),
                tuple(fr["std"]),
                None if fr["mean_nonblank"] is None else tuple(fr["mean_nonblank"]),
                None if fr["std_nonblank"] is None else tuple(fr["std_nonblank"]),
            )
        )
        return cls(
            sessions=tuple(d["sessions"]),
            periodic_rows=d["periodic_rows"],
            fields={k: FieldStats(**v) for k, v in d["fields"].items()},
            key_presses=freq(d["key_presses"]),
            flags=freq(d["flags"]),
            keys=freq(d["keys"]),
            actions=freq(d["actions"]),
            frames=frames,
        )


# --- accumulators (mergeable across sessions) -----------------------------------------------------
@dataclass
class _Moments:
    """count, mean, M2 (sum of squared deviations), min, max; merged with Chan's formulas."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: npt.NDArray[np.float64]) -> None:
        n = int(x.size)
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))

    def result(self) -> FieldStats:
        if self.count == 0:
            return FieldStats(0, None, None, None, None)
        return FieldStats(self.count, self.mean, math.sqrt(self.m2 / self.count), self.lo, self.hi)


def _leaves(t: pa.DataType, path: Path) -> Iterator[tuple[Path, pa.DataType]]:
    """Every scalar leaf under a column type, with its path."""
    if pa.types.is_struct(t):
        for f in t:
            yield from _leaves(f.type, (*path, f.name))
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        yield from _leaves(t.value_type, (*path, "[]"))
    else:
        yield path, t


def _name(path: Path) -> str:
    return ".".join(path).replace(".[]", "[]")


def _column(table: pa.Table, path: Path) -> pa.ChunkedArray:
    col: Any = table[path[0]]
    for step in path[1:]:
        col = pc.list_flatten(col) if step == "[]" else pc.struct_field(col, step)
    result: pa.ChunkedArray = col
    return result


def _numeric(col: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    values = pc.drop_null(pc.cast(col, pa.float64()))
    return np.asarray(values.to_numpy(), dtype=np.float64)


@dataclass
class _Accumulator:
    """Everything ``compute_stats`` sums over sessions."""

    periodic_rows: int = 0
    frames: int = 0
    fields: dict[str, _Moments] = field(default_factory=dict)
    bools: dict[str, list[int]] = field(default_factory=dict)  # name -> [true, total]
    keys: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(len(KEYS), np.int64))
    actions: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(MOMENTARY_ACTIONS), np.int64)
    )
    labelled: int = 0
    histogram: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((3, 256), np.int64))
    blank: int = 0

    def add_rows(self, rows: pa.Table) -> None:
        periodic = rows.filter(pc.equal(rows["kind"], "periodic"))
        n = periodic.num_rows
        self.periodic_rows += n
        for f in periodic.schema:
            if f.name in _SKIP:
                continue
            for path, t in _leaves(f.type, (f.name,)):
                name = _name(path)
                if pa.types.is_boolean(t):
                    col = _column(periodic, path)
                    true = int(pc.sum(col).as_py() or 0)
                    counts = self.bools.setdefault(name, [0, 0])
                    counts[0] += true
                    counts[1] += len(col) - col.null_count
                elif pa.types.is_integer(t) or pa.types.is_floating(t):
                    self.fields.setdefault(name, _Moments()).add(_numeric(_column(periodic, path)))

    def add_labels(self, session: SessionData) -> None:
        labels = session.labels
        self.labelled += len(labels)
        self.keys += labels.keys.sum(axis=0)
        self.actions += labels.actions.sum(axis=0)

    def add_frames(self, session: SessionData) -> None:
        frames = session.frames
        step = int(frames.chunks[0])
        n = int(frames.shape[0])
        self.frames += n
        for start in range(0, n, step):
            block = np.asarray(frames[start : start + step], dtype=np.uint8)
            self.blank += int((~block.reshape(block.shape[0], -1).any(axis=1)).sum())
            for c in range(3):
                self.histogram[c] += np.bincount(block[..., c].ravel(), minlength=256)

    def frame_stats(self) -> FrameStats | None:
        if self.frames == 0:
            return None
        mean, std = _hist_moments(self.histogram)
        nonblank = self.histogram.copy()
        nonblank[:, 0] -= self.blank * _PIXELS_PER_FRAME
        m_nb, s_nb = _hist_moments(nonblank) if self.blank < self.frames else (None, None)
        return FrameStats(self.frames, self.blank, mean, std, m_nb, s_nb)


def _hist_moments(hist: npt.NDArray[np.int64]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (ddof 0) on the [0, 1] scale from exact (3, 256) counts."""
    values = np.arange(256, dtype=np.float64) / 255
    n = hist.sum(axis=1).astype(np.float64)
    mean = (hist * values).sum(axis=1) / n
    var = (hist * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    return tuple(float(m) for m in mean), tuple(float(math.sqrt(v)) for v in var)


# --- public API -----------------------------------------------------------------------------------
def compute_stats(
    out: OutLike,
    sessions: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    frames: bool = True,
) -> Stats:
    """Statistics over every converted session of ``out`` (or the named ``sessions``).

    One pass per session: its rows table, then its frames chunk by chunk (skipped with
    ``frames=False``). Memory holds one session's rows and one chunk of frames."""
    ds = open_dataset(out, storage_options)
    names = ds.sessions if sessions is None else tuple(sessions)
    if not names:
        shards = " (it has WebDataset shards only)" if ds.wds_index is not None else ""
        raise OutputError(
            f"{ds.out.url}: no converted session with Zarr and rows to compute statistics "
            f"over{shards}; convert with --format zarr first"
        )
    acc = _Accumulator()
    for name in names:
        session = SessionData(name, ds[name].entry, ds.out)  # fresh: dropped after the loop
        acc.add_rows(session.rows)
        acc.add_labels(session)
        if frames:
            acc.add_frames(session)

    def freq(counts: npt.NDArray[np.int64], labels: Sequence[str]) -> dict[str, Frequency]:
        return {k: Frequency(int(c), acc.labelled) for k, c in zip(labels, counts, strict=True)}

    prefix = _KEY_PRESSES + "."
    bools = {k: Frequency(t, n) for k, (t, n) in acc.bools.items() if n}
    return Stats(
        sessions=names,
        periodic_rows=acc.periodic_rows,
        fields={k: m.result() for k, m in acc.fields.items() if m.count},
        key_presses={k.removeprefix(prefix): v for k, v in bools.items() if k.startswith(prefix)},
        flags={k: v for k, v in bools.items() if not k.startswith(prefix)},
        keys=freq(acc.keys, KEYS),
        actions=freq(acc.actions, MOMENTARY_ACTIONS),
        frames=acc.frame_stats() if frames else None,
    )


def write_stats(
    out: OutLike, stats: Stats, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write ``OUT/stats.json`` atomically; returns its URL (or local path)."""
    output = as_output(out, storage_options)
    output.write_bytes_atomic(STATS, stats.to_json())
    return output.url_of(STATS)


def read_stats(out: OutLike, storage_options: Mapping[str, Any] | None = None) -> Stats | None:
    """``OUT/stats.json``, or None when there is none."""
    output = as_output(out, storage_options)
    if not output.exists(STATS):
        return None
    with output.fs.open(output.path(STATS), "rb") as f:
        return Stats.from_dict(json.loads(f.read()))


# --- text -----------------------------------------------------------------------------------------
def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _freq_line(title: str, m: Mapping[str, Frequency]) -> list[str]:
    if not m:
        return []
    cells = "  ".join(f"{k} {v.fraction:.3f}" for k, v in m.items())
    return [f"{title}: {cells}"]


def format_stats(stats: Stats) -> str:
    """A plain-text report: a table of the numeric fields, frequencies, frame channels."""
    fr = stats.frames
    head = f"{len(stats.sessions)} session(s), {stats.periodic_rows} periodic rows"
    if fr is not None:
        head += f", {fr.n_frames} frames ({fr.blank_frames} blank)"
    lines = [head, ""]
    width = max([len("field"), *(len(k) for k in stats.fields)])
    lines.append(
        f"{'field':<{width}}  {'count':>7}  {'mean':>12}  {'std':>12}  {'min':>12}  {'max':>12}"
    )
    for name, f in stats.fields.items():
        lines.append(
            f"{name:<{width}}  {f.count:>7}  {_g(f.mean):>12}  {_g(f.std):>12}  "
            f"{_g(f.min):>12}  {_g(f.max):>12}"
        )
    lines.append("")
    lines += _freq_line("key_presses (fraction of periodic rows)", stats.key_presses)
    lines += _freq_line("flags (fraction of periodic rows)", stats.flags)
    lines += _freq_line("keys (fraction of frames, as the readers label them)", stats.keys)
    lines += _freq_line("momentary actions (fraction of frame intervals)", stats.actions)
    if fr is not None:
        lines += ["", f"frames: per channel {'/'.join(CHANNELS)}, std ddof 0"]
        rows = [
            ("mean (0-1)", fr.mean),
            ("std (0-1)", fr.std),
            ("mean (0-255)", tuple(v * 255 for v in fr.mean)),
            ("std (0-255)", tuple(v * 255 for v in fr.std)),
        ]
        if fr.mean_nonblank is not None and fr.std_nonblank is not None:
            rows += [
                ("non-blank mean (0-1)", fr.mean_nonblank),
                ("non-blank std (0-1)", fr.std_nonblank),
            ]
        for title, values in rows:
            lines.append(f"  {title:<22}" + "".join(f"{v:>12.6f}" for v in values))
    return "\n".join(lines) + "\n"
