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
findings; if it changes later it is watched again. What was seen, and when it is ready, is
``settle.Incoming``'s: a poll lists INCOMING once and costs what changed since the last one.

Restart-safe: the catalog is the memory. A restarted watcher hands every ready bundle to
``convert_session`` with the session's live catalog row as ``previous``, which skips unchanged
bundles by their hashes; a ``skipped`` result (or any row equal to the catalog's but for its
time and run id) is not written again. A killed watcher's staging is per run and cleared at
start, so what it left in flight is simply converted again. A ``failed`` session (I/O error
after retries, a worker that died) is tried again ``RETRY_FAILED`` seconds later; other results
stand until the bundle changes; OUT's storage failing (disk full, read-only, the object store
refusing a write: ``Output.fault``) ends the watcher (exit 3) instead, with what was in flight
dropped. ``storage.lock_output`` is held for the watcher's lifetime: a second watcher (or batch)
on the same OUT (a local folder, or S3 through a lease) refuses or waits.

Bounded: at most ``workers`` sessions in flight, ready bundles wait in a queue, two bundles
that would write one session name never run at once. The first SIGINT/SIGTERM (or ``stop``)
starts no new session and lets the running ones finish and commit; a second one aborts at once:
results still in flight are dropped uncommitted (worker processes killed, tasks on threads here
fenced, ``driver.abandon_run``) and the run's staging is removed, so nothing is left
half-visible.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from reacture_convert.errors import ConfigError, LockedError, OutputError, StorageError
from reacture_convert.findings import Severity
from reacture_convert.formats.wds.index import read_index
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.layout import WDS_INDEX
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.driver import SessionRunner, abandon_run, forget_listings
from reacture_convert.run.interrupt import on_signals
from reacture_convert.run.options import WatchOptions, parse_duration  # re-exported
from reacture_convert.run.scheduler import ResultPump, open_scheduler
from reacture_convert.run.settle import Incoming, Key
from reacture_convert.run.setup import OutputRun, hold_output
from reacture_convert.run.summary import WatchStatus, WatchSummary
from reacture_convert.writers.card import write_card
from reacture_convert.writers.webdataset import SessionTar, append_shards

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
_DEFAULT_OPTIONS = ConvertOptions()
_DEFAULT_WATCH = WatchOptions()
SHARDS_EVERY = 60.0  # seconds: the longest converted sessions wait for their shards
TICK = 0.25  # longest the driver sleeps between looks at signals and results
RETRY_FAILED = 60.0  # seconds before a failed session (I/O error, worker died) is tried again


# --- the driver ----------------------------------------------------------------------------------


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Watcher:
    """State of one watcher: what it has seen (``incoming``), running, and the catalog it keeps."""

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
        self.incoming = Incoming(
            paths, self.opts, watch, run_id, self.emit, self.report, self.drop_rows
        )
        self.pump: ResultPump | None = None  # set by loop(): where tasks go
        self.runner = SessionRunner(out, catalog, run_id, self._submit, keep_skipped=False)
        self.rows: list[int] = []  # every result and report, as catalog row ids
        self.counts: Counter[str] = Counter()
        self.frames = 0
        self.pending_tars: dict[str, SessionTar] = {}  # converted, not in the shards yet
        self.pending_since = 0.0
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
        return WatchStatus(
            waiting=self.incoming.waiting,
            queued=len(self.incoming.ready),
            converting=len(self.running),
            counts=dict(self.counts),
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
        dropped = self.incoming.unqueue()
        self.emit("stopping", reason=why, converting=len(self.running), dropped=dropped)

    # --- the catalog -------------------------------------------------------------------------

    def keep(self, row: int, entry: CatalogEntry) -> None:
        """Count a result or report (its row id stands for it in the summary)."""
        self.rows.append(row)
        self.counts[entry.status] += 1

    def report(self, entry: CatalogEntry) -> None:
        """Record a row that needed no conversion, and say so."""
        self.keep(self.catalog.record(entry, keep_skipped=False), entry)
        self.flush()
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

    def drop_rows(self, key: Key) -> None:
        """Forget an archive's own rejected row once the archive reads cleanly."""
        self.catalog.drop(key, Status.REJECTED)

    def flush(self, final: bool = False) -> None:
        """Write the catalog's log or compact it when due; a failure (object store hiccup) is
        said and retried later. A lost lease (``LockedError``) ends the watcher."""
        try:
            self.catalog.flush(final=final)
        except LockedError:
            raise
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

    def poll(self) -> None:
        forget_listings(self.out, self.paths, self.opts)
        self.incoming.poll(time.monotonic(), time.time(), self.running)

    # --- converting --------------------------------------------------------------------------

    def feed(self, limit: int) -> None:
        """Start ready sessions while fewer than ``limit`` run; a bundle whose session name is
        being written waits for it (it becomes that session's duplicate or conflict)."""
        if self.stopped is not None:
            return
        ready = self.incoming.ready
        later: list[Key] = []
        while ready and len(self.running) < limit:
            key = ready.popleft()
            bundle = self.incoming.bundles[key]
            name = session_name(bundle.prefix)
            if self.runner.busy(name):
                later.append(key)
                continue
            previous = self.catalog.live(name) or self.catalog.removed(name, key)
            track = self.incoming.tracks[key]
            track.state = "running"
            options = self.options
            if previous is not None and previous.source != bundle.source:
                options = replace(options, force=False)  # --force replaces re-uploads only
            self.runner.start(key, bundle, options, previous, tag=track.stamps)
            self.emit("converting", session=name, source=bundle.source, prefix=bundle.prefix)
        ready.extendleft(reversed(later))

    def finish(self, key: Key, value: Any) -> None:
        """Commit one session's result, record it, say so."""
        done = self.runner.finish(key, value)
        run, entry = done.run, done.entry
        if done.session_tar is not None:
            self.pending_tars[run.name] = done.session_tar
            self.pending_since = self.pending_since or time.monotonic()
        self.keep(done.row, entry)
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
        track = self.incoming.tracks.get(key)
        if track is not None and track.stamps == run.tag:
            if entry.status == Status.FAILED:  # not the bundle's fault: again, a while later
                track.state, track.retry_at = "waiting", time.monotonic() + RETRY_FAILED
            else:
                self.incoming.mark(key, track, "handled")
        if self.stop_on_error and not entry.status.is_ok and self.stopped is None:
            self.stop_taking_work("on_error")

    def publish_shards(self, final: bool = False) -> None:
        """Append the sessions converted since the last time to the shard set as new shards
        (old shards untouched, a new index.json committed atomically), then rewrite the dataset
        card. Done when no session is in flight, or every ``SHARDS_EVERY`` seconds while they
        keep coming, so that a stream of uploads does not make a shard of each."""
        if not self.pending_tars:
            return
        due = final or not self.running
        due = due or time.monotonic() - self.pending_since >= SHARDS_EVERY
        if not due:
            return
        tars = [self.pending_tars[k] for k in sorted(self.pending_tars)]
        self.pending_tars, self.pending_since = {}, 0.0
        try:
            before = read_index(self.out)
            held = {s.session for s in before.sessions} if before is not None else set()
            index = append_shards(self.out, tars, self.options.wds)
        except (ConfigError, OutputError, OSError) as e:
            self.emit("error", message=f"cannot add {len(tars)} session(s) to the shards: {e}")
            return
        finally:
            for part in (p for st in tars for p in st.parts):
                with contextlib.suppress(OSError):
                    self.out.fs.rm(part.path)
        added = [s.session for s in index.sessions if s.session not in held]
        if not added:  # sessions the set holds already (a restarted watcher's skips)
            return
        self.emit(
            "shards",
            sessions=added,
            shards=len(index.shards),
            samples=index.total_samples,
            index=self.out.url_of(WDS_INDEX),
        )
        self.flush()
        write_card(self.out, self.catalog.view())

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
            self.flush()  # a fragment or a compaction, when due
            self.publish_shards()
            self.feed(limit)
            self.show()
            if not self.running and (
                self.stopped is not None or (self.watch.once and polled and not self.incoming.ready)
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


def run_watch(
    paths: Sequence[str],
    out: Output,
    options: ConvertOptions = _DEFAULT_OPTIONS,
    watch: WatchOptions = _DEFAULT_WATCH,
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
    ``wait_for_lock``). With ``wds`` in the formats, the sessions converted are appended to the
    shard set as new shards (``append_shards``) whenever no session is in flight (at most every
    ``SHARDS_EVERY`` seconds while sessions keep coming) and when it stops (event ``shards``).
    """
    started = time.perf_counter()
    with hold_output(out, wait=wait_for_lock, allow_other_files=options.allow_other_files) as run:
        forget_listings(out, paths, options.input_options)
        catalog = run.load_catalog()
        watcher = _Watcher(
            paths,
            out,
            options,
            watch,
            run.run_id,
            catalog,
            on_event,
            on_status,
            stop,
            stop_on_error,
        )
        with on_signals(watcher.on_signal) if handle_signals else contextlib.nullcontext():
            _serve(watcher, scheduler, workers)
            _wind_up(watcher, run)
    return _stopped(watcher, time.perf_counter() - started)


def _serve(watcher: _Watcher, scheduler: str, workers: int | None) -> None:
    """The watcher's loop on a scheduler, until it stops or aborts (then what is in flight is
    dropped at once: worker processes killed, tasks on threads here fenced)."""
    with open_scheduler(scheduler, workers, n_tasks=2) as sched:
        limit = max(1, min(workers or sched.capacity, sched.capacity))
        watch = watcher.watch
        watcher.emit(
            "started",
            incoming=list(watcher.paths),
            out=watcher.out.url,
            run_id=watcher.run_id,
            scheduler=sched.description,
            workers=sched.workers,
            in_flight=limit,
            settle=watch.settle,
            poll=watch.poll,
            incomplete_timeout=watch.incomplete_timeout,
            once=watch.once,
        )
        pump = ResultPump(sched, TICK)
        try:
            watcher.loop(pump, limit)
        except StorageError:  # OUT's storage failed (``Output.fault``): the watcher ends here,
            watcher.aborted = True  # what is in flight dropped at once (the next start clears it)
            raise
        finally:
            pump.close()
            if watcher.aborted:
                abandon_run(watcher.run_id)
                sched.abandon()


def _wind_up(watcher: _Watcher, run: OutputRun) -> None:
    """After the loop: the last shards, the catalog written, the card and staging cleared (the
    catalog only, after an abort)."""
    if watcher.aborted:  # what was in flight is dropped, never committed; a task that
        # cannot be interrupted (a thread) may still write: the next start clears it
        with contextlib.suppress(OSError):
            run.out.clear_staging(run.run_id)
    if not watcher.aborted:
        watcher.publish_shards(final=True)
    watcher.flush(final=True)
    if not watcher.aborted:
        run.close()


def _stopped(watcher: _Watcher, seconds: float) -> WatchSummary:
    """The watcher's summary, and its ``stopped`` event."""
    stopped = "abort" if watcher.aborted else (watcher.stopped or "once")
    summary = WatchSummary(
        out=watcher.out.url,
        run_id=watcher.run_id,
        stopped=stopped,
        entries=watcher.catalog.entries(watcher.rows),
        seconds=seconds,
        frames=watcher.frames,
        waiting=watcher.status().waiting,
        findings=tuple(watcher.incoming.loose_errors),
    )
    watcher.emit(
        "stopped",
        reason=stopped,
        counts=summary.counts,
        frames=summary.frames,
        seconds=round(summary.seconds, 3),
        dropped=len(watcher.running),
        waiting=summary.waiting,
    )
    return summary
