"""Checks across a bundle's files, over numpy arrays: timestamps, frame↔row alignment, row time
order, metadata's counts and session id.

Every function yields its findings in the order a row-by-row reading would give them (``validate``
keeps the first few of each code), and computes the common case with whole-array operations, so
a two-hour session is checked in milliseconds and holds a few integers per frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.bundle import BundleRef

__all__ = [
    "FrameRows",
    "Periodic",
    "check_alignment",
    "check_counts",
    "check_session_id",
    "check_timestamps",
    "first_out_of_order",
]


class FrameRows(Sequence[int]):
    """For each frame, the ``row_index`` of the periodic row that refers to it (-1: none).

    A read-only sequence of ints kept as one int64 array (``array``): 8 bytes a frame."""

    __slots__ = ("array",)

    def __init__(self, values: npt.ArrayLike = ()) -> None:
        array = np.array(values, dtype=np.int64).reshape(-1)
        array.flags.writeable = False
        self.array: npt.NDArray[np.int64] = array

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, i: int) -> int: ...

    @overload
    def __getitem__(self, i: slice) -> FrameRows: ...

    def __getitem__(self, i: int | slice) -> int | FrameRows:
        if isinstance(i, slice):
            return FrameRows(self.array[i])
        return int(self.array[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrameRows):
            return np.array_equal(self.array, other.array)
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FrameRows({self.array.tolist()!r})"


@dataclass(slots=True)
class Periodic:
    """The periodic rows of data.jsonl, in file order: their ``row_index``, line, frame number
    (-1: none usable) and ``timestamp_ms`` (valid where ``has_t``); appended block by block."""

    row_index: list[npt.NDArray[np.int64]] = field(default_factory=list)
    line: list[npt.NDArray[np.int64]] = field(default_factory=list)
    frame: list[npt.NDArray[np.int64]] = field(default_factory=list)
    t_ms: list[npt.NDArray[np.int64]] = field(default_factory=list)
    has_t: list[npt.NDArray[np.bool_]] = field(default_factory=list)

    def add(
        self,
        row_index: npt.NDArray[np.int64],
        line: npt.NDArray[np.int64],
        frame: npt.NDArray[np.int64],
        t_ms: npt.NDArray[np.int64],
        has_t: npt.NDArray[np.bool_],
    ) -> None:
        self.row_index.append(row_index)
        self.line.append(line)
        self.frame.append(frame)
        self.t_ms.append(t_ms)
        self.has_t.append(has_t)

    def arrays(
        self,
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.bool_],
    ]:
        """All blocks' arrays, each joined: row_index, line, frame, t_ms, has_t."""

        def joined(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        return (
            joined(self.row_index, np.int64),
            joined(self.line, np.int64),
            joined(self.frame, np.int64),
            joined(self.t_ms, np.int64),
            joined(self.has_t, np.bool_),
        )


# --- rows against frames ------------------------------------------------------------------------
def check_alignment(
    bundle: BundleRef,
    periodic: Periodic,
    n_frames: int,
    ts: npt.NDArray[np.float32] | None,
    tolerance_ms: float,
) -> tuple[FrameRows, list[Finding]]:
    """Each frame referenced exactly once, in order, and at the time of its row.

    Order is judged against the highest frame referenced so far, not the row's rank: a frame
    without a row is one FRAME_UNREFERENCED, not an order error for every row after it.
    Returns the frame→row map and the findings (rows' findings in file order, then the frames
    without a row)."""
    jfile = bundle.file_label("data.jsonl")
    row_index, line, frame, t_ms, has_t = periodic.arrays()
    used = frame >= 0  # (FRAME_REF_BAD was reported by the row parser)
    out_of_range = used & (frame >= n_frames)
    candidate = used & ~out_of_range
    first_row = np.full(n_frames, -1, dtype=np.int64)  # position of each frame's first reference
    at = np.flatnonzero(candidate)
    frames_at = frame[at]
    _, first = np.unique(frames_at, return_index=True)
    first_row[frames_at[first]] = at[first]
    duplicate = candidate.copy()
    duplicate[at[first]] = False
    accepted = candidate & ~duplicate
    # highest frame referenced before each accepted row, and the line that referred to it
    acc = np.flatnonzero(accepted)
    acc_frames = frame[acc]
    running = np.maximum.accumulate(acc_frames) if acc.size else acc_frames
    before = np.concatenate([[-1], running[:-1]])
    order = np.zeros(len(frame), dtype=bool)
    order[acc[acc_frames < before]] = True
    holder = np.maximum.accumulate(np.where(acc_frames >= before, np.arange(acc.size), 0))
    holder_before = np.concatenate([[0], holder[:-1]])
    mismatch = np.zeros(len(frame), dtype=bool)
    if ts is not None and acc.size:
        inside = acc[(acc_frames < ts.size) & has_t[acc]]
        t_frame = ts[frame[inside]].astype(np.float64)
        far = np.isfinite(t_frame) & (np.abs(t_frame - t_ms[inside]) > tolerance_ms)
        mismatch[inside[far]] = True
    frame_rows = np.full(n_frames, -1, dtype=np.int64)
    frame_rows[frame[acc]] = row_index[acc]

    findings: list[Finding] = []
    where = {int(a): k for k, a in enumerate(acc.tolist())}
    for i in np.flatnonzero(out_of_range | duplicate | order | mismatch).tolist():
        fi, ln = int(frame[i]), int(line[i])
        if out_of_range[i]:
            findings.append(
                finding(
                    "FRAME_REF_OUT_OF_RANGE",
                    jfile,
                    f"visual_frame_path names frame {fi} but frames.npy holds {n_frames} frames",
                    line=ln,
                    frame=fi,
                )
            )
            continue
        if duplicate[i]:
            findings.append(
                finding(
                    "FRAME_REF_DUPLICATE",
                    jfile,
                    f"frame {fi} is already referenced by line {int(line[first_row[fi]])}",
                    line=ln,
                    frame=fi,
                )
            )
            continue
        if order[i]:
            k = where[i]
            by = acc[holder_before[k]]
            findings.append(
                finding(
                    "FRAME_REF_ORDER",
                    jfile,
                    f"refers to frame {fi} after line {int(line[by])} referred to "
                    f"frame {int(frame[by])}: periodic rows must name frames in order",
                    line=ln,
                    frame=fi,
                )
            )
        if mismatch[i]:
            assert ts is not None  # invariant: mismatches need timestamps
            findings.append(
                finding(
                    "TS_ROW_MISMATCH",
                    jfile,
                    f"row timestamp_ms {int(t_ms[i])} vs timestamps[{fi}] = "
                    f"{float(ts[fi]):g} ms (tolerance {tolerance_ms:g} ms)",
                    line=ln,
                    frame=fi,
                )
            )
    return FrameRows(frame_rows), findings


def unreferenced_frames(bundle: BundleRef, frame_rows: FrameRows) -> Iterator[Finding]:
    """FRAME_UNREFERENCED for every frame no periodic row names."""
    ffile = bundle.file_label("frames.npy")
    for i in np.flatnonzero(frame_rows.array == -1).tolist():
        yield finding("FRAME_UNREFERENCED", ffile, f"no periodic row refers to frame {i}", frame=i)


def first_out_of_order(
    t_ms: npt.NDArray[np.int64],
    has_t: npt.NDArray[np.bool_],
    line: npt.NDArray[np.int64],
    last: int | None,
) -> tuple[int | None, int | None]:
    """(line of the first row whose clock is below an earlier row's, or None; the highest clock
    so far). ``last``: the highest clock of the rows before these."""
    values = t_ms[has_t]
    if values.size == 0:
        return None, last
    lines = line[has_t]
    highest = np.maximum.accumulate(values)
    before = np.concatenate([[values[0] if last is None else last], highest[:-1]])
    if last is not None:
        before = np.maximum(before, last)
    late = np.flatnonzero(values < before)
    top = int(highest[-1]) if last is None else max(int(highest[-1]), last)
    return (int(lines[late[0]]) if late.size else None), top


# --- timestamps.npy -------------------------------------------------------------------------------
def _median(values: npt.NDArray[np.float64]) -> float:
    """``np.median`` of a non-empty array, to the bit (without the import of numpy.ma that
    ``np.median`` makes on first use)."""
    ordered = np.sort(values)
    half = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[half])
    return float((ordered[half - 1] + ordered[half]) / 2)


def check_timestamps(
    bundle: BundleRef,
    ts: npt.NDArray[np.float32],
    metadata: Mapping[str, Any] | None,
    *,
    gap_factor: float,
    gap_min_ms: float,
    cadence_factor: float,
) -> Iterator[Finding]:
    file = bundle.file_label("timestamps.npy")
    values = ts.astype(np.float64)
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        yield finding(
            "TS_NOT_FINITE", file, f"timestamp {values[i]} is not a finite number", frame=i
        )
    finite = np.isfinite(values)
    if values.size and np.nanmax(np.where(finite, np.abs(values), 0)) >= 2**24:
        yield finding(
            "TS_FLOAT32_PRECISION",
            file,
            "timestamps reach 2^24 ms (~4.6 h): float32 no longer holds every whole ms",
        )
    diffs = np.diff(values)
    for i in np.flatnonzero(diffs < 0).tolist():
        yield finding(
            "TS_DECREASING",
            file,
            f"timestamp goes back from {values[i]:g} to {values[i + 1]:g} ms",
            frame=i + 1,
        )
    good = diffs[np.isfinite(diffs) & (diffs >= 0)]
    if good.size == 0:
        return
    median = _median(good)
    limit = max(gap_factor * median, gap_min_ms)
    for i in np.flatnonzero(np.isfinite(diffs) & (diffs > limit)).tolist():
        yield finding(
            "TS_GAP",
            file,
            f"{diffs[i]:.0f} ms between frames {i} and {i + 1} (median interval "
            f"{median:.0f} ms): a pause or a stall, kept as it is",
            frame=i + 1,
        )
    rate = (metadata or {}).get("sampling_rate_hz")
    if isinstance(rate, int | float) and rate > 0 and median > 0:
        measured = 1000.0 / median
        if not (rate / cadence_factor <= measured <= rate * cadence_factor):
            yield finding(
                "TS_CADENCE",
                file,
                f"median frame interval {median:.1f} ms ({measured:.1f} Hz) while "
                f"metadata says {rate:g} Hz: the browser timer ran slow",
            )


# --- metadata.json against the files -----------------------------------------------------------
_SID = re.compile(r"reacture_(\d+)(?:_([a-z0-9]+))?")


def check_session_id(bundle: BundleRef, metadata: Mapping[str, Any]) -> Iterator[Finding]:
    sid = metadata.get("session_id")
    file = bundle.file_label("metadata.json")
    if not isinstance(sid, str) or sid == bundle.prefix:
        return
    m_sid, m_pre = _SID.fullmatch(sid), _SID.fullmatch(bundle.prefix)
    if m_sid and m_pre and abs(int(m_sid.group(1)) - int(m_pre.group(1))) <= 60_000:
        yield finding(
            "META_SESSION_ID",
            file,
            f"session_id {sid!r} differs from the file prefix {bundle.prefix!r} as "
            "the exporter's always does; the session is named after the prefix, "
            "both are kept",
        )
    else:
        yield finding(
            "META_SESSION_ID_MISMATCH",
            file,
            f"session_id {sid!r} does not look like the session of prefix "
            f"{bundle.prefix!r}; check that these files belong together",
        )


def check_counts(
    bundle: BundleRef,
    metadata: Mapping[str, Any],
    n_rows: int,
    n_actions: int,
    n_unparsed: int,
    n_frames: int | None,
) -> Iterator[Finding]:
    """data_stats against the files. Rows that did not parse may have been actions: a shortfall
    of player_action rows they could explain is not reported twice."""
    stats = metadata.get("data_stats")
    if not isinstance(stats, Mapping):
        return
    file = bundle.file_label("metadata.json")
    for key, have, slack, what in (
        ("total_samples", n_rows, 0, "rows in data.jsonl"),
        ("total_frames", n_frames, 0, "frames in frames.npy"),
        ("actions_logged", n_actions, n_unparsed, "player_action rows"),
    ):
        want = stats.get(key)
        if (
            have is not None
            and isinstance(want, int | float)
            and not isinstance(want, bool)
            and not have <= want <= have + slack
        ):
            yield finding(
                "META_COUNT_MISMATCH",
                file,
                f"data_stats.{key} is {want} but the bundle holds {have} {what}; "
                "the bundle may be truncated or its files mixed up",
            )
