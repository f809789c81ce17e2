"""Run a batch: discover bundles, convert each as a task, keep the catalog, summarise.

The driver (this module, with ``run.driver``) is the only writer of the catalog; tasks write
their own session's outputs to staging, and the driver commits them. Each committed session's
row is appended to the catalog's log at once (``output.catalog``), so a killed run loses at most
the sessions that were in flight, and a re-run skips what is done (by source hashes) and redoes
the rest. The driver's cost per session does not grow with the catalog: rows are kept compactly
in memory, logged in O(1) and compacted into ``catalog.parquet`` on a geometric schedule.
"""

from __future__ import annotations

import os
import time
import uuid
from array import array
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from reacture_convert.errors import ConfigError
from reacture_convert.formats.wds.index import WdsIndex
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.discover import discover
from reacture_convert.output.catalog import Catalog, CatalogEntry
from reacture_convert.output.layout import WDS_INDEX
from reacture_convert.output.naming import session_name
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.driver import (
    SessionRunner,
    Task,
    archive_entries,
    forget_listings,
)
from reacture_convert.run.scheduler import open_scheduler
from reacture_convert.run.summary import RunSummary
from reacture_convert.writers.card import write_card
from reacture_convert.writers.webdataset import SessionTar, write_shards

__all__ = ["run_convert"]

ProgressFn = Callable[[CatalogEntry, int, int], None]
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
    check_inputs(paths, out)
    forget_listings(out, paths, options.input_options)
    found = discover(list(paths), options.input_options)
    if not found.bundles and not archive_entries(found.findings, run_id):
        # nothing to convert and nothing to record: OUT is not created or touched
        return RunSummary(
            out=out.url,
            run_id=run_id,
            entries=(),
            findings=found.findings,
            seconds=time.perf_counter() - started,
        )
    with lock_output(out, wait=wait_for_lock) as held:
        total = len(found.bundles)
        size = sum(f.size for b in found.bundles for f in b.files.values())
        # A local cluster starts on a thread from here, while the catalog loads; the
        # scheduler's first use waits for it.
        with open_scheduler(scheduler, workers, n_tasks=total, total_bytes=size) as sched:
            catalog = Catalog.load(out, guard=held.check)
            out.clear_staging()

            groups: dict[str, list[BundleRef]] = defaultdict(list)
            for b in found.bundles:
                groups[session_name(b.prefix)].append(b)
            # a name's later bundles wait for its first, which wins the name; a bundle's previous
            # row is the session's live row when it starts (or the winner's entry, when live)
            waiting = {
                name: deque(sorted(bs, key=lambda b: b.source)) for name, bs in groups.items()
            }
            ready: deque[tuple[BundleRef, ConvertOptions, CatalogEntry | None]] = deque(
                (waiting[name].popleft(), options, None) for name in sorted(waiting)
            )

            rows = array("q", [catalog.record(e) for e in archive_entries(found.findings, run_id)])
            session_tars: dict[str, SessionTar] = {}
            finished = 0
            frames = 0
            stopped = False
            # Tasks are fed a few at a time (bounded in-flight work, and a stop policy that can
            # take effect: one at a time on ``sync``, so ``stop`` is exact there).
            runner = SessionRunner(out, catalog, run_id, sched.submit)
            grouping = sched.capacity > 1 and not stop_on_error

            def task() -> tuple[tuple[str, str], Task]:
                bundle, opts, peer = ready.popleft()
                previous = peer or catalog.live(session_name(bundle.prefix))
                return (bundle.source, bundle.prefix), (bundle, opts, previous)

            def feed() -> None:
                while ready and runner.tasks < sched.capacity and not stopped:
                    group = [task()]
                    # sessions with a live row to compare with are likely skipped: a hash each;
                    # several go to one task (up to GROUP_BYTES of input) when the scheduler
                    # is remote (a round trip per session would cost more than its hash)
                    size = _size(group[0][1][0])
                    while grouping and group[-1][1][2] is not None and ready and size < GROUP_BYTES:
                        nxt = ready[0]
                        if (nxt[2] or catalog.live(session_name(nxt[0].prefix))) is None:
                            break
                        group.append(task())
                        size += _size(group[-1][1][0])
                    runner.start_group(group)

            feed()
            for key, value in sched.results():
                for done in runner.finish_task(key, value):
                    entry, name = done.entry, done.run.name
                    rows.append(done.row)
                    if entry.status is Status.CONVERTED:
                        frames += entry.n_frames or 0
                    if done.session_tar is not None:
                        session_tars[name] = done.session_tar
                    finished += 1
                    if progress is not None:
                        progress(entry, finished, total)
                    if stop_on_error and not entry.status.is_ok:
                        stopped = True
                    if waiting.get(name):
                        # the rest of a name's bundles: duplicates of the winner, or conflicts
                        peer = entry if entry.status.is_live else None
                        nxt = waiting[name].popleft()
                        ready.appendleft((nxt, replace(options, force=False), peer))
                catalog.flush()
                feed()
        catalog.flush(final=True)
        if session_tars and not stopped:  # the merged format (shards) was asked for
            tars = [session_tars[k] for k in sorted(session_tars)]
            wds_index = write_shards(out, tars, options.wds)
        write_card(out, catalog.view())
        out.clear_staging()
    extra: dict[str, Any] = {}
    if wds_index is not None:
        extra["wds"] = {
            "shards": len(wds_index.shards),
            "samples": wds_index.total_samples,
            "index": out.url_of(WDS_INDEX),
        }
    if stopped:
        extra["stopped"] = f"on_error=stop: {total - finished} bundle(s) not started"
    return RunSummary(
        out=out.url,
        run_id=run_id,
        entries=catalog.entries(rows, ordered=True),
        findings=found.findings,
        seconds=time.perf_counter() - started,
        frames=frames,
        extra=extra,
    )
