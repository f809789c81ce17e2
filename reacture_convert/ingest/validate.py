"""Judge one bundle: read its five files once, collect every finding, never stop at the first.

``validate_bundle`` streams each file (frames block by block on a helper thread, rows in blocks
of Arrow columns on this one, both at once), so memory does not grow with the session's length
beyond a few integers per frame. Its ``Report`` carries what conversion needs besides the
verdict: counts, the frame→row alignment and the metadata. A converter takes the blocks as
they are read (``ReadSink``) and may ask for the files' sha256 from the same read.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from reacture_convert.cores import task_threads
from reacture_convert.errors import InputError
from reacture_convert.findings import Finding, finding, has_errors
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, is_damaged_member, open_file
from reacture_convert.ingest.checks import (
    FrameRows,
    Periodic,
    check_alignment,
    check_counts,
    check_session_id,
    check_timestamps,
    first_out_of_order,
    unreferenced_frames,
)
from reacture_convert.ingest.files import HashingReader, judge_array_header
from reacture_convert.ingest.jsonl import parse_metadata
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.ingest.npy import iter_npy_chunks, read_npy_small
from reacture_convert.ingest.rowscan import KINDS, RowBlock, scan_rows

__all__ = [
    "ReadSink",
    "ReadSinks",
    "Report",
    "ValidationLimits",
    "validate_bundle",
    "validate_bundle_safely",
]

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
    frame_rows: FrameRows = field(default_factory=FrameRows, repr=False)

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

    def merge(self, other: _Collector) -> None:
        """Add what ``other`` collected, as if it had been added here (findings of a part read
        on another thread join the report in reading order)."""
        self.extend(other.items)
        for key, n in other.counts.items():
            self.counts[key] += n - min(n, other.cap)

    def result(self) -> tuple[Finding, ...]:
        out = list(self.items)
        for (code, file), n in self.counts.items():
            if n > self.cap:
                out.append(finding(code, file, f"... and {n - self.cap} more like the above"))
        return tuple(out)


class ReadSink(Protocol):
    """Receives what validation reads, as it reads it, so a converter writes its outputs in the
    same single pass (``convert``): first ``start`` (timestamps.npy, None when it is unusable,
    and whether frames and rows are read at once, on two threads, or in turns on one); then
    frame blocks in order with which of their frames are not blank (on the frames' thread), and
    every block of rows (on the calling thread); ``end(part)`` once the ``"frames"`` or
    ``"rows"`` pass is over, whatever its outcome (a sink that waits for one part while it
    reads the other stops waiting then)."""

    block_frames: int

    def start(self, timestamps: npt.NDArray[np.float32] | None, concurrent: bool) -> None: ...

    def frames(self, start: int, block: np.ndarray, lit: npt.NDArray[np.bool_]) -> None: ...

    def rows(self, block: RowBlock) -> None: ...

    def end(self, part: str) -> None: ...


class ReadSinks:
    """Several sinks fed by one read, each call in the order given; the first sink's
    ``block_frames`` is the size of the frame blocks (the others must take any size)."""

    def __init__(self, sinks: Sequence[ReadSink]) -> None:
        self.sinks = tuple(sinks)
        self.block_frames = self.sinks[0].block_frames

    def start(self, timestamps: npt.NDArray[np.float32] | None, concurrent: bool) -> None:
        for sink in self.sinks:
            sink.start(timestamps, concurrent)

    def frames(self, start: int, block: np.ndarray, lit: npt.NDArray[np.bool_]) -> None:
        for sink in self.sinks:
            sink.frames(start, block, lit)

    def rows(self, block: RowBlock) -> None:
        for sink in self.sinks:
            sink.rows(block)

    def end(self, part: str) -> None:
        for sink in self.sinks:
            sink.end(part)


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


@contextlib.contextmanager
def _opened(
    bundle: BundleRef, role: str, opts: StorageOptions | None, hashes: dict[str, str] | None
) -> Iterator[IO[bytes]]:
    """``role`` open for one read from its start; when ``hashes`` is given, the file's sha256
    goes there if that read took in the whole file."""
    with open_file(bundle.files[role], opts) as f:
        if hashes is None:
            yield f
            return
        reader = HashingReader(f)
        yield reader  # type: ignore[misc]  # (a binary stream in all that validation uses)
        digest = reader.finish()
        if digest is not None:
            hashes[role] = digest


def _validate_metadata(
    bundle: BundleRef, opts: StorageOptions | None, out: _Collector, hashes: dict[str, str] | None
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
    with (
        _reading(bundle, "metadata.json", out),
        _opened(bundle, "metadata.json", opts, hashes) as f,
    ):
        data = f.read(MAX_METADATA_BYTES + 1)
    _, metadata, fs = parse_metadata(data, ref.name)
    out.extend(fs)
    if metadata is not None:
        out.extend(check_session_id(bundle, metadata))
    return metadata


def _validate_timestamps(
    bundle: BundleRef,
    opts: StorageOptions | None,
    metadata: Mapping[str, Any] | None,
    limits: ValidationLimits,
    out: _Collector,
    hashes: dict[str, str] | None,
) -> np.ndarray | None:
    """The timestamps array (None when unusable), with its findings collected."""
    ref = bundle.files["timestamps.npy"]
    with (
        _reading(bundle, "timestamps.npy", out),
        _opened(bundle, "timestamps.npy", opts, hashes) as f,
    ):
        header, findings = judge_array_header(bundle, "timestamps.npy", opts, f)
        out.extend(findings)
        if header is None:
            return None
        ts = read_npy_small(f, header, file=ref.name)
    out.extend(
        check_timestamps(
            bundle,
            ts,
            metadata,
            gap_factor=limits.gap_factor,
            gap_min_ms=limits.gap_min_ms,
            cadence_factor=limits.cadence_factor,
        )
    )
    return ts


@dataclass(slots=True)
class _Frames:
    """What the pass over frames.npy learnt: N from the header, blank frames (None: unknown)."""

    out: _Collector
    n_frames: int | None = None
    blank: int | None = None


def _frames_pass(
    bundle: BundleRef,
    opts: StorageOptions | None,
    limits: ValidationLimits,
    sink: ReadSink | None,
    hashes: dict[str, str] | None,
) -> Generator[int, None, _Frames]:
    """Judge the header, then stream the frames: count blank ones (and hand every block to
    ``sink``), yielding the number of frames read after each block. Findings of its own (it
    may run on a helper thread)."""
    seen = _Frames(_Collector(limits.max_per_code))
    out = seen.out
    ref = bundle.files["frames.npy"]
    try:
        with _reading(bundle, "frames.npy", out), _opened(bundle, "frames.npy", opts, hashes) as f:
            header, findings = judge_array_header(bundle, "frames.npy", opts, f)
            out.extend(findings)
            if header is None:
                return seen
            seen.n_frames = header.shape[0]
            chunk = sink.block_frames if sink is not None else limits.chunk_frames
            blank = start = 0
            for block in iter_npy_chunks(f, header, chunk, file=ref.name):
                lit = np.asarray(block.reshape(block.shape[0], -1).any(axis=1), dtype=bool)
                blank += int(block.shape[0] - np.count_nonzero(lit))
                if sink is not None:
                    sink.frames(start, block, lit)
                start += block.shape[0]
                yield start
    except _Unreadable:
        return seen  # the header may be sound: alignment can still be judged
    seen.blank = blank
    n_frames = seen.n_frames
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
    return seen


@dataclass(slots=True)
class _Rows:
    """What one pass over data.jsonl learnt."""

    n_rows: int = 0  # non-empty lines, parsed or not: what data_stats.total_samples counts
    n_unparsed: int = 0  # rows that gave no usable row (bad JSON, unknown type, ...)
    kinds: Counter[str] = field(default_factory=Counter)
    periodic: Periodic = field(default_factory=Periodic)


def _rows_pass(
    bundle: BundleRef,
    opts: StorageOptions | None,
    out: _Collector,
    sink: ReadSink | None,
    hashes: dict[str, str] | None,
    background: bool,
) -> Generator[int, None, _Rows]:
    """Stream data.jsonl: counts, periodic references, and every row finding; yields after
    each block how many frames the periodic rows named so far (the highest index, plus 1)."""
    ref = bundle.files["data.jsonl"]
    seen = _Rows()
    last_line = n_empty = n_parsed = 0
    last_t: int | None = None
    unordered_at: int | None = None
    kinds = np.zeros(len(KINDS), dtype=np.int64)
    named = 0
    with _reading(bundle, "data.jsonl", out), _opened(bundle, "data.jsonl", opts, hashes) as f:
        for block in scan_rows(f, ref.name, background=background):
            # every line gives a row or a finding at its line: the last line seen, less the
            # empty ones, is the number of rows, even when the last ones do not parse
            last_line = max(last_line, block.last_line)
            for item in block.findings:
                n_empty += item.code == "JSONL_EMPTY_LINE"
                out.add(item)
            if sink is not None:
                sink.rows(block)
            n_parsed += len(block)
            kinds += np.bincount(block.kind, minlength=len(KINDS))
            p = block.kind == KINDS.index("periodic")
            seen.periodic.add(
                block.row_index[p],
                block.line[p],
                block.frame_index[p],
                block.timestamp_ms[p],
                block.has_timestamp[p],
            )
            late, last_t = first_out_of_order(
                block.timestamp_ms, block.has_timestamp, block.line, last_t
            )
            if unordered_at is None:
                unordered_at = late
            if p.any():
                named = max(named, int(block.frame_index[p].max()) + 1)
            yield named
    seen.kinds = Counter({name: int(n) for name, n in zip(KINDS, kinds, strict=True)})
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


def _finish(job: Generator[int, None, Any] | None, sink: ReadSink | None, part: str) -> Any:
    """Run a pass to its end; its result (None: unreadable, or absent). The sink hears that
    the part is over in any case."""
    try:
        if job is None:
            return None
        while True:
            try:
                next(job)
            except StopIteration as done:
                return done.value
    except _Unreadable:
        return None
    finally:
        if sink is not None:
            sink.end(part)


def _in_turns(
    frames_job: Generator[int, None, _Frames] | None,
    rows_job: Generator[int, None, _Rows] | None,
    sink: ReadSink | None,
) -> tuple[_Frames | None, _Rows | None]:
    """Both passes on this thread, in turns: a block of rows while the frames read have caught
    up with those the rows named, else a block of frames; so a sink that pairs frames with
    rows holds about a block of each."""
    jobs: dict[str, Generator[int, None, Any] | None] = {"frames": frames_job, "rows": rows_job}
    results: dict[str, Any] = {"frames": None, "rows": None}
    progress = {"frames": 0, "rows": 0}
    try:
        while jobs["frames"] is not None or jobs["rows"] is not None:
            rows_turn = jobs["frames"] is None or progress["rows"] <= progress["frames"]
            part = "rows" if jobs["rows"] is not None and rows_turn else "frames"
            job = jobs[part]
            assert job is not None
            try:
                progress[part] = next(job)
                continue
            except StopIteration as done:
                results[part] = done.value
            except _Unreadable:
                pass
            jobs[part] = None
            if sink is not None:
                sink.end(part)
    finally:
        for part, job in jobs.items():
            if job is not None:
                job.close()
                if sink is not None:
                    sink.end(part)
    return results["frames"], results["rows"]


def validate_bundle(
    bundle: BundleRef,
    storage_options: StorageOptions | None = None,
    limits: ValidationLimits = ValidationLimits(),
    sink: ReadSink | None = None,
    hashes: dict[str, str] | None = None,
    threads: int | None = None,
) -> Report:
    """Read every file of ``bundle`` and return all findings.

    ``sink`` (optional) receives every frame block and block of rows as they are read, so a
    converter needs no second pass; what it wrote is worthless when the report is not ok.
    ``hashes`` (optional) receives the sha256 of each file this read took in whole (the
    others, e.g. README.md, are not read here). ``threads``: how many this read may keep busy
    (default ``cores.task_threads()``); with two or more, frames are read on a helper thread
    while rows are parsed. Bad or corrupt input is always a finding; only I/O failures
    (network, permissions) raise. A legacy four-file export is judged through its five-file
    view (``legacy.as_five_file``; no hashes then: its files are not the view's).
    """
    if bundle.is_legacy:
        with as_five_file(bundle, storage_options) as (view, legacy_findings):
            if view is None:
                return Report(bundle=bundle, findings=tuple(legacy_findings))
            report = validate_bundle(view, storage_options, limits, sink, threads=threads)
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
    opts = storage_options

    metadata: dict[str, Any] | None = None
    ts: np.ndarray | None = None
    rows: _Rows | None = None
    with contextlib.suppress(_Unreadable):
        if "metadata.json" in files:
            metadata = _validate_metadata(bundle, opts, out, hashes)
    with contextlib.suppress(_Unreadable):
        if "timestamps.npy" in files:
            ts = _validate_timestamps(bundle, opts, metadata, limits, out, hashes)
    parallel = (threads or task_threads()) >= 2
    if sink is not None:
        sink.start(ts, parallel)
    rows_out = _Collector(limits.max_per_code)
    frames_job = _frames_pass(bundle, opts, limits, sink, hashes) if "frames.npy" in files else None
    rows_job = (
        _rows_pass(bundle, opts, rows_out, sink, hashes, parallel)
        if "data.jsonl" in files
        else None
    )
    if parallel:  # frames on a helper thread while the rows are parsed here
        with ThreadPoolExecutor(1, thread_name_prefix="reacture-frames") as helper:
            frames_done = helper.submit(_finish, frames_job, sink, "frames")
            rows = _finish(rows_job, sink, "rows")
            seen = frames_done.result()
    else:
        seen, rows = _in_turns(frames_job, rows_job, sink)
    frames = seen if seen is not None else _Frames(out)
    if frames_job is not None:
        out.merge(frames.out)
    n_frames = frames.n_frames
    if ts is not None and n_frames is not None and ts.size != n_frames:
        out.add(
            finding(
                "FRAME_COUNT_MISMATCH",
                bundle.file_label("timestamps.npy"),
                f"timestamps.npy holds {ts.size} entries but frames.npy {n_frames} frames",
            )
        )
    out.merge(rows_out)

    frame_rows = FrameRows()
    if rows is not None and n_frames is not None:
        frame_rows, found = check_alignment(
            bundle, rows.periodic, n_frames, ts, limits.ts_tolerance_ms
        )
        out.extend(found)
        out.extend(unreferenced_frames(bundle, frame_rows))
    if rows is not None and metadata is not None:
        out.extend(
            check_counts(
                bundle, metadata, rows.n_rows, rows.kinds["action"], rows.n_unparsed, n_frames
            )
        )
    kinds = rows.kinds if rows is not None else Counter[str]()
    return Report(
        bundle=bundle,
        findings=out.result(),
        n_frames=n_frames,
        n_rows=rows.n_rows if rows is not None else None,
        n_periodic=kinds["periodic"],
        n_events=kinds["event"],
        n_actions=kinds["action"],
        blank_frames=frames.blank,
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
