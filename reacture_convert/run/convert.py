"""Convert one bundle: judge it, write its outputs to staging, commit, describe it for the catalog.

``convert_bundle`` is the unit of work that batches fan out (one Dask task per bundle). It never
raises for a bad bundle or a session that cannot be written: every outcome is a ``CatalogEntry``
with a status and its findings, so one bad session can never stop a batch. What does stop it is
OUT's storage failing (disk full, read-only, permission denied, the object store refusing a
write: ``Output.fault``): no bundle is to blame, so that is raised, after the session's staging
is dropped, as the ``StorageError`` that ends the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reacture_convert import __version__
from reacture_convert.cores import task_threads
from reacture_convert.errors import is_transient
from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, is_damaged_member
from reacture_convert.ingest.files import hash_files
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.ingest.validate import ReadSinks, Report, ValidationLimits, validate_bundle
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.layout import session_parts
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.phases import reached
from reacture_convert.run.progress import FrameCounter, emitter
from reacture_convert.writers import (
    FORMATS,
    FormatWriter,
    SessionContext,
    WriterSpec,
    Written,
    session_writers,
    writer_specs,
)
from reacture_convert.writers.webdataset import SessionTar, WdsOptions
from reacture_convert.writers.zarr import ZarrOptions

__all__ = [
    "ConvertOptions",
    "SessionResult",
    "convert_bundle",
    "convert_session",
    "commit_result",
    "session_parts",
    "FORMATS",
]

RETRIES = 2  # extra attempts after a transient I/O error


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert. ``formats``: names from ``FORMATS`` (``reacture_convert.writers``):
    ``zarr`` (Zarr + rows + alignment table) and/or ``wds`` (WebDataset shards); each format's
    own options are the field named as the format."""

    formats: tuple[str, ...] = ("zarr",)
    zarr: ZarrOptions = ZarrOptions()
    wds: WdsOptions = WdsOptions()
    force: bool = False
    readmit: frozenset[str] = frozenset()  # removed sessions to convert again (not skip)
    allow_other_files: bool = False  # write into a folder that holds other files (output.claim)
    limits: ValidationLimits = ValidationLimits()
    input_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        writer_specs(self.formats)  # ConfigError naming the formats there are

    def writer_options(self, name: str) -> Any:
        """The options of format ``name`` (what its ``WriterSpec.open`` takes)."""
        return getattr(self, name)


@dataclass(frozen=True)
class SessionResult:
    """What a session task hands back to the driver: its catalog entry and, when shards were
    asked for, the session's sample tar waiting to be merged."""

    entry: CatalogEntry
    session_tar: SessionTar | None = None
    staged: tuple[str, ...] = ()  # outputs waiting in staging for the driver's commit
    stage_key: str = ""  # their folder under OUT/.staging/


def stage_key(session: str, run_id: str | None) -> str:
    """A session's staging folder, private to one run: a straggling task of a killed run can
    only ever write into its own run's folder, which the next run deletes unseen."""
    return f"{run_id or 'direct'}/{session}"


def _hash_or_damage(
    bundle: BundleRef, opts: StorageOptions | None
) -> tuple[dict[str, str], list[Finding]]:
    """``hash_files``, except that an archive member too damaged to be read to its end (bad
    CRC, broken compressed stream) is an ``ARCHIVE_UNREADABLE`` finding that rejects the bundle,
    not an error that would be retried as I/O and end the session as ``failed``."""
    hashes: dict[str, str] = {}
    damaged: list[Finding] = []
    for role, ref in sorted(bundle.files.items()):
        try:
            hashes.update(hash_files(replace(bundle, files={role: ref}), opts))
        except Exception as e:
            if not is_damaged_member(ref, e):
                raise
            damaged.append(
                finding(
                    "ARCHIVE_UNREADABLE",
                    ref.name,
                    f"{ref.label()} cannot be read ({type(e).__name__}: {e}); the archive is "
                    "damaged: re-create or re-download it",
                )
            )
    return hashes, damaged


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _entry(bundle: BundleRef, status: Status, **kw: Any) -> CatalogEntry:
    return CatalogEntry(
        session=kw.pop("session", session_name(bundle.prefix)),
        source=bundle.source,
        prefix=bundle.prefix,
        status=status,
        converter_version=__version__,
        converted_at=_now(),
        **kw,
    )


def _from_report(report: Report) -> dict[str, Any]:
    """A catalog entry's fields from a validation report, but its findings."""
    return {
        "metadata_session_id": report.metadata_session_id,
        "n_frames": report.n_frames,
        "n_rows": report.n_rows,
        "blank_frames": report.blank_frames,
    }


def _rejected(
    bundle: BundleRef, findings: Iterable[Finding], run_id: str | None, **fields: Any
) -> SessionResult:
    """Rejected, the first error finding its reason."""
    return SessionResult(
        CatalogEntry.rejected(
            bundle.source,
            bundle.prefix,
            findings,
            session=session_name(bundle.prefix),
            converted_at=_now(),
            run_id=run_id,
            **fields,
        )
    )


def _drop_staging(out: Output, key: str) -> None:
    """Best effort after a failure: the next run clears what is left anyway."""
    with contextlib.suppress(Exception):
        out.clear_staging(key)


def convert_session(
    bundle: BundleRef,
    out: Output,
    options: ConvertOptions = ConvertOptions(),
    previous: CatalogEntry | None = None,
    run_id: str | None = None,
) -> SessionResult:
    """Convert one bundle; never raises for bad input or I/O (a failure is a ``failed`` entry)
    but for OUT's storage failing: that ``StorageError`` (``Output.fault``) ends the run.
    Transient I/O errors are retried ``RETRIES`` times. A Zarr ``shard_frames="auto"`` is
    settled for ``out`` here (``ZarrOptions.for_output``: sharded on an object store)."""
    session = session_name(bundle.prefix)
    reached("reading", session)
    options = replace(options, zarr=options.zarr.for_output(out.is_local))
    for attempt in range(RETRIES + 1):
        try:
            return _convert(bundle, session, out, options, previous, run_id)
        except Exception as e:  # noqa: BLE001 - a failed session is a result, not a crash
            key = stage_key(session, run_id)
            _drop_staging(out, key)
            fault = out.fault(e, writing=out.staging(key))
            if fault is not None:
                raise fault from e
            if is_transient(e) and attempt < RETRIES:
                time.sleep(0.5 * 2**attempt)
                continue
            msg = f"{type(e).__name__}: {e}"
            return SessionResult(
                _entry(
                    bundle,
                    Status.FAILED,
                    reason=msg,
                    run_id=run_id,
                    findings=(finding("CONVERT_FAILED", bundle.prefix, msg),),
                )
            )
    raise AssertionError("unreachable")


def convert_bundle(
    bundle: BundleRef,
    out: Output,
    options: ConvertOptions = ConvertOptions(),
    previous: CatalogEntry | None = None,
    run_id: str | None = None,
) -> CatalogEntry:
    """Convert and commit one bundle; return its catalog entry (never raises for bad input or
    I/O, but for OUT's storage failing: ``Output.fault``). Batches use ``convert_session`` in
    tasks and ``commit_result`` in the driver."""
    return commit_result(out, convert_session(bundle, out, options, previous, run_id))


def commit_result(out: Output, result: SessionResult) -> CatalogEntry:
    """Make a session's staged outputs visible (the driver does this: only the lock holder
    commits). A failed commit is a ``failed`` entry and leaves nothing visible half-done; OUT's
    storage failing (``Output.fault``) is raised, the session's staging dropped."""
    if not result.staged:
        return result.entry
    try:
        out.commit(result.stage_key, list(result.staged))
    except Exception as e:  # noqa: BLE001 - a failed commit is a result too
        _drop_staging(out, result.stage_key)
        fault = out.fault(e, writing=out.staging(result.stage_key))
        if fault is not None:
            raise fault from e
        msg = f"{type(e).__name__}: {e}"
        return replace(
            result.entry,
            status=Status.FAILED,
            reason=msg,
            outputs=(),
            findings=(
                *result.entry.findings,
                finding("CONVERT_FAILED", result.entry.prefix or "", msg),
            ),
        )
    return result.entry


def _damaged(
    bundle: BundleRef, damaged: list[Finding], options: ConvertOptions, run_id: str | None
) -> SessionResult:
    """Rejected: a member too damaged to read, with every other finding validation has."""
    report = validate_bundle(bundle, options.input_options, options.limits)
    seen = {(d.code, d.file) for d in damaged}
    found = (*damaged, *(f for f in report.findings if (f.code, f.file) not in seen))
    return _rejected(bundle, found, run_id, **_from_report(report))


def _previous_outcome(
    bundle: BundleRef,
    session: str,
    out: Output,
    options: ConvertOptions,
    previous: CatalogEntry,
    hashes: Mapping[str, str],
    parts: list[str],
    run_id: str | None,
) -> CatalogEntry | None:
    """What the catalog's entry for this session decides, if anything: a duplicate, a conflict,
    or up to date (``SKIPPED``); None: convert it."""
    outputs_there = all(out.exists(p) for p in previous.outputs)
    if dict(previous.hashes) == hashes and outputs_there:
        if previous.source != bundle.source:
            return replace(
                previous,
                source=bundle.source,
                status=Status.DUPLICATE,
                reason=f"same bytes as {previous.source}",
                outputs=(),
                findings=(
                    finding(
                        "DUPLICATE_BUNDLE",
                        bundle.prefix,
                        f"identical to the bundle in {previous.source}; converted once",
                    ),
                ),
                converted_at=_now(),
                run_id=run_id,
            )
        if set(parts) <= set(previous.outputs):
            return replace(
                previous,
                status=Status.SKIPPED,
                reason="unchanged since last run",
                converted_at=_now(),
                run_id=run_id,
            )
    elif dict(previous.hashes) != hashes and not options.force:
        msg = (
            f"session {session!r} is already converted from {previous.source} with "
            "different file contents; pass --force to replace it"
        )
        return _entry(
            bundle,
            Status.CONFLICT,
            reason=msg,
            hashes=hashes,
            run_id=run_id,
            findings=(finding("CONFLICT", bundle.prefix, msg),),
        )
    return None


def _kept_out(bundle: BundleRef, removed: CatalogEntry, run_id: str | None) -> CatalogEntry:
    """The ``removed`` row of a bundle whose bytes are those of a removed session: the row
    as it stands (the catalog keeps it unchanged), or one like it for another copy of them."""
    if removed.key == (bundle.source, bundle.prefix):
        return replace(removed, converted_at=_now(), run_id=run_id)
    return replace(
        removed,
        source=bundle.source,
        prefix=bundle.prefix,
        reason=f"same bytes as the removed {removed.source}: {removed.reason or ''}".rstrip(),
        converted_at=_now(),
        run_id=run_id,
    )


def _convert(
    bundle: BundleRef,
    session: str,
    out: Output,
    options: ConvertOptions,
    previous: CatalogEntry | None,
    run_id: str | None,
) -> SessionResult:
    specs = session_writers(options.formats)
    parts = [part for spec in specs for part in spec.session_outputs(session)]
    merged = any(spec.merged for spec in specs)  # a sample tar for the batch's merge
    # The files are hashed in the read that converts them, unless the hashes decide first
    # (a session the catalog knows: skip, duplicate, conflict) or the read is of other files
    # (a legacy export is read through a five-file view of it).
    live = previous is not None and previous.status.is_live
    removed = previous is not None and previous.status is Status.REMOVED
    if removed and session in options.readmit:
        previous, removed = None, False  # converted again: its row replaces the removed one
    hash_first = not bundle.missing and (live or removed or bundle.is_legacy)
    hashes: dict[str, str] = {}
    if hash_first:
        hashes, damaged = _hash_or_damage(bundle, options.input_options)
        if damaged:
            return _damaged(bundle, damaged, options, run_id)
    if previous is not None and removed and hashes:
        if dict(previous.hashes) == hashes:
            return SessionResult(_kept_out(bundle, previous, run_id))
        previous = None  # other bytes under a removed name: a new session
    up_to_date: CatalogEntry | None = None
    if previous is not None and live and hashes:
        decided = _previous_outcome(bundle, session, out, options, previous, hashes, parts, run_id)
        if decided is not None and (decided.status is not Status.SKIPPED or not merged):
            return SessionResult(decided)
        up_to_date = decided
    read = _Read(
        bundle, session, out, options, run_id, hashes, None if hash_first or bundle.missing else {}
    )
    return _read_and_write(read, specs, up_to_date)


@dataclass(frozen=True)
class _Read:
    """A session's read, as ``_convert`` decided it: ``hashes``, the files' sha256 taken before
    it; ``in_read``, None or where the read puts the sha256 it takes."""

    bundle: BundleRef
    session: str
    out: Output
    options: ConvertOptions
    run_id: str | None
    hashes: dict[str, str]
    in_read: dict[str, str] | None


def _read_and_write(
    read: _Read, specs: Sequence[WriterSpec], up_to_date: CatalogEntry | None
) -> SessionResult:
    """One pass: validation reads the bundle, and the formats' writers (the per-session
    outputs, unless up to date; a merged format's samples always) write into staging as it
    goes; then the outcome, committed by the driver."""
    bundle, opts, run_id = read.bundle, read.options.input_options, read.run_id
    threads = task_threads()  # every core here; the worker's one thread on a Dask worker
    # A legacy four-file export is read through a five-file view of it (legacy.py); for a
    # current bundle the view is the bundle itself.
    with as_five_file(bundle, opts) as (view, legacy_findings):
        if view is None:
            return _rejected(bundle, legacy_findings, run_id, hashes=read.hashes)
        key = stage_key(read.session, run_id)
        stage = read.out.staging_output()  # (OUT, or the local folder it is staged in)
        context = SessionContext(view, bundle, read.session, stage, key, run_id, opts, threads)
        # (a bundle missing a file is rejected, and was not hashed: its members may be
        # damaged, which only validation may read)
        writers = [] if view.missing else _open_writers(context, specs, read.options, up_to_date)
        report = _validate(context, writers, read, legacy_findings)
        hashes = read.hashes
        if read.in_read is not None:
            hashes, damaged = _hash_rest(bundle, report, read.in_read, opts)
            if damaged:
                _discard(writers)
                return _damaged(bundle, damaged, read.options, run_id)
        if not report.ok:
            _discard(writers)
            return _rejected(bundle, report.findings, run_id, hashes=hashes, **_from_report(report))
        written = _complete(writers, report, hashes)
        if up_to_date is not None:  # only the merged format's samples were written: durable too
            if written.session_tar is not None:
                read.out.sync_staged(key, [])
            return SessionResult(up_to_date, written.session_tar)
    entry = _entry(
        bundle,
        Status.CONVERTED,
        hashes=dict(sorted(hashes.items())),
        outputs=written.outputs,
        files=written.files,
        run_id=run_id,
        findings=report.findings,
        **_from_report(report),
    )
    read.out.sync_staged(key, list(written.outputs))  # durable here: the driver only renames
    return SessionResult(entry, written.session_tar, written.outputs, key)


def _open_writers(
    context: SessionContext,
    specs: Sequence[WriterSpec],
    options: ConvertOptions,
    up_to_date: CatalogEntry | None,
) -> list[FormatWriter]:
    """The writers of the formats asked for, in ``WRITERS`` order (the first one sizes the
    read's frame blocks); with the session up to date, only those of merged formats."""
    return [
        spec.open(context, options.writer_options(spec.name))
        for spec in specs
        if spec.merged or up_to_date is None
    ]


def _discard(writers: Sequence[FormatWriter]) -> None:
    for writer in writers:
        writer.discard()


def _validate(
    context: SessionContext,
    writers: Sequence[FormatWriter],
    read: _Read,
    legacy_findings: Sequence[Finding],
) -> Report:
    """Validate the bundle as it is read, the writers taking what is read; a legacy export's
    findings come first. An exception discards the writers' outputs."""
    options = read.options
    send = emitter(read.run_id) if writers else None  # the run's progress, if it listens
    counter = [FrameCounter(read.session, send)] if send is not None else []
    try:
        report = validate_bundle(
            context.view,
            options.input_options,
            options.limits,
            sink=ReadSinks([*writers, *counter]) if writers else None,
            hashes=read.in_read,
            threads=context.threads,
        )
    except BaseException:
        _discard(writers)
        raise
    if legacy_findings:
        report = replace(report, findings=(*legacy_findings, *report.findings))
    return report


def _hash_rest(
    bundle: BundleRef, report: Report, in_read: dict[str, str], opts: StorageOptions | None
) -> tuple[dict[str, str], list[Finding]]:
    """The hashes after a read that took some: what the read did not take in whole (README.md,
    and any file of a bundle that is not valid) is hashed apart, as before conversion; a
    damaged member rejects the bundle."""
    rest = replace(bundle, files={r: f for r, f in bundle.files.items() if r not in in_read})
    if not report.ok:
        rest = bundle
    more, damaged = _hash_or_damage(rest, opts)
    return ({**in_read, **more} if report.ok else more), damaged


def _complete(writers: Sequence[FormatWriter], report: Report, hashes: dict[str, str]) -> Written:
    """Every writer complete, as one: their staged outputs, and the merged format's samples.
    An exception discards them all."""
    try:
        done = [writer.complete(report, hashes) for writer in writers]
    except BaseException:
        _discard(writers)
        raise
    tars = [w.session_tar for w in done if w.session_tar is not None]
    return Written(
        tuple(p for w in done for p in w.outputs),
        tars[0] if tars else None,
        tuple(f for w in done for f in w.files),
    )
