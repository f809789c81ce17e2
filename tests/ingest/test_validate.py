"""validate_bundle: the real fixtures judged as their README says, and a table of broken bundles.

Broken bundles are synthetic bundles in the exporter's exact format (``make_bundle``) with one
thing changed in tmp_path. Each case names the exact finding it must produce (code, file, line
or frame) and whether the bundle stays valid; any other new code is a failure, so one defect
never hides behind (or drags in) unrelated findings.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.findings import CODES, Severity
from reacture_convert.ingest.bundle import ROLES, BundleRef
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.files import hash_files
from reacture_convert.ingest.validate import (
    Report,
    ValidationLimits,
    validate_bundle,
    validate_bundle_safely,
)
from reacture_convert.testing.synth import BundleSpec, game_npy_header, write_bundle
from tests.helpers.real import REAL

MakeBundle = Callable[..., Path]
PREFIX = BundleSpec().prefix
N = BundleSpec().n_frames
DATA_OFFSET = 129  # where the game's .npy data starts (docs/bundle-format.md)
FRAME_BYTES = 128 * 128 * 3


# --- helpers --------------------------------------------------------------------------------


def the_bundle(folder: Path) -> BundleRef:
    found = discover([str(folder)])
    assert len(found.bundles) == 1, found
    return found.bundles[0]


def validate_folder(folder: Path, **kwargs: Any) -> Report:
    return validate_bundle(the_bundle(folder), **kwargs)


def path(folder: Path, role: str, prefix: str = PREFIX) -> Path:
    return folder / f"{prefix}_{role}"


def read_rows(folder: Path) -> list[dict[str, Any]]:
    text = path(folder, "data.jsonl").read_text()
    return [json.loads(line) for line in text.split("\n")]


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    """As the exporter writes them: compact JSON, ``\\n`` between rows, no final newline."""
    text = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    path(folder, "data.jsonl").write_text(text)


def periodic_index(rows: list[dict[str, Any]], k: int) -> int:
    """0-based position in the file of the k-th periodic row (the one for frame k)."""
    return [i for i, r in enumerate(rows) if "visual_frame_path" in r][k]


def event_index(rows: list[dict[str, Any]], after: int = 5) -> int:
    """0-based position of the first robot_state event row (no frame) at or after ``after``."""
    return next(
        i
        for i, r in enumerate(rows)
        if i >= after and r["type"] == "robot_state" and "visual_frame_path" not in r
    )


def read_ts(folder: Path) -> np.ndarray:
    return np.frombuffer(path(folder, "timestamps.npy").read_bytes()[DATA_OFFSET:], "<f4").copy()


def write_npy(
    file: Path, descr: str, shape: tuple[int, ...], payload: bytes, fortran: bool = False
) -> None:
    header = game_npy_header(descr, shape)
    if fortran:
        header = header.replace(b"false", b"True ")  # same length: data stays at byte 129
    file.write_bytes(header + payload)


def write_ts(folder: Path, ts: np.ndarray, descr: str = "<f4") -> None:
    write_npy(path(folder, "timestamps.npy"), descr, ts.shape, ts.astype(descr).tobytes())


def edit_meta(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads(path(folder, "metadata.json").read_text())
    change(meta)
    path(folder, "metadata.json").write_text(json.dumps(meta, indent=2))


# --- the real fixtures ------------------------------------------------------------------------

# docs/bundle-format.md, "The recordings in tests/data": frames, rows, periodic, events, actions,
# all frames blank.
REAL_FACTS: dict[str, tuple[int, int, int, int, int, bool]] = {
    "reacture_1795637238001": (92, 173, 92, 113 - 92, 60, True),
    "reacture_1795637693305": (279, 416, 279, 310 - 279, 106, True),
    "reacture_1795637148842": (163, 331, 163, 201 - 163, 130, False),
}


@pytest.fixture
def real_report(real_bundle: Path) -> Report:
    return validate_folder(real_bundle)


def test_real_bundle_is_valid_with_the_readme_counts(real_report: Report) -> None:
    r = real_report
    frames, rows, periodic, events, actions, blank = REAL_FACTS[r.bundle.prefix]
    assert r.ok, [str(f) for f in r.findings if f.severity is Severity.ERROR]
    assert (r.n_frames, r.n_rows, r.n_periodic, r.n_events, r.n_actions) == (
        frames,
        rows,
        periodic,
        events,
        actions,
    )
    assert r.blank_frames == (frames if blank else 0)
    assert r.metadata is not None and r.metadata["data_stats"]["total_frames"] == frames


def test_real_bundle_blank_frames_are_flagged_only_when_all_black(real_report: Report) -> None:
    blank = REAL_FACTS[real_report.bundle.prefix][5]
    flagged = [f for f in real_report.findings if f.code == "FRAMES_BLANK"]
    if blank:
        assert len(flagged) == 1
        f = flagged[0]
        assert (f.severity, f.file) == (Severity.WARNING, f"{real_report.bundle.prefix}_frames.npy")
        assert f"all {real_report.n_frames} frames are blank" in f.message
    else:
        assert flagged == []


def test_real_bundle_known_quirks_are_reported(real_report: Report) -> None:
    prefix = real_report.bundle.prefix
    by_code = Counter(f.code for f in real_report.findings)
    assert by_code["META_SESSION_ID"] == 1
    assert {f.file for f in real_report.findings if f.code == "NPY_GAME_HEADER"} == {
        f"{prefix}_frames.npy",
        f"{prefix}_timestamps.npy",
    }
    cadence = [f for f in real_report.findings if f.code == "TS_CADENCE"]
    assert len(cadence) == 1 and cadence[0].severity is Severity.WARNING
    assert "10 Hz" in cadence[0].message
    assert any(f"({hz:.1f} Hz)" in cadence[0].message for hz in (3.8, 3.9, 4.0, 4.1, 4.2))


def test_real_bundle_gaps_are_long_intervals(real_bundle: Path, real_report: Report) -> None:
    prefix = real_report.bundle.prefix
    ts = read_ts_of(real_bundle, prefix)
    steps = np.diff(ts.astype(np.float64))
    gap_frames = {f.frame for f in real_report.findings if f.code == "TS_GAP"}
    assert all(f is not None and steps[f - 1] > 1000 for f in gap_frames)
    assert {i + 1 for i in np.flatnonzero(steps > 3000).tolist()} <= gap_frames


def read_ts_of(folder: Path, prefix: str) -> np.ndarray:
    raw = (folder / f"{prefix}_timestamps.npy").read_bytes()
    return np.frombuffer(raw[DATA_OFFSET:], "<f4")


def test_real_pause_is_a_gap_at_frame_123() -> None:
    r = validate_folder(REAL / "reacture_1795637693305")
    gaps = {f.frame: f for f in r.findings if f.code == "TS_GAP"}
    assert 123 in gaps
    g = gaps[123]
    assert (g.severity, g.file, g.line) == (
        Severity.WARNING,
        "reacture_1795637693305_timestamps.npy",
        None,
    )
    assert "4836 ms between frames 122 and 123" in g.message
    order = [f for f in r.findings if f.code == "ROWS_NOT_TIME_ORDERED"]
    assert [(f.severity, f.file, f.line) for f in order] == [
        (Severity.INFO, "reacture_1795637693305_data.jsonl", 2)
    ]


def test_real_frame_rows_are_the_positions_of_the_periodic_rows(
    real_bundle: Path, real_report: Report
) -> None:
    prefix = real_report.bundle.prefix
    lines = (real_bundle / f"{prefix}_data.jsonl").read_text().split("\n")
    periodic = [i for i, line in enumerate(lines) if "visual_frame_path" in json.loads(line)]
    assert real_report.frame_rows == tuple(periodic)
    assert len(periodic) == real_report.n_frames


# --- a table of broken bundles ------------------------------------------------------------------

# Findings every synthetic bundle has (the exporter's quirks and its ~4 Hz cadence).
BASELINE = frozenset({"META_SESSION_ID", "NPY_GAME_HEADER", "TS_CADENCE", "ROWS_NOT_TIME_ORDERED"})


@dataclass(frozen=True)
class Want:
    """One expected finding: code, the role of its file, its line (1-based), its frame."""

    code: str
    role: str
    line: int | None = None
    frame: int | None = None
    text: str = ""  # a part of the message, when the location alone is ambiguous


Mutate = Callable[[Path], list[Want]]


@dataclass(frozen=True)
class Case:
    mutate: Mutate
    ok: bool = False
    also: frozenset[str] = frozenset()  # further codes the defect rightly brings with it
    spec: dict[str, Any] = field(default_factory=dict)


def missing(role: str) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        path(folder, role).unlink()
        return [Want("BUNDLE_MISSING_FILE", role)]

    return mutate


def truncate_frames(folder: Path) -> list[Want]:
    p = path(folder, "frames.npy")
    p.write_bytes(p.read_bytes()[:-100])
    return [Want("NPY_TRUNCATED", "frames.npy")]


def trailing_bytes(role: str) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        with path(folder, role).open("ab") as f:
            f.write(b"\0" * 7)
        return [Want("NPY_TRAILING_BYTES", role)]

    return mutate


def frames_as_float32(folder: Path) -> list[Want]:
    write_npy(path(folder, "frames.npy"), "<f4", (N, 128, 128, 3), bytes(N * FRAME_BYTES * 4))
    return [Want("NPY_BAD_DTYPE", "frames.npy", text="'<f4'")]


def frames_64x64(folder: Path) -> list[Want]:
    write_npy(path(folder, "frames.npy"), "|u1", (N, 64, 64, 3), bytes(N * 64 * 64 * 3))
    return [Want("NPY_BAD_SHAPE", "frames.npy", text="(20, 64, 64, 3)")]


def frames_fortran(folder: Path) -> list[Want]:
    p = path(folder, "frames.npy")
    data = p.read_bytes()[DATA_OFFSET:]
    write_npy(p, "|u1", (N, 128, 128, 3), data, fortran=True)
    return [Want("NPY_FORTRAN_ORDER", "frames.npy")]


def timestamps_float64(folder: Path) -> list[Want]:
    write_ts(folder, read_ts(folder), descr="<f8")
    return [Want("NPY_BAD_DTYPE", "timestamps.npy", text="'<f8'")]


def one_timestamp_short(folder: Path) -> list[Want]:
    write_ts(folder, read_ts(folder)[:-1])
    return [Want("FRAME_COUNT_MISMATCH", "timestamps.npy", text=f"{N - 1} entries")]


def ref_out_of_range(folder: Path) -> list[Want]:
    rows = read_rows(folder)
    i = periodic_index(rows, N - 1)
    rows[i]["visual_frame_path"] = f"frames/frame_{N:06d}.npy"
    write_rows(folder, rows)
    return [
        Want("FRAME_REF_OUT_OF_RANGE", "data.jsonl", line=i + 1, frame=N),
        Want("FRAME_UNREFERENCED", "frames.npy", frame=N - 1),
    ]


def ref_duplicate(folder: Path) -> list[Want]:
    rows = read_rows(folder)
    i = periodic_index(rows, 5)
    rows[i]["visual_frame_path"] = "frames/frame_000004.npy"
    write_rows(folder, rows)
    return [
        Want(
            "FRAME_REF_DUPLICATE",
            "data.jsonl",
            line=i + 1,
            frame=4,
            text=f"line {periodic_index(rows, 4) + 1}",
        ),
        Want("FRAME_UNREFERENCED", "frames.npy", frame=5),
    ]


def refs_swapped(folder: Path) -> list[Want]:
    """Rows 3 and 4 name each other's frame (and carry its time, so only the order is wrong)."""
    rows = read_rows(folder)
    i, j = periodic_index(rows, 3), periodic_index(rows, 4)
    for key in ("visual_frame_path", "timestamp_ms", "time_elapsed_s", "timestamp"):
        rows[i][key], rows[j][key] = rows[j][key], rows[i][key]
    write_rows(folder, rows)
    return [Want("FRAME_REF_ORDER", "data.jsonl", line=j + 1, frame=3)]


def row_dropped(folder: Path) -> list[Want]:
    """The periodic row of frame 7 is gone (metadata counts adjusted): frame 7 has no row."""
    rows = read_rows(folder)
    del rows[periodic_index(rows, 7)]
    write_rows(folder, rows)
    edit_meta(folder, lambda m: m["data_stats"].update(total_samples=len(rows)))
    return [Want("FRAME_UNREFERENCED", "frames.npy", frame=7)]


def last_row_dropped(folder: Path) -> list[Want]:
    rows = read_rows(folder)
    del rows[periodic_index(rows, N - 1)]
    write_rows(folder, rows)
    edit_meta(folder, lambda m: m["data_stats"].update(total_samples=len(rows)))
    return [Want("FRAME_UNREFERENCED", "frames.npy", frame=N - 1)]


def bad_frame_path(folder: Path) -> list[Want]:
    rows = read_rows(folder)
    i = periodic_index(rows, 5)
    rows[i]["visual_frame_path"] = "frames/frame_5.png"
    write_rows(folder, rows)
    return [
        Want("FRAME_REF_BAD", "data.jsonl", line=i + 1),
        Want("FRAME_UNREFERENCED", "frames.npy", frame=5),
    ]


def time_goes_back(folder: Path) -> list[Want]:
    ts = read_ts(folder)
    ts[10] = ts[9] - 10
    write_ts(folder, ts)
    rows = read_rows(folder)
    rows[periodic_index(rows, 10)]["timestamp_ms"] = int(ts[10])  # the row agrees with its frame
    write_rows(folder, rows)
    return [Want("TS_DECREASING", "timestamps.npy", frame=10)]


def nan_timestamp(folder: Path) -> list[Want]:
    ts = read_ts(folder)
    ts[7] = np.nan
    write_ts(folder, ts)
    return [Want("TS_NOT_FINITE", "timestamps.npy", frame=7)]


def row_time_off_by(ms: int) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        ts = read_ts(folder)
        rows = read_rows(folder)
        i = periodic_index(rows, 6)
        rows[i]["timestamp_ms"] = int(ts[6]) + ms
        write_rows(folder, rows)
        if ms <= ValidationLimits().ts_tolerance_ms:
            return []
        return [Want("TS_ROW_MISMATCH", "data.jsonl", line=i + 1, frame=6)]

    return mutate


def replace_line(text: str, kind: str) -> Mutate:
    """Line of a robot_state event row (not counted anywhere) replaced by ``text``."""

    def mutate(folder: Path) -> list[Want]:
        lines = path(folder, "data.jsonl").read_text().split("\n")
        i = event_index(read_rows(folder))
        lines[i] = text
        path(folder, "data.jsonl").write_text("\n".join(lines))
        return [Want(kind, "data.jsonl", line=i + 1)]

    return mutate


def last_line_bad_json(folder: Path) -> list[Want]:
    """The game_end row (the last line) cut short: a bad line, still a row of the file."""
    lines = path(folder, "data.jsonl").read_text().split("\n")
    lines[-1] = lines[-1][:40]
    path(folder, "data.jsonl").write_text("\n".join(lines))
    return [Want("JSONL_BAD_JSON", "data.jsonl", line=len(lines))]


def action_line_bad_json(folder: Path) -> list[Want]:
    """A player_action line that does not parse: actions_logged cannot be checked against it."""
    lines = path(folder, "data.jsonl").read_text().split("\n")
    i = next(k for k, r in enumerate(read_rows(folder)) if r["type"] == "player_action")
    lines[i] = lines[i][:-3]
    path(folder, "data.jsonl").write_text("\n".join(lines))
    return [Want("JSONL_BAD_JSON", "data.jsonl", line=i + 1)]


def edit_periodic(k: int, code: str, change: Callable[[dict[str, Any]], None]) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        rows = read_rows(folder)
        i = periodic_index(rows, k)
        change(rows[i])
        write_rows(folder, rows)
        return [Want(code, "data.jsonl", line=i + 1)]

    return mutate


def metadata_text(text: str) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        path(folder, "metadata.json").write_text(text)
        return [Want("META_BAD_JSON", "metadata.json")]

    return mutate


def metadata_without(key: str) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        edit_meta(folder, lambda m: m.pop(key))
        return [Want("META_SCHEMA", "metadata.json", text=key)]

    return mutate


def stat_off_by_one(key: str) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        edit_meta(folder, lambda m: m["data_stats"].update({key: m["data_stats"][key] + 1}))
        return [Want("META_COUNT_MISMATCH", "metadata.json", text=f"data_stats.{key} ")]

    return mutate


def foreign_session_id(folder: Path) -> list[Want]:
    edit_meta(folder, lambda m: m.update(session_id="reacture_1700000000000_abcdefghi"))
    return [Want("META_SESSION_ID_MISMATCH", "metadata.json")]


def blank_frames(*which: int) -> Mutate:
    def mutate(folder: Path) -> list[Want]:
        p = path(folder, "frames.npy")
        data = bytearray(p.read_bytes())
        for i in which:
            start = DATA_OFFSET + i * FRAME_BYTES
            data[start : start + FRAME_BYTES] = bytes(FRAME_BYTES)
        p.write_bytes(bytes(data))
        return [Want("FRAMES_BLANK", "frames.npy", text=f"{len(which)} of {N} frames are blank")]

    return mutate


def empty_jsonl(folder: Path) -> list[Want]:
    path(folder, "data.jsonl").write_bytes(b"")
    return [Want("JSONL_EMPTY", "data.jsonl")]


def unchanged(want: list[Want]) -> Mutate:
    return lambda folder: list(want)


CASES: dict[str, Case] = {
    **{f"missing-{role}": Case(missing(role)) for role in ROLES},
    "frames-truncated": Case(truncate_frames),
    "frames-trailing-bytes": Case(trailing_bytes("frames.npy")),
    "timestamps-trailing-bytes": Case(trailing_bytes("timestamps.npy")),
    "frames-dtype-f4": Case(frames_as_float32),
    "frames-64x64": Case(frames_64x64),
    "frames-fortran-order": Case(frames_fortran),
    "timestamps-dtype-f8": Case(timestamps_float64),
    "frames-vs-timestamps-count": Case(one_timestamp_short),
    "ref-out-of-range": Case(ref_out_of_range),
    "ref-duplicate": Case(ref_duplicate),
    "refs-out-of-order": Case(refs_swapped),
    "frame-unreferenced": Case(row_dropped),
    "last-frame-unreferenced": Case(last_row_dropped),
    "bad-visual-frame-path": Case(bad_frame_path),
    "ts-decreasing": Case(time_goes_back),
    "ts-nan": Case(nan_timestamp),
    "ts-row-mismatch": Case(row_time_off_by(51)),
    "ts-row-within-tolerance": Case(row_time_off_by(50), ok=True),
    "jsonl-bad-json": Case(replace_line('{"type": "robot_state", ', "JSONL_BAD_JSON")),
    "jsonl-last-line-bad-json": Case(last_line_bad_json),
    "jsonl-action-bad-json": Case(action_line_bad_json),
    "jsonl-not-object": Case(replace_line("[1, 2]", "JSONL_NOT_OBJECT")),
    "row-unknown-type": Case(replace_line('{"type": "robot_status"}', "ROW_UNKNOWN_TYPE")),
    "periodic-missing-field": Case(edit_periodic(3, "ROW_SCHEMA", lambda r: r.pop("battery"))),
    "periodic-null": Case(edit_periodic(3, "ROW_NULL", lambda r: r.update(health=None))),
    "periodic-nested-null": Case(
        edit_periodic(8, "ROW_NULL", lambda r: r["robot"]["position"].update(x=None))
    ),
    "battery-150": Case(
        edit_periodic(4, "ROW_OUT_OF_RANGE", lambda r: r.update(battery=150)), ok=True
    ),
    "metadata-bad-json": Case(metadata_text('{"session_id": ')),
    "metadata-not-object": Case(metadata_text("[]")),
    "metadata-no-data_stats": Case(metadata_without("data_stats")),
    "metadata-no-session_id": Case(metadata_without("session_id")),
    "stats-total_samples": Case(stat_off_by_one("total_samples")),
    "stats-total_frames": Case(stat_off_by_one("total_frames")),
    "stats-actions_logged": Case(stat_off_by_one("actions_logged")),
    "session-id-of-another-session": Case(foreign_session_id, ok=True),
    "pause": Case(
        unchanged([Want("TS_GAP", "timestamps.npy", frame=10, text="5")]),
        ok=True,
        spec={"pauses": ((10, 5000),)},
    ),
    "all-frames-blank": Case(
        unchanged([Want("FRAMES_BLANK", "frames.npy", text="all 20 frames")]),
        ok=True,
        spec={"blank": True},
    ),
    "some-frames-blank": Case(blank_frames(3, 4), ok=True),
    "jsonl-empty": Case(empty_jsonl, also=frozenset({"FRAME_UNREFERENCED", "META_COUNT_MISMATCH"})),
    "one-frame": Case(unchanged([]), ok=True, spec={"n_frames": 1}),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_broken_bundle(make_bundle: MakeBundle, case: Case) -> None:
    folder = make_bundle(**case.spec)
    wants = case.mutate(folder)
    report = validate_folder(folder)
    for w in wants:
        where = (w.code, f"{PREFIX}_{w.role}", w.line, w.frame)
        hits = [
            f
            for f in report.findings
            if (f.code, f.file, f.line, f.frame) == where and w.text in f.message
        ]
        assert hits, (w, [str(f) for f in report.findings])
    new = {f.code for f in report.findings} - BASELINE
    assert new == {w.code for w in wants} | case.also, [str(f) for f in report.findings]
    assert report.ok is case.ok
    if case.ok:
        assert all(CODES[w.code][0] is not Severity.ERROR for w in wants)


def test_table_covers_every_file_role_and_enough_cases() -> None:
    assert len(CASES) >= 30
    assert {f"missing-{r}" for r in ROLES} <= set(CASES)


# --- details the table does not show -----------------------------------------------------------


def test_missing_frames_skips_alignment_but_checks_the_rest(make_bundle: MakeBundle) -> None:
    folder = make_bundle()
    path(folder, "frames.npy").unlink()
    r = validate_folder(folder)
    assert r.n_frames is None and r.frame_rows == ()
    assert r.n_rows is not None and r.n_periodic == N


def test_bad_line_still_counts_as_a_row(make_bundle: MakeBundle) -> None:
    folder = make_bundle()
    n = len(read_rows(folder))
    last_line_bad_json(folder)
    assert validate_folder(folder).n_rows == n


def test_frame_rows_point_at_the_periodic_rows(make_bundle: MakeBundle) -> None:
    folder = make_bundle(n_frames=12, seed=3)
    rows = read_rows(folder)
    r = validate_folder(folder)
    assert r.ok
    assert r.frame_rows == tuple(periodic_index(rows, k) for k in range(12))
    assert all(
        rows[i]["visual_frame_path"] == f"frames/frame_{k:06d}.npy"
        for k, i in enumerate(r.frame_rows)
    )


def test_unreferenced_frames_have_no_row_in_frame_rows(make_bundle: MakeBundle) -> None:
    folder = make_bundle()
    row_dropped(folder)
    r = validate_folder(folder)
    assert len(r.frame_rows) == N and r.frame_rows[7] == -1
    assert all(i >= 0 for k, i in enumerate(r.frame_rows) if k != 7)


def test_tolerance_is_configurable(make_bundle: MakeBundle) -> None:
    folder = make_bundle()
    row_time_off_by(30)(folder)
    assert validate_folder(folder).ok
    strict = validate_folder(folder, limits=ValidationLimits(ts_tolerance_ms=10))
    assert [f.code for f in strict.findings if f.severity is Severity.ERROR] == ["TS_ROW_MISMATCH"]


def test_many_findings_of_one_code_are_capped(make_bundle: MakeBundle) -> None:
    n = 45
    folder = make_bundle(n_frames=n)
    rows = read_rows(folder)
    for r in rows:
        if "visual_frame_path" in r:
            r["health"] = None
    write_rows(folder, rows)
    cap = ValidationLimits().max_per_code
    report = validate_folder(folder)
    nulls = [f for f in report.findings if f.code == "ROW_NULL"]
    assert len(nulls) == cap + 1
    assert [f.line for f in nulls[:cap]] == [periodic_index(rows, k) + 1 for k in range(cap)]
    summary = nulls[-1]
    assert summary.line is None and summary.message == f"... and {n - cap} more like the above"
    assert (summary.severity, summary.file) == (Severity.ERROR, f"{PREFIX}_data.jsonl")
    assert not report.ok


def test_cap_is_per_code_and_configurable(make_bundle: MakeBundle) -> None:
    folder = make_bundle(n_frames=12)
    path(folder, "data.jsonl").write_bytes(b"")  # 12 unreferenced frames, 2 count mismatches
    report = validate_folder(folder, limits=ValidationLimits(max_per_code=3))
    by_code = Counter(f.code for f in report.findings)
    assert by_code["FRAME_UNREFERENCED"] == 4
    assert by_code["META_COUNT_MISMATCH"] == 2  # under the cap: no summary
    unref = [f for f in report.findings if f.code == "FRAME_UNREFERENCED"]
    assert [f.frame for f in unref[:3]] == [0, 1, 2]
    assert unref[-1].message == "... and 9 more like the above"


def test_n1_bundle_is_valid_with_no_timing_findings(make_bundle: MakeBundle) -> None:
    r = validate_folder(make_bundle(n_frames=1))
    assert r.ok and r.n_frames == 1 and r.n_periodic == 1 and len(r.frame_rows) == 1
    assert not {"TS_GAP", "TS_CADENCE"} & {f.code for f in r.findings}


def test_one_broken_bundle_does_not_stop_the_others(make_bundle: MakeBundle) -> None:
    prefixes = ["reacture_1795600000001", "reacture_1795600000002", "reacture_1795600000003"]
    folders = [make_bundle(name=f"s{i}", prefix=p, seed=i) for i, p in enumerate(prefixes)]
    broken = path(folders[1], "frames.npy", prefixes[1])
    broken.write_bytes(broken.read_bytes()[:5000])
    found = discover([str(folders[0].parent)])
    assert [b.prefix for b in found.bundles] == prefixes
    reports = [validate_bundle(b) for b in found.bundles]
    assert [r.ok for r in reports] == [True, False, True]
    errors = [f.code for f in reports[1].findings if f.severity is Severity.ERROR]
    assert errors == ["NPY_TRUNCATED"]


def zip_folder(
    folder: Path, archive: Path, under: str = "inner/", extra: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, under + p.name)
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return archive


def test_hostile_member_is_refused_and_the_good_bundle_is_still_valid(
    make_bundle: MakeBundle, tmp_path: Path
) -> None:
    archive = zip_folder(make_bundle(), tmp_path / "upload.zip", extra={"../evil": b"boom"})
    found = discover([str(archive)])
    assert [(f.code, f.file) for f in found.findings] == [
        ("ARCHIVE_UNSAFE_PATH", f"{archive}!../evil")
    ]
    assert [b.source for b in found.bundles] == [f"{archive}!inner"]
    report = validate_bundle(found.bundles[0])
    assert report.ok and report.n_frames == N


def test_corrupt_archive_member_is_a_finding_not_a_crash(
    make_bundle: MakeBundle, tmp_path: Path
) -> None:
    archive = zip_folder(make_bundle(), tmp_path / "upload.zip")
    member = f"inner/{PREFIX}_frames.npy"
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(member) + 5000] ^= 0xFF  # inside the stored frame bytes
    archive.write_bytes(bytes(data))
    report = validate_bundle(the_bundle(archive))
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    assert [(f.code, f.file) for f in errors] == [("ARCHIVE_UNREADABLE", f"{PREFIX}_frames.npy")]
    assert str(archive) in errors[0].message


def test_every_emitted_code_is_registered(make_bundle: MakeBundle) -> None:
    folder = make_bundle()
    empty_jsonl(folder)
    frames_fortran(folder)
    report = validate_folder(folder)
    assert all(f.code in CODES and f.severity is CODES[f.code][0] for f in report.findings)


# --- never crashes ------------------------------------------------------------------------------

_EDITS = st.tuples(
    st.sampled_from(ROLES),
    st.sampled_from(["flip", "cut", "insert"]),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=4),
)


@given(edits=st.lists(_EDITS, min_size=1, max_size=3))
@settings(max_examples=60, deadline=None)
def test_damaged_bundle_never_crashes_the_validator(
    edits: list[tuple[str, str, float, bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bundle(Path(tmp), BundleSpec(n_frames=3))
        for role, how, where, data in edits:
            p = path(folder, role)
            raw = p.read_bytes()
            at = int(where * len(raw))
            if how == "flip":
                raw = raw[:at] + data + raw[at + len(data) :]
            elif how == "cut":
                raw = raw[:at]
            else:
                raw = raw[:at] + data + raw[at:]
            p.write_bytes(raw)
        report = validate_folder(folder)
    assert all(f.code in CODES and f.severity is CODES[f.code][0] for f in report.findings)
    if report.n_frames is not None and report.frame_rows:
        assert len(report.frame_rows) == report.n_frames


def test_a_bundle_that_cannot_be_read_is_its_read_failed_finding(make_bundle: MakeBundle) -> None:
    (bundle,) = discover([str(make_bundle())]).bundles
    rows = path(Path(bundle.source), "data.jsonl")
    rows.unlink()
    rows.mkdir()  # listed as a file, now unreadable: an I/O error, not bad input
    with pytest.raises(OSError):
        validate_bundle(bundle)
    report = validate_bundle_safely(bundle)
    assert not report.ok
    assert [(f.code, f.file) for f in report.findings] == [("READ_FAILED", bundle.prefix)]
    assert "IsADirectoryError" in report.findings[0].message
    assert report.to_dict()["findings"] == [report.findings[0].to_dict()]


# --- one read: hashes, threads ------------------------------------------------------------------
def test_the_read_hashes_every_file_it_reads_whole(make_bundle: MakeBundle, tmp_path: Path) -> None:
    folder = make_bundle()
    for bundle in (the_bundle(folder), the_bundle(zip_folder(folder, tmp_path / "b.zip"))):
        hashes: dict[str, str] = {}
        assert validate_bundle(bundle, hashes=hashes).ok
        expected = hash_files(bundle)
        assert hashes == {role: h for role, h in expected.items() if role != "README.md"}


def test_a_file_read_in_part_is_not_hashed(make_bundle: MakeBundle) -> None:
    folder = make_bundle(n_frames=60)  # (a short rest, up to 1 MiB, is read to hash it whole)
    frames = path(folder, "frames.npy")
    frames.write_bytes(b"JUNK" + frames.read_bytes()[4:])  # NPY_BAD_MAGIC: nothing after it
    hashes: dict[str, str] = {}
    report = validate_folder(folder, hashes=hashes)
    assert "NPY_BAD_MAGIC" in {f.code for f in report.findings}
    assert "frames.npy" not in hashes
    assert hashes == {r: h for r, h in hash_files(the_bundle(folder)).items() if r in hashes}


@pytest.mark.parametrize("edit", ["none", "bad-rows", "unreferenced-frame"])
def test_one_thread_or_several_give_the_same_report(make_bundle: MakeBundle, edit: str) -> None:
    folder = make_bundle(n_frames=40)
    rows = read_rows(folder)
    if edit == "bad-rows":
        rows[3]["battery"] = "full"
        rows[7]["wheels"] = 4
    elif edit == "unreferenced-frame":
        del rows[periodic_index(rows, 5)]
    write_rows(folder, rows)
    one, two = (validate_folder(folder, threads=t) for t in (1, 2))
    assert one == two
