"""Run a batch: discover bundles, convert each as a task, keep the catalog, summarise.

The driver (this module) is the only writer of ``catalog.parquet``; tasks write their own
session's outputs to staging and commit them. The catalog is rewritten after every finished
session, so a killed run loses at most the sessions that were in flight, and a re-run skips what
is done (by source hashes) and redoes the rest.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fsspec.core import url_to_fs

from reacture_convert import __version__
from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.discover import discover
from reacture_convert.output.catalog import CatalogEntry, merge_entries, read_catalog, write_catalog
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.run.convert import (
    ConvertOptions,
    SessionResult,
    commit_result,
    convert_session,
)
from reacture_convert.run.scheduler import open_scheduler
from reacture_convert.writers.webdataset import SessionTar, WdsIndex, write_shards

__all__ = ["RunSummary", "run_convert", "forget_listings", "archive_entries",
           "as_result", "session_task"]


ProgressFn = Callable[[CatalogEntry, int, int], None]
DEFAULT_OPTIONS: ConvertOptions = ConvertOptions()


class StatusCounts:
    """``counts`` and ``ok`` of a run's catalog entries (shared by batch and watch summaries)."""

    entries: tuple[CatalogEntry, ...]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(e.status for e in self.entries))

    @property
    def ok(self) -> bool:
        return all(e.status.is_ok for e in self.entries)


@dataclass(frozen=True)
class RunSummary(StatusCounts):
    """What a run did: one entry per bundle (and per unreadable archive), plus stray findings."""

    out: str
    run_id: str
    entries: tuple[CatalogEntry, ...]
    findings: tuple[Finding, ...] = ()
    seconds: float = 0.0
    frames: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "run_id": self.run_id,
            "ok": self.ok,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "frames_per_second": round(self.frames / self.seconds, 1) if self.seconds else None,
            "sessions": [
                {"session": e.session, "prefix": e.prefix, "source": e.source, "status": e.status,
                 "reason": e.reason, "n_frames": e.n_frames, "n_rows": e.n_rows,
                 "outputs": list(e.outputs), "findings": [f.to_dict() for f in e.findings]}
                for e in self.entries
            ],
            "findings": [f.to_dict() for f in self.findings],
            **dict(self.extra),
        }


def _archive_entries(findings: Sequence[Finding], run_id: str) -> list[CatalogEntry]:
    """Error findings that belong to no bundle (an unreadable archive, a refused member, a
    missing input) become catalog rows of their own, one per archive or path."""
    by_source: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.severity is Severity.ERROR:
            by_source[f.file.split("!", 1)[0]].append(f)
    return [
        CatalogEntry(session=None, source=src, prefix=None, status=Status.REJECTED,
                     reason=f"{fs[0].code} at {fs[0].location()}", findings=tuple(fs),
                     converter_version=__version__, converted_at=None, run_id=run_id)
        for src, fs in sorted(by_source.items())
    ]


def _as_result(bundle: BundleRef, value: Any, run_id: str) -> SessionResult:
    """A task's value, or the exception that replaced it (a worker died), as a result."""
    if isinstance(value, SessionResult):
        return value
    msg = f"{type(value).__name__}: {value}"
    return SessionResult(CatalogEntry(
        session=session_name(bundle.prefix), source=bundle.source, prefix=bundle.prefix,
        status=Status.FAILED, reason=msg, findings=(finding("CONVERT_FAILED", bundle.prefix, msg),),
        converter_version=__version__, converted_at=dt.datetime.now(dt.UTC), run_id=run_id))


def forget_listings(out: Output, urls: Sequence[str], input_options: Mapping[str, Any]) -> None:
    """Drop the directory listings fsspec caches per filesystem instance (s3fs and others).

    Instances live as long as the process, so a notebook, a service or a worker of a standing
    Dask cluster would otherwise act on stale listings: miss new uploads, read a replaced
    object with its old size, or think an output is (not) there. Called before every run and
    by every session task; only costs a few listing requests.
    """
    out.fs.invalidate_cache()
    for url in urls:
        if "://" in url or "::" in url:
            try:
                url_to_fs(url, **dict(input_options))[0].invalidate_cache()
            except (OSError, ValueError, ImportError):
                pass  # discover reports an input it cannot open


def _session_task(
    bundle: BundleRef, out: Output, options: ConvertOptions, previous: CatalogEntry | None,
    run_id: str,
) -> SessionResult:
    """One session on a worker: with fresh listings, then ``convert_session``."""
    forget_listings(out, sorted({ref.url for ref in bundle.files.values()}), options.input_options)
    return convert_session(bundle, out, options, previous, run_id)


def run_convert(
    paths: Sequence[str],
    out: Output,
    options: ConvertOptions = DEFAULT_OPTIONS,
    *,
    scheduler: str = "auto",
    workers: int | None = None,
    progress: ProgressFn | None = None,
    wait_for_lock: bool = False,
    stop_on_error: bool = False,
) -> RunSummary:
    """Convert every bundle found under ``paths`` into ``out``; never raises for bad input.

    Sessions run as tasks on ``scheduler`` (see ``reacture_convert.run.scheduler``); bundles that
    would get the same session name run after the first of them, which wins. With ``wds`` in
    the formats, the sessions' sample tars are merged into shards at the end.
    ``stop_on_error``: after the first bundle that is not converted/skipped, start no new
    session (the job files' ``on_error = "stop"``); sessions already running finish (none on
    the ``sync`` scheduler), no shards are merged, and the summary lists fewer bundles.
    ``progress(entry, sessions_done, sessions_total)`` is called after each session.
    """
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    wds_index: WdsIndex | None = None
    with lock_output(out, wait=wait_for_lock):
        forget_listings(out, paths, options.input_options)
        found = discover(list(paths), options.input_options)
        catalog = read_catalog(out)
        done = {e.session: e for e in catalog if e.status.is_live and e.session}
        out.clear_staging()

        groups: dict[str, list[BundleRef]] = defaultdict(list)
        for b in found.bundles:
            groups[session_name(b.prefix)].append(b)
        waiting = {name: sorted(bs, key=lambda b: b.source) for name, bs in groups.items()}

        entries: list[CatalogEntry] = _archive_entries(found.findings, run_id)
        session_tars: dict[str, SessionTar] = {}
        total = len(found.bundles)

        # Tasks are fed a few at a time (bounded in-flight work, and a stop policy that can
        # take effect: one at a time on ``sync``, so ``stop`` is exact there); a name's later
        # bundles wait for its first, which wins the name.
        ready = deque((name, waiting[name].pop(0), options, done.get(name))
                      for name in sorted(waiting))
        stopped = False
        with open_scheduler(scheduler, workers, n_tasks=total) as sched:
            in_flight = finished = 0

            def feed() -> None:
                nonlocal in_flight
                while ready and in_flight < sched.capacity and not stopped:
                    name, bundle, opts, prev = ready.popleft()
                    sched.submit((name, bundle), _session_task, bundle, out, opts, prev, run_id)
                    in_flight += 1

            feed()
            for (name, bundle), value in sched.results():
                in_flight -= 1
                finished += 1
                result = _as_result(bundle, value, run_id)
                entry = commit_result(out, result)
                entries.append(entry)
                if result.session_tar is not None and entry.status.is_live:
                    session_tars[name] = result.session_tar
                write_catalog(out, merge_entries(catalog, entries))
                if progress is not None:
                    progress(entry, finished, total)
                if stop_on_error and not entry.status.is_ok:
                    stopped = True
                if waiting.get(name):
                    # the rest of a name's bundles: duplicates of the winner, or conflicts
                    peer = entry if entry.status.is_live else done.get(name)
                    nxt = waiting[name].pop(0)
                    ready.appendleft((name, nxt, replace(options, force=False), peer))
                feed()
        if not found.bundles:
            write_catalog(out, merge_entries(catalog, entries))
        if "wds" in options.formats and session_tars and not stopped:
            tars = [session_tars[k] for k in sorted(session_tars)]
            wds_index = write_shards(out, tars, options.wds)
        out.clear_staging()
    frames = sum(e.n_frames or 0 for e in entries if e.status == Status.CONVERTED)
    extra: dict[str, Any] = {}
    if wds_index is not None:
        extra["wds"] = {"shards": len(wds_index.shards), "samples": wds_index.total_samples,
                        "index": out.url_of("wds", "index.json")}
    if stopped:
        extra["stopped"] = f"on_error=stop: {total - finished} bundle(s) not started"
    return RunSummary(out=out.url, run_id=run_id, entries=tuple(sorted(entries, key=_order)),
                      findings=found.findings, seconds=time.perf_counter() - started,
                      frames=frames, extra=extra)


def _order(e: CatalogEntry) -> tuple[str, str, str]:
    return (e.session or "", e.source, e.prefix or "")


# The watcher (watch.py) runs sessions exactly like a batch: the same task, the same reading of
# a task's value, the same catalog rows for archives that belong to no bundle.
archive_entries, as_result, session_task = _archive_entries, _as_result, _session_task
