"""Watch a drop folder or a bucket prefix and convert bundles as their uploads complete.

``run_watch`` keeps polling INCOMING (local folders or fsspec URLs) with ``discover`` and
converts every bundle that is *ready* through the batch's own code path (``run.driver``): a
session task on a scheduler, its commit and its catalog row by this driver, the only writer of
OUT.

When a bundle is ready (never act on an upload in progress):

- a bundle in a folder: all its files are there, and no file's size, modification time or
  ETag has changed for ``settle`` seconds;
- a bundle inside an archive: the archive opens cleanly (``discover`` lists it without
  ``ARCHIVE_UNREADABLE``) and its size and modification time have settled. Whatever the
  settled archive lacks is then judged like any bundle (a missing file rejects it).

"Unchanged for ``settle`` seconds" counts from the newest modification time the store reports
(the upload's own clock: a restarted watcher or a ``--once`` run acts on old files at once) and
at the latest from the moment this watcher saw the files change. A bundle that stays incomplete,
or an archive that stays unreadable, for ``incomplete_timeout`` seconds without any change is
recorded in the catalog as ``rejected`` with its ``BUNDLE_MISSING_FILE`` / ``ARCHIVE_UNREADABLE``
findings; if it changes later it is watched again.

Restart-safe: the catalog is the memory. A restarted watcher hands every ready bundle to
``convert_session`` with the session's live catalog row as ``previous``, which skips unchanged
bundles by their hashes; a ``skipped`` result (or any row equal to the catalog's but for its
time and run id) is not written again. A killed watcher's staging is per run and cleared at
start, so what it left in flight is simply converted again. A ``failed`` session (I/O error
after retries, a worker that died) is tried again ``RETRY_FAILED`` seconds later; other results
stand until the bundle changes. ``storage.lock_output`` is held for the watcher's lifetime: a
second watcher (or batch) on the same local OUT refuses or waits (object stores have no lock).

Bounded: at most ``workers`` sessions in flight, ready bundles wait in a queue, two bundles
that would write one session name never run at once. The first SIGINT/SIGTERM (or ``stop``)
starts no new session and lets the running ones finish and commit; a second one aborts: results
still in flight are dropped uncommitted and the run's staging is removed, so nothing is left
half-visible.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reacture_convert import __version__
from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.archives import is_archive
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.discover import Discovery, discover
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.driver import (
    SessionRunner,
    archive_entries,
    forget_listings,
)
from reacture_convert.run.options import parse_duration  # re-exported: parsed in run.options
from reacture_convert.run.scheduler import ResultPump, open_scheduler
from reacture_convert.run.settle import Stamp, Track, quiet_since, stamp_of
from reacture_convert.run.summary import WatchStatus, WatchSummary

__all__ = [
    "WatchOptions",
    "WatchStatus",
    "WatchSummary",
    "EventFn",
    "StatusFn",
    "parse_duration",
    "run_watch",
]

EventFn = Callable[[dict[str, Any]], None]
StatusFn = Callable[[WatchStatus], None]
Key = tuple[str, str | None]  # (source, prefix); an archive's own rows have prefix None
_DEFAULT_OPTIONS = ConvertOptions()
TICK = 0.25  # longest the driver sleeps between looks at signals and results
RETRY_FAILED = 60.0  # seconds before a failed session (I/O error, worker died) is tried again


# --- options and what the watcher reports -----------------------------------------------------


@dataclass(frozen=True)
class WatchOptions:
    """When a bundle is ready, how often to look, and whether to keep running.

    ``settle``: seconds a bundle's files must stay unchanged; ``poll``: seconds between looks;
    ``incomplete_timeout``: seconds an incomplete bundle or unreadable archive may stay so
    (unchanged) before it gets a ``rejected`` catalog row; ``once``: look once, convert what is
    ready then, and return (cron, tests).
    """

    settle: float = 5.0
    poll: float = 1.0
    incomplete_timeout: float = 600.0
    once: bool = False

    def __post_init__(self) -> None:
        if self.settle < 0 or self.incomplete_timeout < 0:
            raise ConfigError("settle and incomplete_timeout cannot be negative")
        if self.poll <= 0:
            raise ConfigError(f"poll must be more than 0 seconds, not {self.poll!r}")


# --- the driver ----------------------------------------------------------------------------------


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_archive_url(source: str) -> bool:
    return is_archive(source.rstrip("/").rsplit("/", 1)[-1])


class _Watcher:
    """State of one watcher: what it has seen, queued, running, and the catalog it keeps."""

    def __init__(
        self,
        paths: Sequence[str],
        out: Output,
        options: ConvertOptions,
        watch: WatchOptions,
        run_id: str,
        catalog: Catalog,
        on_event: EventFn | None,
        on_status: StatusFn | None,
        stop: threading.Event | None,
        stop_on_error: bool,
    ) -> None:
        self.paths = list(paths)
        self.out = out
        self.options = options
        self.opts = dict(options.input_options)
        self.watch = watch
        self.run_id = run_id
        self.catalog = catalog
        self.on_event = on_event
        self.on_status = on_status
        self.stop_event = stop
        self.stop_on_error = stop_on_error
        self.started = time.monotonic()
        self.tracks: dict[Key, Track] = {}
        self.bundles: dict[Key, BundleRef] = {}
        self.ready: deque[Key] = deque()
        self.pump: ResultPump | None = None  # set by loop(): where tasks go
        self.runner = SessionRunner(out, catalog, run_id, self._submit, keep_skipped=False)
        self.announced: dict[Key, str] = {}  # what was last said about an incomplete one
        # what was recorded for which stamps: survives a bundle missing from one listing (an
        # object store's hiccup), so that it is not hashed again when it reappears unchanged
        self.recorded: dict[Key, tuple[tuple[Stamp, ...], str]] = {}
        self.told: set[tuple[str, str]] = set()  # loose findings already reported
        self.entries: list[CatalogEntry] = []
        self.frames = 0
        self.busy = 0.0
        self.signals = 0
        self.stopped: str | None = None  # why no new work is taken
        self.aborted = False

    @property
    def running(self) -> Mapping[Key, Any]:
        return self.runner.running  # type: ignore[return-value]

    def _submit(self, key: Key, *task: Any) -> None:
        assert self.pump is not None, "loop() sets the pump before any task starts"
        self.pump.submit(key, *task)

    # --- events ------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event({"event": kind, "time": _now_iso(), **fields})

    def status(self) -> WatchStatus:
        waiting = sum(t.state == "waiting" for t in self.tracks.values())
        return WatchStatus(
            waiting=waiting,
            queued=len(self.ready),
            converting=len(self.running),
            counts=dict(Counter(e.status for e in self.entries)),
            frames=self.frames,
            busy_seconds=self.busy,
            seconds=time.monotonic() - self.started,
        )

    def show(self) -> None:
        if self.on_status is not None:
            self.on_status(self.status())

    # --- stopping ----------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: Any) -> None:
        """Signal handler: only counts (the loop acts on it; printing here could re-enter)."""
        self.signals += 1

    def check_stop(self) -> None:
        if self.signals >= 2:
            self.aborted = True
        asked = self.signals > 0 or (self.stop_event is not None and self.stop_event.is_set())
        if self.stopped is None and asked:
            self.stop_taking_work("signal")

    def stop_taking_work(self, why: str) -> None:
        self.stopped = why
        for key in self.ready:
            self.tracks[key].state = "waiting"
        dropped = len(self.ready)
        self.ready.clear()
        self.emit("stopping", reason=why, converting=len(self.running), dropped=dropped)

    # --- the catalog -------------------------------------------------------------------------

    def record(self, entry: CatalogEntry) -> None:
        """Keep ``entry`` (the catalog leaves out what would only churn it: a ``skipped``
        result, a row it already holds but for its time and run id)."""
        self.entries.append(entry)
        self.catalog.record(entry, keep_skipped=False)
        self.flush()

    def drop_rows(self, key: Key) -> None:
        """Forget an archive's own rejected row once the archive reads cleanly."""
        self.catalog.drop(key, Status.REJECTED)
        self.flush()

    def flush(self, final: bool = False) -> None:
        """Write the catalog; a failure (object store hiccup) is said and retried later."""
        try:
            self.catalog.flush()
        except OSError as e:
            if final:
                raise OutputError(
                    f"{self.out.url}: cannot write the catalog ({e}); the "
                    "converted sessions are there, run the watcher again"
                ) from e
            self.emit(
                "error", message=f"cannot write the catalog ({type(e).__name__}: {e}); retrying"
            )

    # --- looking at INCOMING -----------------------------------------------------------------

    def stamps(self, urls: set[str]) -> tuple[Stamp, ...] | None:
        try:
            return tuple(sorted(stamp_of(u, self.opts) for u in urls))
        except (OSError, ValueError):
            return None  # gone between listing and look: the next poll decides

    def observe(self, key: Key, stamps: tuple[Stamp, ...], now: float, wall: float) -> Track:
        track = self.tracks.get(key)
        if track is not None and track.stamps == stamps:
            return track
        if track is not None and track.state == "queued":
            self.ready.remove(key)
        track = Track(stamps, quiet_since(stamps, now, wall))
        before = self.recorded.get(key)
        if before is not None and before[0] == stamps:
            track.state = before[1]
        self.tracks[key] = track
        return track

    def mark(self, key: Key, track: Track, state: str) -> None:
        """``track`` has its result (``handled``) or report (``reported``) recorded."""
        track.state = state
        self.recorded[key] = (track.stamps, state)

    def poll(self) -> None:
        now, wall = time.monotonic(), time.time()
        forget_listings(self.out, self.paths, self.opts)
        found = discover(self.paths, self.opts)
        seen: set[Key] = set()
        clean_archives: set[str] = set()
        for bundle in found.bundles:
            urls = {ref.url for ref in bundle.files.values()}
            stamps = self.stamps(urls)
            if stamps is None:
                continue
            key: Key = (bundle.source, bundle.prefix)
            seen.add(key)
            self.bundles[key] = bundle
            clean_archives |= {ref.url for ref in bundle.files.values() if ref.member is not None}
            self.judge_bundle(key, bundle, self.observe(key, stamps, now, wall), now)
        for source, findings in self.archive_findings(found).items():
            stamps = self.stamps({source})
            if stamps is None:
                continue
            akey: Key = (source, None)
            seen.add(akey)
            clean_archives.discard(source)
            self.judge_archive(akey, findings, self.observe(akey, stamps, now, wall), now)
        for url in clean_archives:
            self.drop_rows((url, None))
        for key in [k for k in self.tracks if k not in seen and k not in self.running]:
            if self.tracks.pop(key).state == "queued":
                self.ready.remove(key)
            self.bundles.pop(key, None)
            self.announced.pop(key, None)

    def archive_findings(self, found: Discovery) -> dict[str, list[Finding]]:
        """Error findings by the archive they belong to; other loose findings (a missing input,
        an unlistable folder) are said once each."""
        by_archive: dict[str, list[Finding]] = {}
        for f in found.findings:
            if f.severity is not Severity.ERROR:
                continue
            source = f.file.split("!", 1)[0]
            if _is_archive_url(source):
                by_archive.setdefault(source, []).append(f)
            elif (f.code, f.file) not in self.told:
                self.told.add((f.code, f.file))
                self.emit("finding", code=f.code, source=f.file, message=f.message)
        return by_archive

    def judge_bundle(self, key: Key, bundle: BundleRef, track: Track, now: float) -> None:
        if track.state != "waiting":
            return
        quiet = now - track.quiet_since
        in_archive = any(ref.member is not None for ref in bundle.files.values())
        if bundle.missing and not in_archive:
            missing = ", ".join(bundle.missing)
            if self.announced.get(key) != missing:
                self.announced[key] = missing
                self.emit(
                    "incomplete",
                    session=session_name(bundle.prefix),
                    source=bundle.source,
                    prefix=bundle.prefix,
                    missing=list(bundle.missing),
                )
            if quiet >= self.watch.incomplete_timeout:
                self.mark(key, track, "reported")
                self.report(self.incomplete_entry(bundle))
            return
        if quiet >= self.watch.settle and now >= track.retry_at:
            track.state = "queued"
            self.ready.append(key)
            self.emit(
                "ready",
                session=session_name(bundle.prefix),
                source=bundle.source,
                prefix=bundle.prefix,
            )

    def judge_archive(self, key: Key, findings: list[Finding], track: Track, now: float) -> None:
        """An archive that cannot be read yet waits like an incomplete bundle; one that reads
        but refuses members gets its rows (as in a batch) once it has settled."""
        if track.state != "waiting":
            return
        quiet = now - track.quiet_since
        unreadable = any(f.code == "ARCHIVE_UNREADABLE" for f in findings)
        if unreadable and self.announced.get(key) != "unreadable":
            self.announced[key] = "unreadable"
            self.emit(
                "incomplete", session=None, source=key[0], prefix=None, reason=findings[0].message
            )
        if quiet >= (self.watch.incomplete_timeout if unreadable else self.watch.settle):
            self.mark(key, track, "reported")
            for entry in archive_entries(findings, self.run_id):
                self.report(replace(entry, converted_at=dt.datetime.now(dt.UTC)))

    def incomplete_entry(self, bundle: BundleRef) -> CatalogEntry:
        findings = tuple(
            finding(
                "BUNDLE_MISSING_FILE",
                f"{bundle.prefix}_{role}",
                f"{role} of bundle {bundle.prefix!r} is missing in {bundle.source} and the "
                "upload stopped changing (incomplete timeout); upload the missing file "
                "(the bundle is then converted) or remove the bundle",
            )
            for role in bundle.missing
        )
        return CatalogEntry(
            session=session_name(bundle.prefix),
            source=bundle.source,
            prefix=bundle.prefix,
            status=Status.REJECTED,
            reason=f"{findings[0].code} at {findings[0].location()}",
            findings=findings,
            converter_version=__version__,
            converted_at=dt.datetime.now(dt.UTC),
            run_id=self.run_id,
        )

    def report(self, entry: CatalogEntry) -> None:
        self.record(entry)
        self.emit(
            entry.status,
            session=entry.session,
            source=entry.source,
            prefix=entry.prefix,
            reason=entry.reason,
            errors=[
                f"{f.code} at {f.location()}"
                for f in entry.findings
                if f.severity is Severity.ERROR
            ],
        )

    # --- converting --------------------------------------------------------------------------

    def feed(self, limit: int) -> None:
        """Start ready sessions while fewer than ``limit`` run; a bundle whose session name is
        being written waits for it (it becomes that session's duplicate or conflict)."""
        if self.stopped is not None:
            return
        later: list[Key] = []
        while self.ready and len(self.running) < limit:
            key = self.ready.popleft()
            bundle = self.bundles[key]
            name = session_name(bundle.prefix)
            if self.runner.busy(name):
                later.append(key)
                continue
            previous = self.catalog.live().get(name)
            track = self.tracks[key]
            track.state = "running"
            options = self.options
            if previous is not None and previous.source != bundle.source:
                options = replace(options, force=False)  # --force replaces re-uploads only
            self.runner.start(key, bundle, options, previous, tag=track.stamps)
            self.emit("converting", session=name, source=bundle.source, prefix=bundle.prefix)
        self.ready.extendleft(reversed(later))

    def finish(self, key: Key, value: Any) -> None:
        """Commit one session's result, record it, say so."""
        run, entry = self.runner.finish(key, value)
        self.entries.append(entry)
        self.flush()
        if entry.status == Status.CONVERTED:
            self.frames += entry.n_frames or 0
        fields: dict[str, Any] = {
            "session": entry.session,
            "source": entry.source,
            "prefix": entry.prefix,
            "frames": entry.n_frames,
            "seconds": round(time.monotonic() - run.started, 3),
        }
        if entry.status != Status.CONVERTED:
            fields["reason"] = entry.reason
            fields["errors"] = [
                f"{f.code} at {f.location()}"
                for f in entry.findings
                if f.severity is Severity.ERROR
            ]
        self.emit(entry.status, **fields)
        track = self.tracks.get(key)
        if track is not None and track.stamps == run.tag:
            if entry.status == Status.FAILED:  # not the bundle's fault: again, a while later
                track.state, track.retry_at = "waiting", time.monotonic() + RETRY_FAILED
            else:
                self.mark(key, track, "handled")
        if self.stop_on_error and not entry.status.is_ok and self.stopped is None:
            self.stop_taking_work("on_error")

    def lost(self, error: BaseException) -> None:
        """The scheduler died: every running session failed (a later run retries them)."""
        for key in list(self.running):
            self.finish(key, error)
        if self.stopped is None:
            self.stop_taking_work("error")

    def loop(self, pump: ResultPump, limit: int) -> None:
        self.pump = pump
        next_poll = 0.0
        polled = False
        last = time.monotonic()
        while True:
            self.check_stop()
            if self.aborted:
                return
            if (
                self.stopped is None
                and not (self.watch.once and polled)
                and time.monotonic() >= next_poll
            ):
                self.poll()
                polled = True
                next_poll = time.monotonic() + self.watch.poll
                self.flush()
            self.feed(limit)
            self.show()
            if not self.running and (
                self.stopped is not None or (self.watch.once and polled and not self.ready)
            ):
                return
            wait = (
                TICK
                if self.stopped or self.watch.once
                else min(TICK, max(0.0, next_poll - time.monotonic()))
            )
            busy = bool(self.running)
            try:
                key, value = pump.results.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                self.check_stop()
                if self.aborted:
                    return  # dropped uncommitted: run_watch removes the run's staging
                if key is None:
                    self.lost(value)
                else:
                    self.finish(key, value)
            now = time.monotonic()
            if busy:
                self.busy += now - last
            last = now


@contextlib.contextmanager
def _signals(watcher: _Watcher, enabled: bool) -> Iterator[Callable[[], None]]:
    """SIGINT/SIGTERM count as stop requests once ``arm()`` is called (main thread only).

    Until then SIGINT is ignored, so that the scheduler's worker processes started meanwhile
    inherit that: a Ctrl-C on a terminal goes to the whole process group, and workers that died
    of it would take the sessions in flight with them instead of letting them finish.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def arm() -> None:
        for s in old:
            signal.signal(s, watcher.on_signal)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield arm
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run_watch(
    paths: Sequence[str],
    out: Output,
    options: ConvertOptions = _DEFAULT_OPTIONS,
    watch: WatchOptions = WatchOptions(),
    *,
    scheduler: str = "auto",
    workers: int | None = None,
    wait_for_lock: bool = False,
    on_event: EventFn | None = None,
    on_status: StatusFn | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    stop_on_error: bool = False,
) -> WatchSummary:
    """Watch ``paths`` (folders, archives, globs or fsspec URLs) and convert every bundle into
    ``out`` once its upload is complete; return when stopped (see the module doc).

    Sessions run on ``scheduler`` (``auto`` means local Dask processes here), at most
    ``workers`` at once (default: the scheduler's capacity). ``on_event(dict)`` gets every
    event (``started``, ``incomplete``, ``ready``, ``converting``, ``converted``, ``skipped``,
    ``duplicate``, ``conflict``, ``rejected``, ``failed``, ``finding``, ``stopping``, ``error``,
    ``stopped``); ``on_status(WatchStatus)`` is called a few times a second for a live line.
    ``stop`` (an Event) or SIGINT/SIGTERM (``handle_signals``, main thread) stop it gracefully;
    a second signal aborts. Raises LockedError when another run holds a local OUT (unless
    ``wait_for_lock``), ConfigError for options a watcher cannot honour (WebDataset shards).
    """
    if "wds" in options.formats or "zarr" not in options.formats:
        raise ConfigError(
            "a watcher writes the zarr format only (sessions appear one by one, while WebDataset "
            "shards are cut across all sessions of a batch); use formats = zarr and build shards "
            "with `reacture-convert convert INCOMING --out OUT --format zarr,wds` when needed"
        )
    run_id = uuid.uuid4().hex[:12]
    started = time.perf_counter()
    with lock_output(out, wait=wait_for_lock):
        forget_listings(out, paths, options.input_options)
        catalog = Catalog.load(out)
        out.clear_staging()  # a killed watcher's or batch's leftovers: never visible
        watcher = _Watcher(
            paths, out, options, watch, run_id, catalog, on_event, on_status, stop, stop_on_error
        )
        with _signals(watcher, handle_signals) as arm:
            with open_scheduler(scheduler, workers, n_tasks=2) as sched:
                arm()
                limit = max(1, min(workers or sched.capacity, sched.capacity))
                watcher.emit(
                    "started",
                    incoming=list(paths),
                    out=out.url,
                    run_id=run_id,
                    scheduler=sched.description,
                    workers=limit,
                    settle=watch.settle,
                    poll=watch.poll,
                    incomplete_timeout=watch.incomplete_timeout,
                    once=watch.once,
                )
                pump = ResultPump(sched, TICK)
                try:
                    watcher.loop(pump, limit)
                finally:
                    pump.close()
            if watcher.aborted:  # what was in flight is dropped, never committed; a task that
                # cannot be interrupted (a thread) may still write: the next start clears it
                with contextlib.suppress(OSError):
                    out.clear_staging(run_id)
            watcher.flush(final=True)
            if not watcher.aborted:
                out.clear_staging()
    stopped = "abort" if watcher.aborted else (watcher.stopped or "once")
    summary = WatchSummary(
        out=out.url,
        run_id=run_id,
        stopped=stopped,
        entries=tuple(watcher.entries),
        seconds=time.perf_counter() - started,
        frames=watcher.frames,
    )
    watcher.emit(
        "stopped",
        reason=stopped,
        counts=summary.counts,
        frames=summary.frames,
        seconds=round(summary.seconds, 3),
        dropped=len(watcher.running),
        waiting=watcher.status().waiting,
    )
    return summary
