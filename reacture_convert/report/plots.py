"""The pictures of a session page, as PNG files: frame thumbnails (right way up, enlarged with
nearest neighbour), the timeline and the frame-cadence histogram (matplotlib on its Agg canvas:
no pyplot, no global backend state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.report.data import NOTED_ERRORS, Session
from reacture_convert.report.timeline import GAP_FACTOR, KEYS, Marker, Timeline, gaps

__all__ = [
    "CADENCE_SIZE",
    "N_THUMBS",
    "THUMB_SCALE",
    "THUMB_SIZE",
    "TIMELINE_SIZE",
    "Thumbnail",
    "write_cadence",
    "write_thumbnails",
    "write_timeline",
]

N_THUMBS: Final = 12  # frames shown per session, at regular intervals
THUMB_SCALE: Final = 2
THUMB_SIZE: Final = (128 * THUMB_SCALE, 128 * THUMB_SCALE)  # px (width, height)
TIMELINE_SIZE: Final = (1200, 1000)  # px
CADENCE_SIZE: Final = (560, 300)  # px

_DPI: Final = 100
_MAX_MARKER_ROWS: Final = 18  # categories on the marker panel; the rest share "other"


# --- thumbnails --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thumbnail:
    path: Path
    index: int  # frame index
    blank: bool  # all zeros


def write_thumbnails(session: Session, folder: Path, notes: list[str]) -> list[Thumbnail]:
    """Up to N_THUMBS frames at regular intervals as ``folder/frame_<index>.png``; when the
    frames cannot be read, says why in ``notes`` and writes none."""
    if session.read_frames is None or not session.n_stored:
        return []
    indices = _sample_indices(session.n_stored)
    try:
        frames = session.read_frames(indices)
    except NOTED_ERRORS as e:
        notes.append(f"frames cannot be read ({type(e).__name__}: {e})")
        return []
    out = []
    for i, frame in zip(indices, frames, strict=True):
        path = folder / f"frame_{i:06d}.png"
        _write_thumbnail(frame, session.bottom_up, path)
        out.append(Thumbnail(path, i, not frame.any()))
    return out


def _sample_indices(n: int, k: int = N_THUMBS) -> list[int]:
    """``min(k, n)`` frame indices spread evenly from the first to the last frame."""
    if n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def _write_thumbnail(frame: npt.NDArray[np.uint8], bottom_up: bool, path: Path) -> None:
    """One frame as a PNG: right way up, enlarged THUMB_SCALE x with nearest neighbour."""
    from PIL import Image

    picture = frame[::-1] if bottom_up else frame
    image = Image.fromarray(np.ascontiguousarray(picture))
    image.resize(THUMB_SIZE, Image.Resampling.NEAREST).save(path, format="PNG", optimize=True)


# --- figures -----------------------------------------------------------------------------------


def _figure(size: tuple[int, int]) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})


def _broken(
    t: npt.NDArray[np.float64], y: npt.NDArray[np.float64], spans: Sequence[tuple[float, float]]
) -> tuple[npt.NDArray[np.float64], ...]:
    """``t, y`` with a NaN inserted inside each gap, so lines do not bridge a pause."""
    if not spans or t.size == 0:
        return t, y
    cut = np.searchsorted(t, [b for _, b in spans])
    return np.insert(t, cut, np.nan), np.insert(y, cut, np.nan)


def _shade(
    ax: Any, spans: Sequence[tuple[float, float]], pauses: Sequence[tuple[float, float]]
) -> None:
    for a, b in spans:
        ax.axvspan(a, b, color="0.6", alpha=0.25, lw=0, zorder=0)
    for a, b in pauses:
        ax.axvspan(a, b, facecolor="none", edgecolor="tab:orange", hatch="//", lw=0, zorder=0)


def write_timeline(session: Session, path: Path) -> None:
    """Four panels on one time axis: state, speed, held keys, events and actions."""
    from matplotlib.patches import Patch

    tl = session.timeline
    if tl is None:
        raise ValueError("write_timeline needs a session with a timeline")
    frame_s = session.timestamps / 1000.0 if session.timestamps is not None else tl.t_s
    spans, _ = gaps(frame_s if frame_s.size > 1 else tl.t_s)
    fig = _figure(TIMELINE_SIZE)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.6, 3.4]})
    fig.subplots_adjust(left=0.17, right=0.93, top=0.955, bottom=0.06, hspace=0.12)
    state, speed_ax, keys_ax, mark_ax = axes
    # the game keeps battery equal to fuel: a wide pale line under a thin one shows both
    for name, colour, lw, ls in (
        ("battery", "#7fc97f", 4.0, "-"),
        ("health", "tab:red", 1.4, "-"),
        ("fuel", "tab:blue", 1.4, "-"),
    ):
        state.plot(*_broken(tl.t_s, tl.values[name], spans), color=colour, lw=lw, ls=ls, label=name)
    state.set_ylim(-5, 105)
    state.set_ylabel("battery / health / fuel")
    dmg = state.twinx()
    dmg.plot(
        *_broken(tl.t_s, tl.values["damage"], spans),
        color="tab:purple",
        lw=1.2,
        ls="--",
        label="damage (right axis)",
    )
    dmg.set_ylim(-0.05, 1.05)
    dmg.set_ylabel("damage (0-1)")
    handles = [*state.get_legend_handles_labels()[0], *dmg.get_legend_handles_labels()[0]]
    if spans:
        handles.append(
            Patch(color="0.6", alpha=0.4, label=f"gap > {GAP_FACTOR:g}x median frame interval")
        )
    if tl.pauses:
        handles.append(
            Patch(
                facecolor="none",
                edgecolor="tab:orange",
                hatch="//",
                label="paused (game_paused .. game_resumed)",
            )
        )
    fig.legend(handles=handles, loc="upper center", ncol=6, fontsize=8, frameon=False)
    speed_ax.plot(*_broken(tl.t_s, tl.values["speed"], spans), color="black", lw=1.2)
    speed_ax.set_ylabel("speed |velocity|")
    speed_ax.set_ylim(bottom=0)
    _plot_keys(keys_ax, tl)
    _plot_markers(mark_ax, tl)
    for ax in axes:
        _shade(ax, spans, tl.pauses)
        ax.grid(axis="x", color="0.9")
    mark_ax.set_xlabel("time since game start (s)")
    ends = [
        x
        for x in (
            tl.t_s.max() if tl.t_s.size else None,
            tl.end_s,
            frame_s.max() if frame_s.size else None,
            max((m.t_s for m in tl.markers), default=None),
        )
        if x is not None
    ]
    left = min(0.0, float(tl.t_s[0])) if tl.t_s.size else 0.0
    mark_ax.set_xlim(left, max([1.0, *ends]) * 1.01)
    if tl.n_periodic == 0:
        state.text(0.5, 0.5, "no periodic rows", transform=state.transAxes, ha="center")
    _save(fig, path)


def _plot_keys(ax: Any, tl: Timeline) -> None:
    """A raster: one line per key, a bar where the key was held at a periodic sample."""
    t = tl.t_s
    if t.size:
        step = np.diff(t, append=t[-1])
        median = float(np.median(step[:-1])) if t.size > 1 else 0.1
        width = np.minimum(np.where(step > 0, step, median), 2 * median)
    for row, key in enumerate(KEYS):
        if t.size:
            held = tl.keys[key]
            ax.broken_barh(
                list(zip(t[held], width[held], strict=True)),
                (row - 0.4, 0.8),
                color="tab:blue" if key != "inspect" else "tab:cyan",
            )
    ax.set_yticks(range(len(KEYS)), list(KEYS), fontsize=8)
    ax.set_ylim(len(KEYS) - 0.5, -0.5)
    ax.set_ylabel("keys held")


def _marker_rows(markers: Sequence[Marker]) -> list[tuple[str, str]]:
    """The (kind, name) categories of the marker panel, events first, in order of appearance."""
    seen: dict[tuple[str, str], None] = {}
    for kind in ("event", "action"):
        for m in markers:
            if m.kind == kind:
                seen.setdefault((kind, _category(m)), None)
    rows = list(seen)
    if len(rows) > _MAX_MARKER_ROWS:
        rows = [*rows[: _MAX_MARKER_ROWS - 1], ("other", "other")]
    return rows


def _category(m: Marker) -> str:
    """Movement key actions share one line (the key raster shows them in detail)."""
    if m.kind == "action" and m.name.startswith("move_"):
        return "move_* start/stop"
    return m.name


def _plot_markers(ax: Any, tl: Timeline) -> None:
    rows = _marker_rows(tl.markers)
    where = {r: i for i, r in enumerate(rows)}
    styles = {"event": ("tab:red", "o"), "action": ("tab:blue", "|"), "other": ("0.4", "x")}
    for kind in ("event", "action"):
        ms = [m for m in tl.markers if m.kind == kind]
        ys = [where.get((kind, _category(m)), where.get(("other", "other"), 0)) for m in ms]
        colour, marker = styles[kind]
        ax.scatter(
            [m.t_s for m in ms],
            ys,
            s=40 if marker == "|" else 18,
            c=colour,
            marker=marker,
            linewidths=1.5,
            zorder=3,
        )
    labels = [
        ("event: " if k == "event" else "action: " if k == "action" else "") + n for k, n in rows
    ]
    ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    ax.set_ylabel("events / actions")
    if not rows:
        ax.text(0.5, 0.5, "no event or action rows", transform=ax.transAxes, ha="center")


def write_cadence(session: Session, path: Path) -> None:
    """Histogram of the intervals between consecutive frames (ms, log scale)."""
    fig = _figure(CADENCE_SIZE)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.12, right=0.97, top=0.88, bottom=0.17)
    ts = session.timestamps
    diffs = np.diff(ts[np.isfinite(ts)]) if ts is not None else np.empty(0)
    diffs = diffs[diffs >= 0]
    if diffs.size == 0:
        ax.text(0.5, 0.5, "fewer than two frame times", transform=ax.transAxes, ha="center")
        ax.set_axis_off()
    else:
        shown = np.maximum(diffs, 1.0)
        lo, hi = float(shown.min()), float(shown.max())
        bins = np.geomspace(lo / 1.1, max(hi * 1.1, lo * 2), 40)
        ax.hist(shown, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_xscale("log")
        median = float(np.median(diffs))
        ax.axvline(median, color="black", lw=1.2, label=f"median {median:.0f} ms")
        rate = session.facts.metadata.get("sampling_rate_hz")
        if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
            ax.axvline(
                1000 / rate,
                color="tab:green",
                ls="--",
                lw=1.2,
                label=f"metadata {rate:g} Hz ({1000 / rate:.0f} ms)",
            )
        if median > 0:
            ax.axvline(
                GAP_FACTOR * median,
                color="0.4",
                ls=":",
                lw=1.2,
                label=f"gap threshold {GAP_FACTOR:g}x median",
            )
        ax.legend(fontsize=8, frameon=False)
        ax.set_xlabel("interval between consecutive frames (ms, log scale)")
        ax.set_ylabel("intervals")
    ax.set_title(f"frame cadence ({diffs.size} intervals)", fontsize=10)
    _save(fig, path)
