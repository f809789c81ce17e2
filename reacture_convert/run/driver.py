"""The driver's half of a run, shared by ``batch`` and ``watch``.

Sessions run as tasks (``session_task``, on any scheduler): each writes its session into
staging and makes it durable there; the driver, the only holder of OUT's lock, starts them,
renames what they staged into place (``commit_result``) and records each result in the catalog.
``SessionRunner`` keeps what is in flight: at most one task per session name (two bundles that
would write one session never run at once: the later one becomes its duplicate or conflict),
and turns each task's value, or the exception that replaced it, into a committed catalog entry;
but a task that ended on OUT's storage failing (``Output.fault``: disk full, read-only, the
object store refusing a write) ends the run: its ``StorageError`` is raised, never recorded.
Sessions that are likely to be skipped (their session has a live row to compare with) can run
several to a task (``start_group``): a skip costs a hash, and a scheduler's round trip per
session would cost more than that.

An interrupted run's tasks are dropped, never committed (``abandon_run``). One that runs on a
thread of this process (the ``sync`` scheduler, Dask ``threads``) cannot be killed: its output
is fenced instead, so that its next write into staging raises ``Abandoned`` and the task ends
there, discarding what it staged.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fsspec.core import url_to_fs

from reacture_convert import __version__
from reacture_convert.errors import StorageError
from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Keys, NewFile, Output
from reacture_convert.run.convert import (
    ConvertOptions,
    SessionResult,
    commit_result,
    convert_session,
)
from reacture_convert.writers.webdataset import SessionTar

__all__ = [
    "Abandoned",
    "abandon_run",
    "Finished",
    "Keyed",
    "Running",
    "SessionRunner",
    "archive_entries",
    "as_result",
    "forget_listings",
    "group_task",
    "session_task",
    "Task",
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


_ABANDONED: set[str] = set()  # runs (ids) whose tasks in this process must write no more


class Abandoned(Exception):  # noqa: N818 - what happened to the task, not an error of its own
    """The task's run was interrupted: it stops at its next write into staging."""


def abandon_run(run_id: str) -> None:
    """Fence run ``run_id``'s session tasks that still run in this process: their next write
    raises ``Abandoned``. (Tasks in worker processes are the scheduler's to kill.)"""
    _ABANDONED.add(run_id)


@dataclass(frozen=True)
class _Fenced(Output):
    """``Output`` for a task of run ``run_id``: every new file or folder is refused once the
    run is abandoned (``abandon_run``)."""

    run_id: str = field(default="", kw_only=True)

    def check(self) -> None:
        if self.run_id in _ABANDONED:
            raise Abandoned(f"run {self.run_id} was interrupted; its staging is dropped")

    def keys(self, path: str) -> Keys:
        self.check()
        return _FencedKeys(super().keys(path), self.check)

    def create(self, path: str) -> NewFile:
        self.check()
        return super().create(path)

    def parquet_sink(self, path: str) -> Any:
        self.check()
        return super().parquet_sink(path)

    def makedirs(self, path: str) -> None:
        self.check()
        super().makedirs(path)


class _FencedKeys(Keys):
    def __init__(self, keys: Keys, check: Callable[[], None]) -> None:
        super().__init__(keys.root, keys.fs)
        self.check = check

    def put(self, key: str, data: bytes) -> None:
        self.check()
        super().put(key, data)


def session_task(
    bundle: BundleRef,
    out: Output,
    options: ConvertOptions,
    previous: CatalogEntry | None,
    run_id: str,
) -> SessionResult:
    """One session on a worker: with fresh listings, then ``convert_session`` (its writes
    fenced: see ``abandon_run``)."""
    forget_listings(out, sorted({ref.url for ref in bundle.files.values()}), options.input_options)
    fenced = _Fenced(out.url, out.storage_options, out.stage_dir, run_id=run_id)
    return convert_session(bundle, fenced, options, previous, run_id)


class Task(NamedTuple):
    """A session to convert: its bundle, how, and its session's previous (live) row."""

    bundle: BundleRef
    options: ConvertOptions
    previous: CatalogEntry | None


class Keyed(NamedTuple):
    """A session task under the driver's ``key`` for it."""

    key: Hashable
    task: Task


def group_task(tasks: Sequence[Task], out: Output, run_id: str) -> list[Any]:
    """Several sessions in one task, one after the other; each one's result, or the exception
    that replaced it."""
    values: list[Any] = []
    for task in tasks:
        try:
            values.append(session_task(task.bundle, out, task.options, task.previous, run_id))
        except Exception as e:  # noqa: BLE001 - handed to the driver as that session's value
            values.append(e)
    return values


def as_result(bundle: BundleRef, value: Any, run_id: str) -> SessionResult:
    """A task's value, or the exception that replaced it (a worker died), as a result; OUT's
    storage failing (a ``StorageError`` from ``Output.fault``) is raised: no session failed."""
    if isinstance(value, SessionResult):
        return value
    if isinstance(value, StorageError) and value.output is not None:
        raise value
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
        # a path that is not there is the command line's problem, not a bundle's: said in the
        # summary, never a catalog row (a typo must not stay in the catalog for ever)
        if f.severity is Severity.ERROR and f.code != "INPUT_NOT_FOUND":
            by_source[f.file.split("!", 1)[0]].append(f)
    return [
        CatalogEntry.rejected(src, None, fs, session=None, converted_at=None, run_id=run_id)
        for src, fs in sorted(by_source.items())
    ]


@dataclass(frozen=True)
class Finished:
    """A session's task, done: its run, committed entry, catalog row id, and its sample tar
    waiting for the shard merge (when asked for)."""

    run: Running
    entry: CatalogEntry
    row: int
    session_tar: SessionTar | None = None


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
        self.groups: dict[Hashable, list[Hashable]] = {}  # a group task's key -> its sessions'
        self._names: Counter[str] = Counter()

    def busy(self, name: str) -> bool:
        """A task for session ``name`` is in flight."""
        return self._names[name] > 0

    def __len__(self) -> int:
        """Sessions in flight."""
        return len(self.running)

    @property
    def tasks(self) -> int:
        """Tasks in flight (a group counts once)."""
        return len(self.running) - sum(len(keys) - 1 for keys in self.groups.values())

    def start(
        self,
        key: Hashable,
        bundle: BundleRef,
        options: ConvertOptions,
        previous: CatalogEntry | None,
        tag: Any = None,
    ) -> None:
        """Submit ``bundle``'s task under ``key``; ``previous`` is its session's live row."""
        self._add(key, bundle, tag)
        self.submit(key, session_task, bundle, self.out, options, previous, self.run_id)

    def start_group(self, keyed: Sequence[Keyed]) -> None:
        """Submit several sessions as one task (``group_task``); ``finish_task`` hands back
        each one's result."""
        if len(keyed) == 1:
            key, task = keyed[0]
            self.start(key, task.bundle, task.options, task.previous)
            return
        group = ("group", keyed[0].key)
        for one in keyed:
            self._add(one.key, one.task.bundle, None)
        self.groups[group] = [one.key for one in keyed]
        tasks = [one.task for one in keyed]
        self.submit(group, group_task, tasks, self.out, self.run_id)

    def _add(self, key: Hashable, bundle: BundleRef, tag: Any) -> None:
        run = Running(bundle, time.monotonic(), tag)
        self.running[key] = run
        self._names[run.name] += 1

    def finish_task(self, key: Hashable, value: Any) -> list[Finished]:
        """``finish`` every session of the task ``key`` (one, or a group's)."""
        keys = self.groups.pop(key, None)
        if keys is None:
            return [self.finish(key, value)]
        whole = isinstance(value, list) and len(value) == len(keys)
        values = value if whole else [value] * len(keys)  # a dead worker fails them all
        return [self.finish(k, v) for k, v in zip(keys, values, strict=True)]

    def finish(self, key: Hashable, value: Any) -> Finished:
        """Commit the result of ``key``'s session (or the exception that replaced it) and
        record it in the catalog (logged at the caller's ``flush``). Raises ``LockedError``
        when the lock (an S3 lease) is no longer this run's."""
        run = self.running.pop(key)
        self._names[run.name] -= 1
        if not self._names[run.name]:
            del self._names[run.name]
        result = as_result(run.bundle, value, self.run_id)
        if result.staged:
            self.catalog.guard()
        entry = commit_result(self.out, result)
        row = self.catalog.record(entry, keep_skipped=self.keep_skipped)
        tar = result.session_tar if entry.status.is_live else None
        return Finished(run, entry, row, tar)
