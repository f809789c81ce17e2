"""ingest.checks: the whole-array alignment check gives what a row-by-row reading gives."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.checks import (
    FrameRows,
    Periodic,
    check_alignment,
    first_out_of_order,
    unreferenced_frames,
)

BUNDLE = BundleRef(prefix="reacture_1", source="/x", files={})
TOLERANCE = 50.0


def reference(
    periodic: list[tuple[int, int, int | None, int | None]], n: int, ts: np.ndarray | None
) -> tuple[list[int], list[Finding]]:
    """The row-by-row check the vectorised one replaced (kept here as its specification)."""
    jfile, ffile = BUNDLE.file_label("data.jsonl"), BUNDLE.file_label("frames.npy")
    out: list[Finding] = []
    frame_rows = [-1] * n
    line_of = {ri: line for ri, line, _, _ in periodic}
    highest: tuple[int, int] | None = None
    for ri, line, fi, t in periodic:
        if fi is None:
            continue
        if fi >= n:
            msg = f"visual_frame_path names frame {fi} but frames.npy holds {n} frames"
            out.append(finding("FRAME_REF_OUT_OF_RANGE", jfile, msg, line=line, frame=fi))
            continue
        if frame_rows[fi] != -1:
            msg = f"frame {fi} is already referenced by line {line_of[frame_rows[fi]]}"
            out.append(finding("FRAME_REF_DUPLICATE", jfile, msg, line=line, frame=fi))
            continue
        if highest is not None and fi < highest[0]:
            msg = (
                f"refers to frame {fi} after line {highest[1]} referred to frame {highest[0]}: "
                "periodic rows must name frames in order"
            )
            out.append(finding("FRAME_REF_ORDER", jfile, msg, line=line, frame=fi))
        else:
            highest = (fi, line)
        frame_rows[fi] = ri
        if ts is not None and t is not None and fi < ts.size:
            t_frame = float(ts[fi])
            if math.isfinite(t_frame) and abs(t_frame - t) > TOLERANCE:
                msg = (
                    f"row timestamp_ms {t} vs timestamps[{fi}] = {t_frame:g} ms "
                    f"(tolerance {TOLERANCE:g} ms)"
                )
                out.append(finding("TS_ROW_MISMATCH", jfile, msg, line=line, frame=fi))
    for i in [i for i, r in enumerate(frame_rows) if r == -1]:
        out.append(
            finding("FRAME_UNREFERENCED", ffile, f"no periodic row refers to frame {i}", frame=i)
        )
    return frame_rows, out


@st.composite
def periodic_rows(draw: st.DrawFn) -> tuple[list[tuple[int, int, int | None, int | None]], int]:
    n = draw(st.integers(0, 12))
    frames = draw(st.lists(st.one_of(st.none(), st.integers(0, n + 3)), max_size=16))
    rows = []
    line = 0
    for k, fi in enumerate(frames):
        line += draw(st.integers(1, 3))
        t = draw(st.one_of(st.none(), st.integers(-10, 2000)))
        rows.append((k * 2 + draw(st.integers(0, 1)), line, fi, t))
    return rows, n


@settings(max_examples=300, deadline=None)
@given(periodic_rows(), st.booleans(), st.integers(1, 4))
def test_alignment_equals_the_row_by_row_check(
    case: tuple[list[tuple[int, int, int | None, int | None]], int], with_ts: bool, blocks: int
) -> None:
    rows, n = case
    ts = (np.arange(n, dtype="<f4") * 100 + 3) if with_ts else None
    if ts is not None and n > 2:
        ts[1] = np.nan
    periodic = Periodic()
    for part in np.array_split(np.arange(len(rows)), blocks):
        chosen = [rows[i] for i in part]
        periodic.add(
            np.array([r[0] for r in chosen], np.int64),
            np.array([r[1] for r in chosen], np.int64),
            np.array([-1 if r[2] is None else r[2] for r in chosen], np.int64),
            np.array([0 if r[3] is None else r[3] for r in chosen], np.int64),
            np.array([r[3] is not None for r in chosen], bool),
        )
    frame_rows, found = check_alignment(BUNDLE, periodic, n, ts, TOLERANCE)
    want_rows, want = reference(rows, n, ts)
    assert frame_rows == want_rows
    assert [*found, *unreferenced_frames(BUNDLE, frame_rows)] == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-5, 50)), max_size=20), st.integers(1, 4))
def test_first_out_of_order_equals_a_running_maximum(clocks: list[int | None], blocks: int) -> None:
    want = None
    last: int | None = None
    for line, t in enumerate(clocks, 1):
        if t is not None:
            if last is not None and t < last and want is None:
                want = line
            last = t if last is None else max(last, t)
    got = None
    carried: int | None = None
    for part in np.array_split(np.arange(len(clocks)), blocks):
        t_ms = np.array([clocks[i] or 0 for i in part], np.int64)
        has = np.array([clocks[i] is not None for i in part], bool)
        lines = part.astype(np.int64) + 1
        late, carried = first_out_of_order(t_ms, has, lines, carried)
        got = got if got is not None else late
    assert got == want


def test_frame_rows_is_a_read_only_sequence_of_ints() -> None:
    rows = FrameRows([3, -1, 7])
    assert rows == (3, -1, 7) and rows == [3, -1, 7] and rows == FrameRows([3, -1, 7])
    assert rows[0] == 3 and isinstance(rows[0], int) and rows[1:] == (-1, 7)
    assert list(rows) == [3, -1, 7] and len(rows) == 3 and rows and not FrameRows()
    assert not rows.array.flags.writeable
