"""Convert one bundle: judge it, write its outputs to staging, commit, describe it for the catalog.

``convert_bundle`` is the unit of work that batches fan out (one Dask task per bundle). It never
raises for a bad bundle or a failed write: every outcome is a ``CatalogEntry`` with a status and
its findings, so one session can never stop a batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Mapping
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
from reacture_convert.output.layout import session_parts, staged_session_tar
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.phases import reached
from reacture_convert.writers import FORMATS, writer_specs
from reacture_convert.writers.session import SessionWriter
from reacture_convert.writers.webdataset import SessionSamples, SessionTar, WdsOptions
from reacture_convert.writers.zarr import ZarrOptions

__all__ = [
    "ConvertOptions",
    "SessionResult",
    "convert_bundle",
    "convert_session",
    "commit_result",
    "session_parts",
    "session_tar_path",
    "FORMATS",
]

RETRIES = 2  # extra attempts after a transient I/O error


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert. ``formats``: names from ``FORMATS`` (``reacture_convert.writers``):
    ``zarr`` (Zarr + rows + alignment table) and/or ``wds`` (WebDataset shards)."""

    formats: tuple[str, ...] = ("zarr",)
    zarr: ZarrOptions = ZarrOptions()
    wds: WdsOptions = WdsOptions()
    force: bool = False
    limits: ValidationLimits = ValidationLimits()
    input_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        writer_specs(self.formats)  # ConfigError naming the formats there are


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


def session_tar_path(out: Output, session: str, run_id: str | None = None) -> str:
    """Where a session's sample tar waits for the shard merge (inside staging: never visible)."""
    return out.path(staged_session_tar(run_id, session))


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
    return {
        "metadata_session_id": report.metadata_session_id,
        "n_frames": report.n_frames,
        "n_rows": report.n_rows,
        "blank_frames": report.blank_frames,
        "findings": report.findings,
    }


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
    """Convert one bundle; never raises for bad input or I/O (a failure is a ``failed`` entry).
    Transient I/O errors are retried ``RETRIES`` times."""
    session = session_name(bundle.prefix)
    reached("reading", session)
    for attempt in range(RETRIES + 1):
        try:
            return _convert(bundle, session, out, options, previous, run_id)
        except Exception as e:  # noqa: BLE001 - a failed session is a result, not a crash
            _drop_staging(out, stage_key(session, run_id))
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
    I/O). Batches use ``convert_session`` in tasks and ``commit_result`` in the driver."""
    return commit_result(out, convert_session(bundle, out, options, previous, run_id))


def commit_result(out: Output, result: SessionResult) -> CatalogEntry:
    """Make a session's staged outputs visible (the driver does this: only the lock holder
    commits). A failed commit is a ``failed`` entry and leaves nothing visible half-done."""
    if not result.staged:
        return result.entry
    try:
        out.commit(result.stage_key, list(result.staged))
    except Exception as e:  # noqa: BLE001 - a failed commit is a result too
        _drop_staging(out, result.stage_key)
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
    return SessionResult(
        _entry(
            bundle,
            Status.REJECTED,
            reason=f"{damaged[0].code} at {damaged[0].location()}",
            run_id=run_id,
            **{**_from_report(report), "findings": found},
        )
    )


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


def _convert(
    bundle: BundleRef,
    session: str,
    out: Output,
    options: ConvertOptions,
    previous: CatalogEntry | None,
    run_id: str | None,
) -> SessionResult:
    opts = options.input_options
    specs = writer_specs(options.formats)
    parts = [part for spec in specs for part in spec.session_outputs(session)]
    merged = any(spec.merged for spec in specs)  # a sample tar for the batch's merge
    # The files are hashed in the read that converts them, unless the hashes decide first
    # (a session the catalog knows: skip, duplicate, conflict) or the read is of other files
    # (a legacy export is read through a five-file view of it).
    live = previous is not None and previous.status.is_live
    hash_first = not bundle.missing and (live or bundle.is_legacy)
    hashes: dict[str, str] = {}
    if hash_first:
        hashes, damaged = _hash_or_damage(bundle, opts)
        if damaged:
            return _damaged(bundle, damaged, options, run_id)
    up_to_date: CatalogEntry | None = None
    if previous is not None and live and hashes:
        decided = _previous_outcome(bundle, session, out, options, previous, hashes, parts, run_id)
        if decided is not None and (decided.status is not Status.SKIPPED or not merged):
            return SessionResult(decided)
        up_to_date = decided
    in_read: dict[str, str] | None = None if hash_first or bundle.missing else {}
    threads = task_threads()  # every core here; the worker's one thread on a Dask worker
    # A legacy four-file export is read through a five-file view of it (legacy.py); for a
    # current bundle the view is the bundle itself.
    with as_five_file(bundle, opts) as (view, legacy_findings):
        if view is None:
            first = next(f for f in legacy_findings if f.severity == "error")
            return SessionResult(
                _entry(
                    bundle,
                    Status.REJECTED,
                    reason=f"{first.code} at {first.location()}",
                    hashes=hashes,
                    run_id=run_id,
                    findings=tuple(legacy_findings),
                )
            )
        # One pass: validation reads the bundle, and the writers (the per-session outputs,
        # unless up to date; the samples for the shard merge) write into staging as it goes.
        key = stage_key(session, run_id)
        writer: SessionWriter | None = None
        samples: SessionSamples | None = None
        if not view.missing:
            # (a bundle missing a file is rejected, and was not hashed: its members may be
            # damaged, which only validation may read)
            if parts and up_to_date is None:
                out.clear_staging(key)
                writer = SessionWriter(view, session, out, options.zarr, opts, key, threads)
            if merged:
                tar_path = session_tar_path(out, session, run_id)
                samples = SessionSamples(session, out, tar_path, options.wds)
        sinks = [s for s in (writer, samples) if s is not None]

        def discard() -> None:
            if writer is not None:
                writer.discard()
                out.clear_staging(key)
            if samples is not None:
                samples.discard()

        try:
            report = validate_bundle(
                view,
                opts,
                options.limits,
                sink=ReadSinks(sinks) if sinks else None,
                hashes=in_read,
                threads=threads,
            )
        except BaseException:
            discard()
            raise
        if legacy_findings:
            report = replace(report, findings=(*legacy_findings, *report.findings))
        if in_read is not None:
            # what the read did not take in whole (README.md, and any file of a bundle that
            # is not valid) is hashed apart, as before conversion: a damaged member rejects
            rest = replace(
                bundle, files={r: f for r, f in bundle.files.items() if r not in in_read}
            )
            if not report.ok:
                rest = bundle
            more, damaged = _hash_or_damage(rest, opts)
            if damaged:
                discard()
                return _damaged(bundle, damaged, options, run_id)
            hashes = {**in_read, **more} if report.ok else more
        if not report.ok:
            discard()
            first = next(f for f in report.findings if f.severity == "error")
            return SessionResult(
                _entry(
                    bundle,
                    Status.REJECTED,
                    reason=f"{first.code} at {first.location()}",
                    hashes=hashes,
                    run_id=run_id,
                    **_from_report(report),
                )
            )
        try:
            session_tar = samples.finish(report) if samples is not None else None
            outputs: list[str] = []
            if up_to_date is None and writer is not None:
                outputs = writer.finish(report, hashes, provenance=bundle)
        except BaseException:
            discard()
            raise
        if up_to_date is not None:
            return SessionResult(up_to_date, session_tar)
    entry = _entry(
        bundle,
        Status.CONVERTED,
        hashes=dict(sorted(hashes.items())),
        outputs=tuple(outputs),
        run_id=run_id,
        **_from_report(report),
    )
    out.sync_staged(key, outputs)  # durable here, in the worker: the driver only renames
    return SessionResult(entry, session_tar, tuple(outputs), key)
