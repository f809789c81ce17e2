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

import numpy as np

from reacture_convert import __version__
from reacture_convert.errors import is_transient
from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, is_damaged_member, open_file
from reacture_convert.ingest.files import hash_files, read_timestamps
from reacture_convert.ingest.jsonl import ParsedRow
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.ingest.npy import read_npy_header
from reacture_convert.ingest.validate import Report, ValidationLimits, validate_bundle
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.layout import session_parts
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.writers import FORMATS, writer_specs
from reacture_convert.writers.alignment import frame_digests, frames_table, write_frames_table
from reacture_convert.writers.rows import RowsWriter
from reacture_convert.writers.webdataset import SessionTar, WdsOptions, write_session_tar
from reacture_convert.writers.zarr import ZarrOptions, ZarrSessionWriter

__all__ = [
    "ConvertOptions",
    "SessionResult",
    "convert_bundle",
    "convert_session",
    "commit_result",
    "session_parts",
    "SessionWriter",
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
    return out.path(".staging", run_id or "direct", ".wds-sessions", f"{session}.tar")


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


def zarr_attributes(
    session: str, bundle: BundleRef, report: Report, hashes: Mapping[str, str]
) -> dict[str, Any]:
    """Group attributes: metadata, provenance and how the pictures are stored. No clock times,
    so the same bundle always gives the same bytes."""
    return {
        "session": session,
        "prefix": bundle.prefix,
        "metadata_session_id": report.metadata_session_id,
        "metadata": dict(report.metadata or {}),
        "provenance": {
            "source": bundle.source,
            "files": {role: ref.name for role, ref in sorted(bundle.files.items())},
            "sha256": dict(sorted(hashes.items())),
            "converter": "reacture-convert",
            "converter_version": __version__,
        },
        "frames": {
            "layout": "N x height x width x RGB, uint8, exact bytes of frames.npy",
            "orientation": "bottom-up",
            "note": "WebGL readPixels order: row 0 is the bottom of the picture; "
            "frames[:, ::-1] shows it right way up",
            "blank_frames": report.blank_frames,
        },
        "timestamps": {
            "unit": "ms since game start",
            "dtype": "float32, exact bytes of timestamps.npy",
        },
    }


class SessionWriter:
    """Writes a session's ``zarr`` format outputs into ``OUT/.staging/<key>`` while validation
    reads the bundle (it is the validator's ``ReadSink``): Zarr frames block by block with their
    sha256s and blank flags, and the rows Parquet row by row. ``finish`` adds what needs the
    whole report (timestamps, attributes, the alignment table); ``discard`` drops it all."""

    def __init__(
        self, bundle: BundleRef, session: str, out: Output, options: ConvertOptions, key: str
    ) -> None:
        self.bundle, self.session, self.out, self.options = bundle, session, out, options
        self.opts = options.input_options
        self.stage = out.staging(key)
        self.block_frames = options.zarr.block_frames
        self.digests: list[str] = []
        self.blank: list[bool] = []
        out.fs.makedirs(f"{self.stage}/rows", exist_ok=True)
        ref = bundle.files.get("frames.npy")
        header = None
        if ref is not None:
            with open_file(ref, self.opts) as f:
                header, _ = read_npy_header(f, ref.size, ref.name)
        n = header.shape[0] if header is not None and header.shape else 0
        self.zarr = ZarrSessionWriter(
            out.url_of(".staging", key, "zarr", f"{session}.zarr"),
            n,
            {},
            options.zarr,
            out.storage_options,
        )
        self._rows_file = out.fs.open(f"{self.stage}/rows/{session}.parquet", "wb")
        self.rows = RowsWriter(self._rows_file, session)

    def frames(self, start: int, block: np.ndarray) -> None:
        self.zarr.write_frames(start, block)
        self.digests.extend(frame_digests(block))
        lit = np.asarray(block.reshape(block.shape[0], -1).any(axis=1))
        self.blank.extend(not bool(v) for v in lit)

    def row(self, row: ParsedRow) -> None:
        self.rows.add(row)

    def finish(self, report: Report, hashes: Mapping[str, str], provenance: BundleRef) -> list[str]:
        """Complete the staged outputs of a valid bundle; return their parts."""
        self.rows.close()
        self._rows_file.close()
        ts = read_timestamps(self.bundle, self.opts)
        self.zarr.write_timestamps(ts)
        self.zarr.group.attrs.put(zarr_attributes(self.session, provenance, report, hashes))
        fs = self.out.fs
        fs.makedirs(f"{self.stage}/frames", exist_ok=True)
        table = frames_table(self.session, ts, report.frame_rows, self.digests, self.blank)
        with fs.open(f"{self.stage}/frames/{self.session}.parquet", "wb") as sink:
            write_frames_table(table, sink)
        return session_parts(self.session)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.rows.writer.close()
            self._rows_file.close()


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
    hashes, damaged = _hash_or_damage(bundle, opts) if not bundle.missing else ({}, [])
    if damaged:  # rejected, with every other finding validation has about the bundle
        report = validate_bundle(bundle, opts, options.limits)
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
    up_to_date: CatalogEntry | None = None
    if previous is not None and previous.status.is_live and hashes:
        outputs_there = all(out.exists(p) for p in previous.outputs)
        if dict(previous.hashes) == hashes and outputs_there:
            if previous.source != bundle.source:
                return SessionResult(
                    replace(
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
                )
            if set(parts) <= set(previous.outputs):
                up_to_date = replace(
                    previous,
                    status=Status.SKIPPED,
                    reason="unchanged since last run",
                    converted_at=_now(),
                    run_id=run_id,
                )
                if not merged:
                    return SessionResult(up_to_date)
        elif dict(previous.hashes) != hashes and not options.force:
            msg = (
                f"session {session!r} is already converted from {previous.source} with "
                "different file contents; pass --force to replace it"
            )
            return SessionResult(
                _entry(
                    bundle,
                    Status.CONFLICT,
                    reason=msg,
                    hashes=hashes,
                    run_id=run_id,
                    findings=(finding("CONFLICT", bundle.prefix, msg),),
                )
            )
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
        # One pass: validation reads the bundle and the writer (when there are per-session
        # outputs, not already up to date) writes them into staging as it goes.
        key = stage_key(session, run_id)
        writer = None
        if parts and up_to_date is None and not view.missing:
            # (a bundle missing a file is rejected, and was not hashed: its members may be
            # damaged, which only validation may read)
            out.clear_staging(key)
            writer = SessionWriter(view, session, out, options, key)
        report = validate_bundle(view, opts, options.limits, sink=writer)
        if legacy_findings:
            report = replace(report, findings=(*legacy_findings, *report.findings))
        if not report.ok:
            if writer is not None:
                writer.discard()
                out.clear_staging(key)
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
        session_tar = None
        if merged:
            session_tar = write_session_tar(
                view,
                report,
                session,
                out,
                session_tar_path(out, session, run_id),
                options=options.wds,
                input_options=opts,
            )
        if up_to_date is not None:
            return SessionResult(up_to_date, session_tar)
        outputs: list[str] = []
        if writer is not None:
            outputs = writer.finish(report, hashes, provenance=bundle)
    entry = _entry(
        bundle,
        Status.CONVERTED,
        hashes=hashes,
        outputs=tuple(outputs),
        run_id=run_id,
        **_from_report(report),
    )
    out.sync_staged(key, outputs)  # durable here, in the worker: the driver only renames
    return SessionResult(entry, session_tar, tuple(outputs), key)
