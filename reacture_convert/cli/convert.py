"""``reacture-convert convert`` and ``run`` (a job file): batch conversion and its output."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import click

from reacture_convert.cli.common import (
    BYTES,
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
from reacture_convert.cli.watch import allow_other_files_option, check_out_folder, watch_and_report
from reacture_convert.errors import ConfigError
from reacture_convert.findings import Severity
from reacture_convert.formats.wds.encodings import ENCODINGS
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.run.batch import ProgressFn, check_inputs, run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.options import ON_ERROR
from reacture_convert.run.summary import RunSummary

if TYPE_CHECKING:
    from reacture_convert.run.jobs import Job


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
    chunk_frames: int,
    shard_frames: int | None,
    codec: str,
    shard_size: int | None,
    shard_count: int | None,
    shuffle_seed: int | None,
    frame_encoding: str,
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

    A re-run skips unchanged sessions and finishes what an interrupted run left. Exit 0 when
    all converted (or skipped), 1 when some were rejected, conflicted or failed.
    """
    values = {
        "formats": formats,
        "force": force,
        "chunk_frames": chunk_frames,
        "shard_frames": shard_frames,
        "codec": codec,
        "shard_size": shard_size,
        "shard_count": shard_count,
        "shuffle": shuffle_seed,
        "encoding": frame_encoding,
        "append": append,
        "allow_other_files": allow_other_files,
    }
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
    check_out_folder(out, options)
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
        )
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    elif not quiet:
        print_summary(summary)
    exit_with(summary.ok)


def print_summary(summary: RunSummary) -> None:
    """One line per bundle (with the errors of those not converted), then the totals."""
    for e in summary.entries:
        colour = "green" if e.status is Status.CONVERTED else "blue" if e.status.is_ok else "red"
        name = e.session or e.source
        click.echo(
            f"{click.style(f'{e.status:<9}', fg=colour)} {name}"
            + (f"  ({e.n_frames} frames)" if e.n_frames is not None else "")
            + (f"  {e.reason}" if e.reason and e.status is not Status.CONVERTED else "")
        )
        if not e.status.is_ok:
            for f in e.findings:
                if f.severity is Severity.ERROR:
                    click.echo(finding_line(f))
    wds = summary.extra.get("wds")
    if wds:
        click.echo(
            f"webdataset: {wds['samples']} samples in {wds['shards']} shard(s), "
            f"index {wds['index']}"
        )
    shown = [f for f in summary.findings if f.severity is not Severity.INFO]
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
def progress_reporter(enabled: bool) -> Iterator[ProgressFn | None]:
    """A rich progress bar on a terminal (sessions done / total, frames/s); nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    frames = 0
    with Progress(
        TextColumn("converting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("sessions  {task.fields[rate]}  {task.fields[last]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("convert", total=None, rate="", last="")

        def update(entry: CatalogEntry, done: int, total: int) -> None:
            nonlocal frames
            if entry.status == Status.CONVERTED:
                frames += entry.n_frames or 0
            rate = frames / max(time.perf_counter() - started, 1e-9)
            bar.update(
                task,
                completed=done,
                total=total,
                rate=f"{rate:,.0f} frames/s",
                last=f"{entry.status} {entry.session or entry.source}",
            )

        yield update
