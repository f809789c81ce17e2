"""Judge one bundle: read its five files once, collect every finding, never stop at the first.

``validate_bundle`` streams each file (frames chunk by chunk, rows line by line), so memory does
not grow with the session's length beyond a few integers per frame. Its ``Report`` carries what
conversion needs besides the verdict: counts, the frame→row alignment and the metadata.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from reacture_convert.errors import InputError
from reacture_convert.findings import Finding, finding, has_errors
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, is_damaged_member, open_file
from reacture_convert.ingest.files import judge_array_header
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl, parse_metadata
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.ingest.npy import (
    NpyHeader,
    iter_npy_chunks,
    read_npy_small,
)

__all__ = ["ReadSink", "Report", "ValidationLimits", "validate_bundle", "validate_bundle_safely"]

MAX_METADATA_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Tolerances. ``ts_tolerance_ms``: frame time vs its row's timestamp_ms (seen: ~10 ms)."""

    ts_tolerance_ms: float = 50.0
    gap_factor: float = 5.0  # a gap is an interval above gap_factor x median ...
    gap_min_ms: float = 1000.0  # ... and above this
    cadence_factor: float = 1.5  # measured rate off by more than this factor from metadata's
    max_per_code: int = 20  # findings of one code kept per file; the rest summarised
    chunk_frames: int = 256


@dataclass(frozen=True, slots=True)
class Report:
    """The verdict on one bundle and the facts gathered on the way."""

    bundle: BundleRef
    findings: tuple[Finding, ...]
    n_frames: int | None = None
    n_rows: int | None = None
    n_periodic: int = 0
    n_events: int = 0
    n_actions: int = 0
    blank_frames: int | None = None
    metadata: Mapping[str, Any] | None = None
    # row_index of the periodic row that refers to each frame (-1: none), when known
    frame_rows: tuple[int, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not has_errors(self.findings)

    @property
    def metadata_session_id(self) -> str | None:
        sid = (self.metadata or {}).get("session_id")
        return sid if isinstance(sid, str) else None

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values (what ``validate --json`` prints per bundle)."""
        return {
            "prefix": self.bundle.prefix,
            "source": self.bundle.source,
            "valid": self.ok,
            "n_frames": self.n_frames,
            "n_rows": self.n_rows,
            "n_periodic": self.n_periodic,
            "n_events": self.n_events,
            "n_actions": self.n_actions,
            "blank_frames": self.blank_frames,
            "metadata_session_id": self.metadata_session_id,
            "findings": [f.to_dict() for f in self.findings],
        }


class _Collector:
    """Collects findings, keeping at most ``cap`` of one code per file and counting the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[Finding] = []
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, f: Finding) -> None:
        key = (f.code, f.file)
        self.counts[key] += 1
        if self.counts[key] <= self.cap:
            self.items.append(f)

    def extend(self, fs: Iterable[Finding]) -> None:
        for f in fs:
            self.add(f)

    def result(self) -> tuple[Finding, ...]:
        out = list(self.items)
        for (code, file), n in self.counts.items():
            if n > self.cap:
                out.append(finding(code, file, f"... and {n - self.cap} more like the above"))
        return tuple(out)


def _read_header(
    bundle: BundleRef, role: str, opts: StorageOptions | None, out: _Collector
) -> NpyHeader | None:
    header, findings = judge_array_header(bundle, role, opts)
    out.extend(findings)
    return header


class ReadSink(Protocol):
    """Receives what validation reads, as it reads it, so a converter writes its outputs in the
    same single pass (``convert``): frame blocks in order, and every parsed row."""

    block_frames: int

    def frames(self, start: int, block: np.ndarray) -> None: ...

    def row(self, row: ParsedRow) -> None: ...


def _scan_frames(
    bundle: BundleRef,
    header: NpyHeader,
    opts: StorageOptions | None,
    chunk: int,
    sink: ReadSink | None = None,
) -> int:
    """Count all-zero frames, streaming (and hand every block to ``sink``)."""
    blank = 0
    start = 0
    if sink is not None:
        chunk = sink.block_frames
    with open_file(bundle.files["frames.npy"], opts) as f:
        for block in iter_npy_chunks(f, header, chunk, file=bundle.files["frames.npy"].name):
            lit = block.reshape(block.shape[0], -1).any(axis=1)
            blank += int(block.shape[0] - np.count_nonzero(lit))
            if sink is not None:
                sink.frames(start, block)
            start += block.shape[0]
    return blank


_SID = re.compile(r"reacture_(\d+)(?:_([a-z0-9]+))?")


def _check_session_id(bundle: BundleRef, metadata: Mapping[str, Any], out: _Collector) -> None:
    sid = metadata.get("session_id")
    file = bundle.file_label("metadata.json")
    if not isinstance(sid, str) or sid == bundle.prefix:
        return
    m_sid, m_pre = _SID.fullmatch(sid), _SID.fullmatch(bundle.prefix)
    if m_sid and m_pre and abs(int(m_sid.group(1)) - int(m_pre.group(1))) <= 60_000:
        out.add(
            finding(
                "META_SESSION_ID",
                file,
                f"session_id {sid!r} differs from the file prefix {bundle.prefix!r} as "
                "the exporter's always does; the session is named after the prefix, "
                "both are kept",
            )
        )
    else:
        out.add(
            finding(
                "META_SESSION_ID_MISMATCH",
                file,
                f"session_id {sid!r} does not look like the session of prefix "
                f"{bundle.prefix!r}; check that these files belong together",
            )
        )


def _check_counts(
    bundle: BundleRef,
    metadata: Mapping[str, Any],
    rows: _Rows,
    n_frames: int | None,
    out: _Collector,
) -> None:
    """data_stats against the files. Rows that did not parse may have been actions: a shortfall
    of player_action rows they could explain is not reported twice."""
    stats = metadata.get("data_stats")
    if not isinstance(stats, Mapping):
        return
    file = bundle.file_label("metadata.json")
    for key, have, slack, what in (
        ("total_samples", rows.n_rows, 0, "rows in data.jsonl"),
        ("total_frames", n_frames, 0, "frames in frames.npy"),
        ("actions_logged", rows.kinds["action"], rows.n_unparsed, "player_action rows"),
    ):
        want = stats.get(key)
        if (
            have is not None
            and isinstance(want, int | float)
            and not isinstance(want, bool)
            and not have <= want <= have + slack
        ):
            out.add(
                finding(
                    "META_COUNT_MISMATCH",
                    file,
                    f"data_stats.{key} is {want} but the bundle holds {have} {what}; "
                    "the bundle may be truncated or its files mixed up",
                )
            )


def _check_timestamps(
    bundle: BundleRef,
    ts: np.ndarray,
    metadata: Mapping[str, Any] | None,
    limits: ValidationLimits,
    out: _Collector,
) -> None:
    file = bundle.file_label("timestamps.npy")
    values = ts.astype(np.float64)
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out.add(
            finding("TS_NOT_FINITE", file, f"timestamp {values[i]} is not a finite number", frame=i)
        )
    finite = np.isfinite(values)
    if values.size and np.nanmax(np.where(finite, np.abs(values), 0)) >= 2**24:
        out.add(
            finding(
                "TS_FLOAT32_PRECISION",
                file,
                "timestamps reach 2^24 ms (~4.6 h): float32 no longer holds every whole ms",
            )
        )
    diffs = np.diff(values)
    for i in np.flatnonzero(diffs < 0).tolist():
        out.add(
            finding(
                "TS_DECREASING",
                file,
                f"timestamp goes back from {values[i]:g} to {values[i + 1]:g} ms",
                frame=i + 1,
            )
        )
    good = diffs[np.isfinite(diffs) & (diffs >= 0)]
    if good.size == 0:
        return
    median = float(np.median(good))
    limit = max(limits.gap_factor * median, limits.gap_min_ms)
    for i in np.flatnonzero(np.isfinite(diffs) & (diffs > limit)).tolist():
        out.add(
            finding(
                "TS_GAP",
                file,
                f"{diffs[i]:.0f} ms between frames {i} and {i + 1} (median interval "
                f"{median:.0f} ms): a pause or a stall, kept as it is",
                frame=i + 1,
            )
        )
    rate = (metadata or {}).get("sampling_rate_hz")
    if isinstance(rate, int | float) and rate > 0 and median > 0:
        measured = 1000.0 / median
        if not (rate / limits.cadence_factor <= measured <= rate * limits.cadence_factor):
            out.add(
                finding(
                    "TS_CADENCE",
                    file,
                    f"median frame interval {median:.1f} ms ({measured:.1f} Hz) while "
                    f"metadata says {rate:g} Hz: the browser timer ran slow",
                )
            )


def _check_alignment(
    bundle: BundleRef,
    periodic: list[tuple[int, int, int | None, int | None]],
    n_frames: int,
    ts: np.ndarray | None,
    limits: ValidationLimits,
    out: _Collector,
) -> tuple[int, ...]:
    """Each frame referenced exactly once, in order, and at the time of its row."""
    jfile = bundle.file_label("data.jsonl")
    frame_rows = [-1] * n_frames
    line_of = {row_index: line for row_index, line, _, _ in periodic}
    # Order is judged against the highest frame referenced so far, not the row's rank: a frame
    # without a row is one FRAME_UNREFERENCED, not an order error for every row after it.
    highest: tuple[int, int] | None = None  # (frame, line) of the highest reference so far
    for row_index, line, frame_index, t_ms in periodic:
        if frame_index is None:
            continue  # FRAME_REF_BAD was reported by the row parser
        if frame_index >= n_frames:
            out.add(
                finding(
                    "FRAME_REF_OUT_OF_RANGE",
                    jfile,
                    f"visual_frame_path names frame {frame_index} but frames.npy holds "
                    f"{n_frames} frames",
                    line=line,
                    frame=frame_index,
                )
            )
            continue
        if frame_rows[frame_index] != -1:
            out.add(
                finding(
                    "FRAME_REF_DUPLICATE",
                    jfile,
                    f"frame {frame_index} is already referenced by line "
                    f"{line_of[frame_rows[frame_index]]}",
                    line=line,
                    frame=frame_index,
                )
            )
            continue
        if highest is not None and frame_index < highest[0]:
            out.add(
                finding(
                    "FRAME_REF_ORDER",
                    jfile,
                    f"refers to frame {frame_index} after line {highest[1]} referred to "
                    f"frame {highest[0]}: periodic rows must name frames in order",
                    line=line,
                    frame=frame_index,
                )
            )
        else:
            highest = (frame_index, line)
        frame_rows[frame_index] = row_index
        if ts is not None and t_ms is not None and frame_index < ts.size:
            t_frame = float(ts[frame_index])
            if math.isfinite(t_frame) and abs(t_frame - t_ms) > limits.ts_tolerance_ms:
                out.add(
                    finding(
                        "TS_ROW_MISMATCH",
                        jfile,
                        f"row timestamp_ms {t_ms} vs timestamps[{frame_index}] = "
                        f"{t_frame:g} ms (tolerance {limits.ts_tolerance_ms:g} ms)",
                        line=line,
                        frame=frame_index,
                    )
                )
    ffile = bundle.file_label("frames.npy")
    for i in [i for i, r in enumerate(frame_rows) if r == -1]:
        out.add(
            finding("FRAME_UNREFERENCED", ffile, f"no periodic row refers to frame {i}", frame=i)
        )
    return tuple(frame_rows)


class _Unreadable(Exception):
    """A file of the bundle could not be read to the end; its finding is already collected."""


@contextlib.contextmanager
def _reading(bundle: BundleRef, role: str, out: _Collector) -> Iterator[None]:
    """Turn a corrupt file into a finding (and ``_Unreadable``) instead of a crash.

    A damaged archive member (bad CRC, broken deflate stream) or a file that ends before the
    size listed for it is bad input, not an I/O failure: it becomes ``ARCHIVE_UNREADABLE`` (an
    archive member) or ``NPY_TRUNCATED`` (a plain .npy file), so one bad bundle never stops a
    batch. Other I/O errors (network, permissions) propagate for the caller to retry or report.
    """
    ref = bundle.files[role]
    try:
        yield
    except Exception as e:
        if is_damaged_member(ref, e):
            out.add(
                finding(
                    "ARCHIVE_UNREADABLE",
                    ref.name,
                    f"{ref.label()} cannot be read ({type(e).__name__}: {e}); the archive "
                    "is damaged: re-create or re-download it",
                )
            )
        elif isinstance(e, InputError) and role.endswith(".npy"):
            out.add(finding("NPY_TRUNCATED", ref.name, f"{e}"))
        else:
            raise
        raise _Unreadable from e


def _validate_metadata(
    bundle: BundleRef, opts: StorageOptions | None, out: _Collector
) -> dict[str, Any] | None:
    """The raw metadata object (None when unusable), with its findings collected."""
    ref = bundle.files["metadata.json"]
    if ref.size > MAX_METADATA_BYTES:
        out.add(
            finding(
                "META_BAD_JSON",
                ref.name,
                f"metadata.json is {ref.size} bytes (limit {MAX_METADATA_BYTES})",
            )
        )
        return None
    with _reading(bundle, "metadata.json", out), open_file(ref, opts) as f:
        data = f.read(MAX_METADATA_BYTES + 1)
    _, metadata, fs = parse_metadata(data, ref.name)
    out.extend(fs)
    if metadata is not None:
        _check_session_id(bundle, metadata, out)
    return metadata


def _validate_timestamps(
    bundle: BundleRef,
    opts: StorageOptions | None,
    metadata: Mapping[str, Any] | None,
    limits: ValidationLimits,
    out: _Collector,
) -> np.ndarray | None:
    """The timestamps array (None when unusable), with its findings collected."""
    ref = bundle.files["timestamps.npy"]
    with _reading(bundle, "timestamps.npy", out):
        header = _read_header(bundle, "timestamps.npy", opts, out)
        if header is None:
            return None
        with open_file(ref, opts) as f:
            ts = read_npy_small(f, header, file=ref.name)
    _check_timestamps(bundle, ts, metadata, limits, out)
    return ts


def _validate_frames(
    bundle: BundleRef,
    opts: StorageOptions | None,
    limits: ValidationLimits,
    out: _Collector,
    sink: ReadSink | None = None,
) -> tuple[int | None, int | None]:
    """(N from the header, blank frames) — None when unknown — with the findings collected."""
    with _reading(bundle, "frames.npy", out):
        header = _read_header(bundle, "frames.npy", opts, out)
    if header is None:
        return None, None
    n_frames = header.shape[0]
    try:
        with _reading(bundle, "frames.npy", out):
            blank = _scan_frames(bundle, header, opts, limits.chunk_frames, sink)
    except _Unreadable:
        return n_frames, None  # the header is sound: alignment can still be judged
    ffile = bundle.file_label("frames.npy")
    if n_frames and blank == n_frames:
        out.add(
            finding(
                "FRAMES_BLANK",
                ffile,
                f"all {n_frames} frames are blank (all zeros): the game's known "
                "black-frame export (WebGL preserveDrawingBuffer off); converted, "
                "but useless for vision",
            )
        )
    elif blank:
        out.add(finding("FRAMES_BLANK", ffile, f"{blank} of {n_frames} frames are blank"))
    return n_frames, blank


@dataclass(slots=True)
class _Rows:
    """What one pass over data.jsonl learnt."""

    n_rows: int = 0  # non-empty lines, parsed or not: what data_stats.total_samples counts
    n_unparsed: int = 0  # rows that gave no usable row (bad JSON, unknown type, ...)
    kinds: Counter[str] = field(default_factory=Counter)
    periodic: list[tuple[int, int, int | None, int | None]] = field(default_factory=list)


def _scan_rows(
    bundle: BundleRef, opts: StorageOptions | None, out: _Collector, sink: ReadSink | None = None
) -> _Rows:
    """Stream data.jsonl: counts, periodic references, and every row finding."""
    ref = bundle.files["data.jsonl"]
    seen = _Rows()
    last_line = n_empty = n_parsed = 0
    last_t: int | None = None
    unordered_at: int | None = None
    with _reading(bundle, "data.jsonl", out), open_file(ref, opts) as f:
        for item in iter_jsonl(f, ref.name):
            # every line gives a row or a finding at its line: the last line seen, less the
            # empty ones, is the number of rows, even when the last ones do not parse
            last_line = max(last_line, item.line or 0)
            if isinstance(item, Finding):
                n_empty += item.code == "JSONL_EMPTY_LINE"
                out.add(item)
                continue
            row: ParsedRow = item
            if sink is not None:
                sink.row(row)
            n_parsed += 1
            seen.kinds[row.kind] += 1
            if row.kind == "periodic":
                seen.periodic.append((row.row_index, last_line, row.frame_index, row.timestamp_ms))
            if row.timestamp_ms is not None:
                if last_t is not None and row.timestamp_ms < last_t and unordered_at is None:
                    unordered_at = row.line
                last_t = row.timestamp_ms if last_t is None else max(last_t, row.timestamp_ms)
    seen.n_rows = last_line - n_empty
    seen.n_unparsed = seen.n_rows - n_parsed
    if unordered_at is not None:
        out.add(
            finding(
                "ROWS_NOT_TIME_ORDERED",
                ref.name,
                "rows are not in time order (first at this line): the exporter logs "
                "inner rows before outer ones; row order is kept as in the file",
                line=unordered_at,
            )
        )
    return seen


def validate_bundle(
    bundle: BundleRef,
    storage_options: StorageOptions | None = None,
    limits: ValidationLimits = ValidationLimits(),
    sink: ReadSink | None = None,
) -> Report:
    """Read every file of ``bundle`` and return all findings.

    ``sink`` (optional) receives every frame block and parsed row as they are read, so a
    converter needs no second pass; what it wrote is worthless when the report is not ok.
    Bad or corrupt input is always a finding; only I/O failures (network, permissions) raise.
    A legacy four-file export is judged through its five-file view (``legacy.as_five_file``).
    """
    if bundle.is_legacy:
        with as_five_file(bundle, storage_options) as (view, legacy_findings):
            if view is None:
                return Report(bundle=bundle, findings=tuple(legacy_findings))
            report = validate_bundle(view, storage_options, limits, sink)
            return replace(report, bundle=bundle, findings=(*legacy_findings, *report.findings))
    out = _Collector(limits.max_per_code)
    for role in bundle.missing:
        out.add(
            finding(
                "BUNDLE_MISSING_FILE",
                f"{bundle.prefix}_{role}",
                f"{role} of bundle {bundle.prefix!r} is missing in {bundle.source}",
            )
        )
    files = bundle.files

    metadata: dict[str, Any] | None = None
    ts: np.ndarray | None = None
    n_frames: int | None = None
    blank: int | None = None
    rows: _Rows | None = None
    with contextlib.suppress(_Unreadable):
        if "metadata.json" in files:
            metadata = _validate_metadata(bundle, storage_options, out)
    with contextlib.suppress(_Unreadable):
        if "timestamps.npy" in files:
            ts = _validate_timestamps(bundle, storage_options, metadata, limits, out)
    with contextlib.suppress(_Unreadable):
        if "frames.npy" in files:
            n_frames, blank = _validate_frames(bundle, storage_options, limits, out, sink)
    if ts is not None and n_frames is not None and ts.size != n_frames:
        out.add(
            finding(
                "FRAME_COUNT_MISMATCH",
                bundle.file_label("timestamps.npy"),
                f"timestamps.npy holds {ts.size} entries but frames.npy {n_frames} frames",
            )
        )
    with contextlib.suppress(_Unreadable):
        if "data.jsonl" in files:
            rows = _scan_rows(bundle, storage_options, out, sink)

    frame_rows: tuple[int, ...] = ()
    if rows is not None and n_frames is not None:
        frame_rows = _check_alignment(bundle, rows.periodic, n_frames, ts, limits, out)
    if rows is not None and metadata is not None:
        _check_counts(bundle, metadata, rows, n_frames, out)
    kinds = rows.kinds if rows is not None else Counter[str]()
    return Report(
        bundle=bundle,
        findings=out.result(),
        n_frames=n_frames,
        n_rows=rows.n_rows if rows is not None else None,
        n_periodic=kinds["periodic"],
        n_events=kinds["event"],
        n_actions=kinds["action"],
        blank_frames=blank,
        metadata=metadata,
        frame_rows=frame_rows,
    )


def validate_bundle_safely(
    bundle: BundleRef,
    storage_options: StorageOptions | None = None,
    limits: ValidationLimits = ValidationLimits(),
) -> Report:
    """``validate_bundle`` for judging many bundles: a failure to read this one (network,
    permissions) is its ``READ_FAILED`` finding, never the end of the run."""
    try:
        return validate_bundle(bundle, storage_options, limits)
    except Exception as e:  # noqa: BLE001 - one bundle's failure is its finding, never the run's
        message = f"{type(e).__name__}: {e}; check access and retry"
        return Report(bundle, (finding("READ_FAILED", bundle.prefix, message),))
