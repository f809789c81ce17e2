"""``reacture-convert convert`` and ``run`` (a job file): batch conversion and its output."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import click

from reacture_convert.cli.common import (
    BYTES,
    EXIT_INTERRUPTED,
    FORMATS,
    NO_BUNDLE,
    ON_ERROR_HELP,
    SCHEDULER,
    build_options,
    counts_line,
    exit_on_error,
    exit_with,
    finding_line,
    json_option,
    out_option,
    quiet_option,
    scheduler_options,
    storage_option,
    wait_option,
    with_options,
    zarr_options,
)
from reacture_convert.cli.watch import allow_other_files_option, watch_and_report
from reacture_convert.errors import ConfigError
from reacture_convert.findings import Finding, Severity, once_per_code
from reacture_convert.formats.wds.compression import COMPRESSIONS, DEFAULT_LEVEL
from reacture_convert.formats.wds.encodings import ENCODINGS
from reacture_convert.output.status import Status
from reacture_convert.run.options import ON_ERROR

# The converter (and numpy, pyarrow, fsspec with it) is imported when a command runs, not
# when the command line is built: ``--help`` and the other commands load none of it.
if TYPE_CHECKING:
    from rich.console import Console

    from reacture_convert.output.storage import Output
    from reacture_convert.run.convert import ConvertOptions
    from reacture_convert.run.interrupt import Resumed
    from reacture_convert.run.jobs import Job
    from reacture_convert.run.progress import (
        FramesWritten,
        ProgressEvent,
        ProgressFn,
        SessionDone,
    )
    from reacture_convert.run.summary import RunSummary


@click.command()
@click.argument("paths", nargs=-1, required=True)
@out_option
@click.option(
    "--format",
    "formats",
    type=FORMATS,
    default="zarr",
    show_default=True,
    metavar="FORMATS",
    help="Comma-separated: zarr (Zarr + rows + alignment table), wds (WebDataset shards).",
)
@click.option(
    "--force", is_flag=True, help="Replace a converted session whose source bytes changed."
)
@click.option(
    "--readmit",
    multiple=True,
    metavar="SESSION",
    help="Convert this removed session again (`reacture-convert remove`) when its bundle is "
    "met; repeatable. Without it a removed session's bytes are skipped as `removed`.",
)
@zarr_options
@click.option(
    "--shard-size",
    type=BYTES,
    default=None,
    metavar="BYTES",
    help="WebDataset shard size target (e.g. 256MB, 1GiB). [default: 256MiB]",
)
@click.option(
    "--shard-count",
    type=click.IntRange(1),
    default=None,
    help="Exactly this many WebDataset shards (wins over --shard-size).",
)
@click.option(
    "--shuffle",
    "shuffle_seed",
    type=int,
    default=None,
    metavar="SEED",
    help="Interleave samples of all sessions in a seeded pseudo-random order.",
)
@click.option(
    "--frame-encoding",
    type=click.Choice(ENCODINGS),
    default="npy",
    show_default=True,
    help="WebDataset frame member: npy (exact, raw), webp or png (lossless and compressed: "
    "webp ~70x smaller than npy on game frames, png ~30x; both slower to read).",
)
@click.option(
    "--shard-compression",
    type=click.Choice(COMPRESSIONS),
    default="none",
    show_default=True,
    help="WebDataset shard files: none (.tar) or gzip (.tar.gz, flushed after every run of 32 "
    "samples so that a run is one ranged read; a plain .tar.gz to webdataset, tarfile and "
    "Hugging Face datasets). With --frame-encoding webp: about the Zarr store's bytes.",
)
@click.option(
    "--shard-compression-level",
    type=click.IntRange(1, 9),
    default=DEFAULT_LEVEL,
    show_default=True,
    help="gzip level of --shard-compression gzip (1 fastest, 9 smallest).",
)
@click.option(
    "--append",
    is_flag=True,
    help="Add the sessions that OUT's WebDataset shards lack as new shards, leaving the "
    "old shards as they are (else the shard set is rewritten).",
)
@scheduler_options
@click.option(
    "--on-error",
    type=click.Choice(ON_ERROR),
    default="continue",
    show_default=True,
    help=ON_ERROR_HELP,
)
@allow_other_files_option
@with_options(wait_option, quiet_option, json_option, storage_option)
def convert(
    paths: tuple[str, ...],
    out: str,
    formats: tuple[str, ...],
    force: bool,
    readmit: tuple[str, ...],
    chunk_frames: int,
    shard_frames: int | None,
    codec: str,
    shard_size: int | None,
    shard_count: int | None,
    shuffle_seed: int | None,
    frame_encoding: str,
    shard_compression: str,
    shard_compression_level: int,
    append: bool,
    scheduler: str,
    workers: int | None,
    on_error: str,
    allow_other_files: bool | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """Convert every valid bundle under PATHS into OUT and record every bundle in
    OUT/catalog.parquet.

    A re-run skips unchanged sessions and finishes what an interrupted run left; the bytes of
    a removed session are skipped as removed (--readmit SESSION converts them again). Exit 0
    when all converted (or skipped, or removed), 1 when some were rejected, conflicted or
    failed.
    """
    values = {
        "formats": formats,
        "force": force,
        "readmit": readmit or None,
        "chunk_frames": chunk_frames,
        "shard_frames": shard_frames,
        "codec": codec,
        "shard_size": shard_size,
        "shard_count": shard_count,
        "shuffle": shuffle_seed,
        "encoding": frame_encoding,
        "compression": shard_compression,
        "compression_level": shard_compression_level,
        "append": append,
        "allow_other_files": allow_other_files,
    }
    from reacture_convert.output.storage import Output
    from reacture_convert.run.batch import check_inputs

    output = Output(out, storage_options)
    try:
        check_inputs(paths, output)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="PATHS / --out") from None
    run_and_report(
        list(paths),
        output,
        build_options(values, storage_options),
        scheduler,
        workers,
        wait,
        quiet,
        as_json,
        stop_on_error=on_error == "stop",
    )


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "--input", "-i", "inputs", multiple=True, help="Replace the job's inputs (repeatable)."
)
@click.option("--out", "-o", default=None, help="Replace the job's output.")
@click.option(
    "--format",
    "formats",
    type=FORMATS,
    default=None,
    metavar="FORMATS",
    help="Replace the job's formats (comma-separated: zarr, wds).",
)
@click.option(
    "--scheduler",
    type=SCHEDULER,
    default=None,
    metavar="SCHEDULER",
    help="Replace the job's scheduler: auto, sync, threads, processes or tcp://HOST:PORT.",
)
@click.option(
    "--workers", "-j", type=click.IntRange(1), default=None, help="Replace the job's workers."
)
@click.option(
    "--on-error",
    type=click.Choice(ON_ERROR),
    default=None,
    help="Replace the job's on_error. " + ON_ERROR_HELP,
)
@click.option("--force", is_flag=True, default=None, help="Replace sessions whose sources changed.")
@click.option(
    "--shuffle",
    "shuffle_seed",
    type=int,
    default=None,
    metavar="SEED",
    help="Replace the job's WebDataset shuffle seed.",
)
@allow_other_files_option
@wait_option
@click.option("--once", is_flag=True, help="For a watch job: convert what is ready, then exit.")
@with_options(quiet_option, json_option, storage_option)
def run(
    job_file: str,
    inputs: tuple[str, ...],
    out: str | None,
    formats: tuple[str, ...] | None,
    scheduler: str | None,
    workers: int | None,
    on_error: str | None,
    force: bool | None,
    shuffle_seed: int | None,
    allow_other_files: bool | None,
    wait: bool,
    once: bool,
    quiet: bool,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """Run the job described by JOB_FILE (see pipelines/*.toml); options given here override
    the file. --storage-option applies to both inputs and output.

    \b
    Example:  reacture-convert run pipelines/default.toml --out /tmp/converted
    """
    from reacture_convert.run.jobs import load_job

    overrides: dict[str, Any] = {
        "inputs": inputs,
        "out": out,
        "formats": formats,
        "scheduler": scheduler,
        "workers": workers,
        "on_error": on_error,
        "force": force or None,
        "shuffle": shuffle_seed,
        "allow_other_files": allow_other_files,
        "input_options": storage_options or None,
        "output_options": storage_options or None,
    }
    with exit_on_error():
        job = load_job(job_file, overrides)
    if not (quiet or as_json):
        click.echo(
            f"job {job.name}: {', '.join(job.inputs)} -> {job.out} "
            f"[{','.join(job.options.formats)}]",
            err=True,
        )
    run_job(job, once, wait, quiet, as_json)


def run_job(job: Job, once: bool, wait: bool, quiet: bool, as_json: bool) -> NoReturn:
    """A loaded job: a watcher (``once`` from the command line or the file) or a batch."""
    from reacture_convert.output.storage import Output

    paths, output = list(job.inputs), Output(job.out, job.output_storage)
    stop_on_error = job.on_error == "stop"
    if job.watch:
        once_options = replace(job.watch_options, once=once or job.watch_options.once)
        watch_and_report(
            paths,
            output,
            job.options,
            once_options,
            job.scheduler,
            job.workers,
            wait,
            quiet,
            as_json,
            stop_on_error=stop_on_error,
        )
    else:
        run_and_report(
            paths,
            output,
            job.options,
            job.scheduler,
            job.workers,
            wait,
            quiet,
            as_json,
            stop_on_error=stop_on_error,
        )


def run_and_report(
    paths: list[str],
    out: Output,
    options: ConvertOptions,
    scheduler: str,
    workers: int | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    stop_on_error: bool = False,
) -> NoReturn:
    """``run_convert``, then its summary (text or JSON), then the exit code."""
    from reacture_convert.run.batch import run_convert

    try:
        with exit_on_error(), progress_reporter(enabled=not (quiet or as_json)) as progress:
            summary = run_convert(
                paths,
                out,
                options,
                scheduler=scheduler,
                workers=workers,
                progress=progress,
                wait_for_lock=wait,
                stop_on_error=stop_on_error,
                on_resume=None if quiet or as_json else say_resuming,
            )
    except KeyboardInterrupt:  # before any session started: nothing to undo
        click.echo("interrupted before any session started", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    elif not quiet and (summary.entries or not summary.interrupted):
        print_summary(summary)
    if summary.interrupted:
        exit_interrupted(summary, quiet or as_json)
    exit_with(summary.ok)


def say_resuming(resumed: Resumed) -> None:
    click.echo(
        f"resuming an interrupted run: {resumed.converted} sessions already converted", err=True
    )


def exit_interrupted(summary: RunSummary, quiet: bool) -> NoReturn:
    """Say what an interrupted run did and leave at once: a session task abandoned on a thread
    here (sync, threads) must not hold the exit up (it writes nothing more)."""
    if not quiet:
        click.echo(
            f"interrupted: {len(summary.entries)} converted, {summary.not_done} not started; "
            "run the same command again to finish",
            err=True,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def warning_line(f: Finding, n: int) -> str:
    """A kind of warning, once, in words: its first finding's message, and how many more."""
    severity = click.style(f"{f.severity:<7}", fg="yellow")
    more = f" (and {n - 1} more like it)" if n > 1 else ""
    return f"    {severity} {f.code:<24} {f.message}{more}"


def print_summary(summary: RunSummary) -> None:
    """One line per bundle, with the errors of those not converted and each kind of warning
    of those converted once, then the findings outside any bundle (those that are no bundle's
    row), then the totals."""
    printed: set[Finding] = set()
    for e in summary.entries:
        colour = "green" if e.status is Status.CONVERTED else "blue" if e.status.is_ok else "red"
        name = e.session or e.source
        click.echo(
            f"{click.style(f'{e.status:<9}', fg=colour)} {name}"
            + (f"  ({e.n_frames} frames)" if e.n_frames is not None else "")
            + (f"  {e.reason}" if e.reason and e.status is not Status.CONVERTED else "")
            + (f"  (--readmit {name} converts it again)" if e.status is Status.REMOVED else "")
        )
        if not e.status.is_ok:
            for f in e.findings:
                if f.severity is Severity.ERROR:
                    click.echo(finding_line(f))
        elif e.status is Status.CONVERTED:
            warnings = [f for f in e.findings if f.severity is Severity.WARNING]
            for f, n in once_per_code(warnings):
                click.echo(warning_line(f, n))
        printed.update(e.findings)
    wds = summary.extra.get("wds")
    if wds:
        click.echo(
            f"webdataset: {wds['samples']} samples in {wds['shards']} shard(s), "
            f"index {wds['index']}"
        )
    shown = [f for f in summary.findings if f.severity is not Severity.INFO and f not in printed]
    if shown:
        click.echo("outside any bundle:")
        for f in shown:
            click.echo(finding_line(f))
    rate = (
        f", {summary.frames / summary.seconds:.0f} frames/s"
        if summary.seconds and summary.frames
        else ""
    )
    if not summary.entries:
        click.echo(f"{NO_BUNDLE}: nothing was written to {summary.out}")
        return
    counts = counts_line(summary.counts, NO_BUNDLE)
    click.echo(f"{counts} in {summary.seconds:.1f} s{rate} -> {summary.out}")


@contextlib.contextmanager
def progress_reporter(enabled: bool, console: Console | None = None) -> Iterator[ProgressFn | None]:
    """A rich progress display of the run's events on a terminal (stderr, or ``console``):
    sessions done of all, and each session in flight in frames and bytes with its rate and
    ETA; "waiting for the lock held by ..." while another run holds OUT. Nothing otherwise."""
    if not enabled:
        yield None
        return
    if console is None:  # (not rich's own test: FORCE_COLOR would make any stderr a terminal)
        if not sys.stderr.isatty():
            yield None  # rich is not even imported (~35 ms of a run's start)
            return
        from rich.console import Console

        console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with _ProgressView(console) as view:
        yield view


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def frames_text(event: FramesWritten) -> str:
    """``1,234/20,000 frames  350.1/983.0 MB  2,900 frames/s  ETA 0:00:05`` (what is known)."""
    of = f"/{event.n_frames:,}" if event.n_frames is not None else ""
    total = f"/{_size(event.total_bytes)}" if event.total_bytes is not None else ""
    eta = event.eta
    return (
        f"{event.frames:,}{of} frames  {_size(event.bytes)}{total}  {event.rate:,.0f} frames/s"
        + (f"  ETA {dt.timedelta(seconds=round(eta))}" if eta is not None else "")
    )


class _ProgressView:
    """The rich display ``progress_reporter`` yields; called with events on any thread."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("starting", total=None, info="")
        self.sessions: dict[str, Any] = {}  # session in flight -> its task
        self.frames: dict[str, int] = {}  # frames written of sessions in flight
        self.finished_frames = 0
        self.finished = 0  # sessions done
        self.done: set[str] = set()
        self.total: int | None = None
        self.started = time.perf_counter()
        self.lock = threading.Lock()

    def __enter__(self) -> _ProgressView:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def _overall(self) -> None:
        done = self.finished
        frames = self.finished_frames + sum(self.frames.values())
        rate = frames / max(time.perf_counter() - self.started, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        self.bar.update(
            self.task,
            description="converting",
            completed=done,
            total=self.total,
            info=f"{done}{of} sessions  {frames:,} frames  {rate:,.0f} frames/s",
        )

    def __call__(self, event: ProgressEvent) -> None:
        from reacture_convert.run.progress import FramesWritten, Started, WaitingForLock

        with self.lock:
            if isinstance(event, WaitingForLock):
                who = event.holder or "another run"
                self.bar.update(
                    self.task,
                    description=f"waiting for the lock held by {who}",
                    info=event.out,
                    refresh=True,
                )
            elif isinstance(event, Started):
                self.total = event.sessions
                self._overall()
            elif isinstance(event, FramesWritten):
                self._frames(event)
            else:
                self._session_done(event)

    def _frames(self, event: FramesWritten) -> None:
        name = event.session
        if name in self.done:
            return  # (an event that arrived after its session's result)
        if name not in self.sessions:
            self.sessions[name] = self.bar.add_task(f"  {name}", total=event.n_frames, info="")
        self.frames[name] = max(self.frames.get(name, 0), event.frames)
        self.bar.update(
            self.sessions[name],
            completed=self.frames[name],
            total=event.n_frames,
            info=frames_text(event),
        )
        self._overall()

    def _session_done(self, event: SessionDone) -> None:
        entry = event.entry
        name = entry.session or entry.source
        self.done.add(name)
        self.frames.pop(name, None)
        if name in self.sessions:
            self.bar.remove_task(self.sessions.pop(name))
        if entry.status is Status.CONVERTED:
            self.finished_frames += entry.n_frames or 0
        self.total, self.finished = event.total, event.done
        self._overall()
