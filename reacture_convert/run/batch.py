"""Run a batch: discover bundles, convert each as a task, keep the catalog, summarise.

The driver (this module, with ``run.driver``) is the only writer of the catalog; tasks write
their own session's outputs to staging, and the driver commits them. Each committed session's
row is appended to the catalog's log at once (``output.catalog``), so a killed run loses at most
the sessions that were in flight, and a re-run skips what is done (by source hashes) and redoes
the rest. The driver's cost per session does not grow with the catalog: rows are kept compactly
in memory, logged in O(1) and compacted into ``catalog.parquet`` on a geometric schedule.

OUT's storage failing (disk full, read-only, permission denied, the object store refusing a
write: ``Output.fault``) is no bundle's failure: the batch stops at once, the same way, and
raises the ``StorageError`` that names OUT, the file and what to do. The sessions committed
stay committed and recorded; the ones in flight are dropped unrecorded and the run's staging
cleared; a re-run (once there is room, or permission) goes on from there.

The first SIGINT/SIGTERM stops a batch at once (``run.interrupt``): no new session starts, the
sessions in flight are dropped uncommitted (worker processes killed, in-process tasks fenced)
and the run's staging cleared; what was committed stays, the catalog is written, and OUT keeps a
note that the next run reads to say it resumes. The summary says ``interrupted``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from array import array
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, NamedTuple

from reacture_convert.errors import ConfigError
from reacture_convert.formats.wds.index import WdsIndex
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.discover import Discovery, discover
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.claim import check_out
from reacture_convert.output.layout import WDS_INDEX
from reacture_convert.output.lease import is_s3
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.driver import (
    Finished,
    Keyed,
    SessionRunner,
    Task,
    abandon_run,
    archive_entries,
    forget_listings,
)
from reacture_convert.run.interrupt import (
    Resumed,
    forget_interrupted,
    mark_interrupted,
    on_signals,
    read_interrupted,
)
from reacture_convert.run.progress import (
    ProgressFn,
    SessionDone,
    Started,
    guarded,
    hold_reporting,
    listening,
)
from reacture_convert.run.scheduler import Scheduler, check_scheduler, open_scheduler, runs_here
from reacture_convert.run.setup import OutputRun, new_run_id
from reacture_convert.run.summary import RunSummary
from reacture_convert.writers.webdataset import SessionTar, write_shards
from reacture_convert.writers.webdataset.scratch import parts_dir

__all__ = ["ProgressFn", "ResumeFn", "check_inputs", "run_convert"]

ResumeFn = Callable[[Resumed], None]
"""``on_resume(resumed)``, called when a run starts where an interrupted one stopped."""

DEFAULT_OPTIONS: ConvertOptions = ConvertOptions()
GROUP_BYTES = 64 * 2**20  # input bytes of likely-skipped sessions put in one task


def _size(bundle: BundleRef) -> int:
    return sum(ref.size for ref in bundle.files.values())


def check_inputs(paths: Sequence[str], out: Output) -> None:
    """``ConfigError`` when an input is OUT or lies inside it: a converted dataset's folder is
    never read as input, so its bundles would convert once and then never be seen again."""

    def norm(path: str) -> str:
        if "://" in path and not path.startswith("file://"):
            return path.rstrip("/")
        return os.path.realpath(path.removeprefix("file://"))

    root = norm(out.url)
    for path in paths:
        p = norm(path)
        if p == root or p.startswith(root.rstrip("/") + "/"):
            raise ConfigError(
                f"input {path!r} is the output {out.url!r} or inside it: a converted dataset's "
                "folder is never read as input; keep the bundles outside --out"
            )


class Pending(NamedTuple):
    """A bundle ready to start: how to convert it, and ``peer``, the entry of the bundle that
    won its session name (for a name's later bundles, when that entry is live)."""

    bundle: BundleRef
    options: ConvertOptions
    peer: CatalogEntry | None = None


class _Batch:
    """A batch's sessions as the driver loop moves them: waiting for their name's first bundle,
    ready, in flight (``runner``), done.

    A name's later bundles wait for its first, which wins the name; a bundle's previous row is
    the session's live row when it starts (or the winner's entry, when live). Tasks are fed a
    few at a time (bounded in-flight work, and a stop policy that can take effect: one at a time
    on ``sync``, so ``stop`` is exact there)."""

    def __init__(
        self,
        bundles: Sequence[BundleRef],
        options: ConvertOptions,
        runner: SessionRunner,
        capacity: int,
        progress: ProgressFn | None,
        stop_on_error: bool,
        rows: array[int],
    ) -> None:
        groups: dict[str, list[BundleRef]] = defaultdict(list)
        for b in bundles:
            groups[session_name(b.prefix)].append(b)
        self.waiting = {
            name: deque(sorted(bs, key=lambda b: b.source)) for name, bs in groups.items()
        }
        self.ready = deque(
            Pending(self.waiting[name].popleft(), options) for name in sorted(self.waiting)
        )
        self.options, self.runner, self.catalog = options, runner, runner.catalog
        self.capacity, self.progress, self.stop_on_error = capacity, progress, stop_on_error
        # several likely-skipped sessions to a task when the scheduler is remote (a round trip
        # per session would cost more than its hash)
        self.grouping = capacity > 1 and not stop_on_error
        self.total = len(bundles)
        self.rows = rows
        self.session_tars: dict[str, SessionTar] = {}
        self.finished = 0
        self.frames = 0
        self.stopped = False
        self.interrupt = threading.Event()
        self.abandoned = 0  # sessions in flight when interrupted

    def run(self, sched: Scheduler) -> None:
        self.feed()
        try:
            for key, value in sched.results(self.interrupt):
                for done in self.runner.finish_task(key, value):
                    self.done(done)
                self.catalog.flush()
                self.feed()
        except BaseException:  # OUT's storage failed (or the driver did): stop at once
            abandon_run(self.runner.run_id)
            sched.abandon()
            with contextlib.suppress(Exception):  # the sessions committed, if it can be
                self.catalog.flush()
            raise
        if self.interrupted:
            self.abandoned = len(self.runner)
            abandon_run(self.runner.run_id)
            sched.abandon()

    @property
    def interrupted(self) -> bool:
        """A signal came before the batch was done."""
        return self.interrupt.is_set() and self.finished < self.total and not self.stopped

    def on_signal(self, signum: int, frame: Any) -> None:
        """Signal handler: only sets the Event (the loop acts on it within ``POLL`` s)."""
        self.interrupt.set()

    def feed(self) -> None:
        while (
            self.ready
            and self.runner.tasks < self.capacity
            and not self.stopped
            and not self.interrupt.is_set()
        ):
            self.runner.start_group(self.next_group())

    def previous(self, pending: Pending) -> CatalogEntry | None:
        """The row the bundle is judged against: its session's live row, else its removed one
        (the same bytes stay out)."""
        if pending.peer is not None:
            return pending.peer
        bundle = pending.bundle
        name = session_name(bundle.prefix)
        return self.catalog.live(name) or self.catalog.removed(name, (bundle.source, bundle.prefix))

    def take(self) -> Keyed:
        pending = self.ready.popleft()
        task = Task(pending.bundle, pending.options, self.previous(pending))
        return Keyed((pending.bundle.source, pending.bundle.prefix), task)

    def next_group(self) -> list[Keyed]:
        """The next task's sessions: one; or, grouping, sessions with a live row to compare
        with (likely skipped: a hash each) up to ``GROUP_BYTES`` of input."""
        group = [self.take()]
        size = _size(group[0].task.bundle)
        while self.grouping and group[-1].task.previous is not None and size < GROUP_BYTES:
            if not self.ready or self.previous(self.ready[0]) is None:
                break
            group.append(self.take())
            size += _size(group[-1].task.bundle)
        return group

    def done(self, done: Finished) -> None:
        entry, name = done.entry, done.run.name
        self.rows.append(done.row)
        if entry.status is Status.CONVERTED:
            self.frames += entry.n_frames or 0
        if done.session_tar is not None:
            self.session_tars[name] = done.session_tar
        self.finished += 1
        if self.progress is not None:
            self.progress(SessionDone(entry, self.finished, self.total))
        if self.stop_on_error and not entry.status.is_ok:
            self.stopped = True
        if self.waiting.get(name):
            # the rest of a name's bundles: duplicates of the winner, or conflicts
            peer = entry if entry.status.is_live else None
            later = Pending(self.waiting[name].popleft(), replace(self.options, force=False), peer)
            self.ready.appendleft(later)


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
    handle_signals: bool = True,
    on_resume: ResumeFn | None = None,
) -> RunSummary:
    """Convert every bundle found under ``paths`` into ``out``; never raises for bad input.

    Sessions run as tasks on ``scheduler`` (see ``reacture_convert.run.scheduler``); bundles that
    would get the same session name run after the first of them, which wins. With ``wds`` in
    the formats, the sessions' sample tars are merged into shards at the end.
    ``stop_on_error``: after the first bundle that is not converted/skipped, start no new
    session (the job files' ``on_error = "stop"``); sessions already running finish (on the
    ``sync`` scheduler none into a local OUT, the next one into an object store), no shards
    are merged, and the summary lists fewer bundles.
    ``progress(event)`` takes the run's progress events (``run.progress``): waiting for
    OUT's lock, started, frames of a session written, a session done.
    ``handle_signals`` (main thread): the first SIGINT/SIGTERM while sessions convert
    interrupts the run (see the module doc; ``RunSummary.interrupted``). A task that ran on a
    thread here may still be running when this returns (it writes nothing more); a caller that
    exits at once (the command line) loses nothing. ``on_resume(Resumed)`` is called when OUT
    holds an interrupted run's note.
    """
    started = time.perf_counter()
    run_id = new_run_id()
    progress = guarded(progress) if progress is not None else None
    check_inputs(paths, out)
    allow = options.allow_other_files
    check_out(out, allow_other_files=allow)  # before the inputs are listed: OUT refused at once
    forget_listings(out, paths, options.input_options)
    found = discover(list(paths), options.input_options)
    if not found.bundles and not archive_entries(found.findings, run_id):
        # nothing to convert and nothing to record: OUT is not created or touched
        seconds = time.perf_counter() - started
        return RunSummary(
            out=out.url, run_id=run_id, entries=(), findings=found.findings, seconds=seconds
        )
    with (
        hold_reporting(
            out,
            run_id,
            wait=wait_for_lock,
            progress=progress,
            allow_other_files=allow,
            checked=True,
        ) as run,
        _stopped_by_faults(run.out),
    ):
        # (read while the catalog loads: on an object store each is a round trip)
        note = ThreadPoolExecutor(1, thread_name_prefix="reacture-note")
        interrupted_run = note.submit(read_interrupted, out)
        note.shutdown(wait=False)
        resumed: list[Resumed] = []

        def loaded(catalog: Catalog) -> None:  # said as the run starts
            resumed.extend(_resumed(interrupted_run.result(), catalog, on_resume))

        wds_index = None
        with _local_staging(run.out, options, scheduler, found) as (staged, options):
            batch = _convert_all(
                run,
                staged,
                found,
                options,
                scheduler,
                workers,
                progress,
                stop_on_error,
                handle_signals,
                loaded,
            )
            if batch.interrupted:  # what was in flight is dropped; the next run finishes
                _clear_staging(run.out)
                mark_interrupted(run.out, run.run_id)
            elif batch.session_tars and not batch.stopped:  # the merged format (shards) asked for
                tars = [batch.session_tars[k] for k in sorted(batch.session_tars)]
                wds_index = write_shards(out, tars, options.wds)
        if not batch.interrupted:
            run.close()
            if resumed:
                forget_interrupted(run.out)
    summary = _summary(run, found, batch, wds_index, time.perf_counter() - started)
    return replace(summary, resumed=resumed[0] if resumed else None)


@contextlib.contextmanager
def _local_staging(
    out: Output, options: ConvertOptions, scheduler: str, found: Discovery
) -> Iterator[tuple[Output, ConvertOptions]]:
    """OUT and ``options`` as the sessions and the shard merge use them: into an object store,
    with sessions that run on this machine, staged in a local folder (``Output.stage_dir`` on
    S3, uploaded by each commit; the shards' ``parts_dir``), removed on exit
    (``writers.webdataset.scratch``)."""
    here = runs_here(check_scheduler(scheduler))
    with parts_dir(out, here, sum(_size(b) for b in found.bundles)) as folder:
        if folder is None:
            yield out, options
            return
        staged = replace(out, stage_dir=folder) if is_s3(out) else out
        yield staged, replace(options, wds=replace(options.wds, parts_dir=folder))


@contextlib.contextmanager
def _stopped_by_faults(out: Output) -> Iterator[None]:
    """OUT's storage failing in the block (``Output.fault``) ends the run: the run's staging
    cleared (it was never visible), then the ``StorageError`` that says so raised."""
    try:
        yield
    except Exception as e:
        fault = out.fault(e)
        if fault is None:
            raise
        _clear_staging(out)
        if fault is e:  # (a session's: it says so already)
            raise
        raise fault from e


def _clear_staging(out: Output) -> None:
    """Clear staging while an abandoned task on a thread here may still be removing its own
    (``FileNotFoundError``, a folder not empty yet): tried again, then left to the next run."""
    for attempt in range(5):
        try:
            out.clear_staging()
            return
        except OSError:
            if attempt == 4:
                return
            time.sleep(0.05)


def _resumed(run_id: str | None, catalog: Catalog, on_resume: ResumeFn | None) -> list[Resumed]:
    """The interrupted run ``run_id`` this one resumes, if any (said to ``on_resume``)."""
    if run_id is None:
        return []
    resumed = Resumed(run_id, sum(s.is_live for s in catalog.view().statuses()))
    if on_resume is not None:
        on_resume(resumed)
    return [resumed]


def _convert_all(
    run: OutputRun,
    out: Output,
    found: Discovery,
    options: ConvertOptions,
    scheduler: str,
    workers: int | None,
    progress: ProgressFn | None,
    stop_on_error: bool,
    handle_signals: bool = True,
    loaded: Callable[[Catalog], None] | None = None,
) -> _Batch:
    """Every session converted and committed, the catalog written (the run's main loop)."""
    total = len(found.bundles)
    size = sum(_size(b) for b in found.bundles)
    # A local cluster starts on a thread from here, while the catalog loads; the scheduler's
    # first use waits for it.
    # into an object store a session's commit is round trips: the next session converts meanwhile
    overlap = not run.out.is_local
    with open_scheduler(scheduler, workers, total, total_bytes=size, overlap=overlap) as sched:
        catalog = run.load_catalog()
        if loaded is not None:
            loaded(catalog)
        # a row the catalog already holds (an unchanged bundle) is not written again
        entries = archive_entries(found.findings, run.run_id)
        rows = array("q", [catalog.record(e, keep_skipped=False) for e in entries])
        runner = SessionRunner(out, catalog, run.run_id, sched.submit, keep_skipped=False)
        batch = _Batch(
            found.bundles, options, runner, sched.capacity, progress, stop_on_error, rows
        )
        if progress is not None:
            progress(Started(run.out.url, total))
        signals = on_signals(batch.on_signal) if handle_signals else contextlib.nullcontext()
        with signals, listening(run.run_id, sched, progress):
            batch.run(sched)
    catalog.flush(final=True)
    return batch


def _summary(
    run: OutputRun, found: Discovery, batch: _Batch, wds_index: WdsIndex | None, seconds: float
) -> RunSummary:
    extra: dict[str, Any] = {}
    if wds_index is not None:
        extra["wds"] = {
            "shards": len(wds_index.shards),
            "samples": wds_index.total_samples,
            "index": run.out.url_of(WDS_INDEX),
        }
    if batch.interrupted:
        extra["interrupted"] = {
            "finished": batch.finished,
            "abandoned": batch.abandoned,
            "not_started": batch.total - batch.finished - batch.abandoned,
        }
    if batch.stopped:
        extra["stopped"] = f"on_error=stop: {batch.total - batch.finished} bundle(s) not started"
    return RunSummary(
        out=run.out.url,
        run_id=run.run_id,
        entries=run.catalog.entries(batch.rows, ordered=True),
        findings=found.findings,
        seconds=seconds,
        frames=batch.frames,
        extra=extra,
        interrupted=batch.interrupted,
        not_done=batch.total - batch.finished,
    )
