"""The driver's half of a run, shared by ``batch`` and ``watch``.

Sessions run as tasks (``session_task``, on any scheduler): each writes its session into
staging and makes it durable there; the driver, the only holder of OUT's lock, starts them,
renames what they staged into place (``commit_result``) and records each result in the catalog.
``SessionRunner`` keeps what is in flight: at most one task per session name (two bundles that
would write one session never run at once: the later one becomes its duplicate or conflict),
and turns each task's value, or the exception that replaced it, into a committed catalog entry.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

from reacture_convert import __version__
from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.run.convert import (
    ConvertOptions,
    SessionResult,
    commit_result,
    convert_session,
)

__all__ = [
    "Running",
    "SessionRunner",
    "archive_entries",
    "as_result",
    "forget_listings",
    "session_task",
]

Submit = Callable[..., None]  # submit(key, fn, *args): a scheduler's (or a pump's) submit


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


def session_task(
    bundle: BundleRef,
    out: Output,
    options: ConvertOptions,
    previous: CatalogEntry | None,
    run_id: str,
) -> SessionResult:
    """One session on a worker: with fresh listings, then ``convert_session``."""
    forget_listings(out, sorted({ref.url for ref in bundle.files.values()}), options.input_options)
    return convert_session(bundle, out, options, previous, run_id)


def as_result(bundle: BundleRef, value: Any, run_id: str) -> SessionResult:
    """A task's value, or the exception that replaced it (a worker died), as a result."""
    if isinstance(value, SessionResult):
        return value
    msg = f"{type(value).__name__}: {value}"
    return SessionResult(
        CatalogEntry(
            session=session_name(bundle.prefix),
            source=bundle.source,
            prefix=bundle.prefix,
            status=Status.FAILED,
            reason=msg,
            findings=(finding("CONVERT_FAILED", bundle.prefix, msg),),
            converter_version=__version__,
            converted_at=dt.datetime.now(dt.UTC),
            run_id=run_id,
        )
    )


def archive_entries(findings: Sequence[Finding], run_id: str) -> list[CatalogEntry]:
    """Error findings that belong to no bundle (an unreadable archive, a refused member, a
    missing input) become catalog rows of their own, one per archive or path."""
    by_source: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.severity is Severity.ERROR:
            by_source[f.file.split("!", 1)[0]].append(f)
    return [
        CatalogEntry(
            session=None,
            source=src,
            prefix=None,
            status=Status.REJECTED,
            reason=f"{fs[0].code} at {fs[0].location()}",
            findings=tuple(fs),
            converter_version=__version__,
            converted_at=None,
            run_id=run_id,
        )
        for src, fs in sorted(by_source.items())
    ]


@dataclass(frozen=True)
class Running:
    """A session task in flight: its bundle, when it started, and the caller's ``tag``."""

    bundle: BundleRef
    started: float
    tag: Any = None

    @property
    def name(self) -> str:
        return session_name(self.bundle.prefix)


class SessionRunner:
    """Session tasks in flight, and the commit of each one's result into the catalog.

    ``submit`` is the scheduler's (or a non-blocking pump's) ``submit(key, fn, *args)``.
    ``keep_skipped``: whether ``skipped`` results are written to the catalog (a batch records
    every bundle it saw; a watcher does not churn its catalog with them)."""

    def __init__(
        self,
        out: Output,
        catalog: Catalog,
        run_id: str,
        submit: Submit,
        *,
        keep_skipped: bool = True,
    ) -> None:
        self.out = out
        self.catalog = catalog
        self.run_id = run_id
        self.submit = submit
        self.keep_skipped = keep_skipped
        self.running: dict[Hashable, Running] = {}
        self._names: Counter[str] = Counter()

    def busy(self, name: str) -> bool:
        """A task for session ``name`` is in flight."""
        return self._names[name] > 0

    def __len__(self) -> int:
        return len(self.running)

    def start(
        self,
        key: Hashable,
        bundle: BundleRef,
        options: ConvertOptions,
        previous: CatalogEntry | None,
        tag: Any = None,
    ) -> None:
        """Submit ``bundle``'s task under ``key``; ``previous`` is its session's live row."""
        run = Running(bundle, time.monotonic(), tag)
        self.running[key] = run
        self._names[run.name] += 1
        self.submit(key, session_task, bundle, self.out, options, previous, self.run_id)

    def finish(self, key: Hashable, value: Any) -> tuple[Running, CatalogEntry, int]:
        """Commit the result of ``key``'s task (or the exception that replaced it) and record
        it in the catalog (logged at the caller's ``flush``); return it with its catalog row
        id. Raises ``LockedError`` when the lock (an S3 lease) is no longer this run's."""
        run = self.running.pop(key)
        self._names[run.name] -= 1
        result = as_result(run.bundle, value, self.run_id)
        if result.staged:
            self.catalog.guard()
        entry = commit_result(self.out, result)
        return run, entry, self.catalog.record(entry, keep_skipped=self.keep_skipped)
