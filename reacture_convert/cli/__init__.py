"""The ``reacture-convert`` command: a thin click layer over the library.

Exit codes (every command): 0 success; 1 some bundle was invalid, rejected, failed or did not
verify; 2 usage error (bad option, missing argument); 3 the run could not start or finish
(output locked or unwritable, bad job file).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import click

from reacture_convert import __version__
from reacture_convert.errors import ReactureError
from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.validate import Report, validate_bundle
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import FORMATS, ConvertOptions
from reacture_convert.run.summary import RunSummary
from reacture_convert.writers.webdataset import DEFAULT_SHARD_SIZE, ENCODINGS, WdsOptions
from reacture_convert.writers.zarr import CODECS, ZarrOptions

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
DEFAULT_ZARR = ZarrOptions()


def parse_storage_options(values: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs (``--storage-option``) to fsspec options; nested with dots
    (``client_kwargs.endpoint_url=http://...``); ``true``/``false``/numbers are typed."""
    opts: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--storage-option")
        key, raw = item.split("=", 1)
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                pass
        target = opts
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return opts


def storage_option(f: F) -> F:
    return click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="fsspec option for s3:// and other URLs, repeatable "
        "(e.g. client_kwargs.endpoint_url=http://127.0.0.1:9000, anon=true).",
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document for machines."
    )(f)


def _check_scheduler(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--scheduler: a usage error (exit 2) when it names no scheduler."""
    from reacture_convert.run.scheduler import check_scheduler

    if value is None:
        return None
    try:
        return check_scheduler(value)
    except ReactureError as e:
        raise click.BadParameter(str(e)) from None


def _fail(e: ReactureError) -> None:
    click.echo(f"Error: {e}", err=True)
    sys.exit(EXIT_FAILED)


def _finding_line(f: Finding) -> str:
    colour = {"error": "red", "warning": "yellow", "info": "cyan"}[str(f.severity)]
    return (
        f"    {click.style(f'{f.severity:<7}', fg=colour)} {f.code:<24} {f.location()}: {f.message}"
    )


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reacture-convert")
def cli() -> None:
    """Ingest ReActure session bundles, validate them, and convert them losslessly to Zarr v3 +
    Parquet (and WebDataset shards), with exact frame/row/time alignment.

    \b
    Exit codes: 0 ok; 1 some bundle invalid, rejected or failed; 2 usage error;
    3 the run could not start or finish (output locked, unwritable, bad job file).
    """


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@json_option
@storage_option
def validate(paths: tuple[str, ...], as_json: bool, storage_options: tuple[str, ...]) -> None:
    """Find bundles under PATHS (folders, .zip/.tar/.tar.gz archives, globs, URLs) and report
    every problem of each: file, line or frame index, and what is wrong.

    Prints one line per bundle, then its findings. Exit 0 when every bundle is valid (warnings
    allowed); 1 when any is invalid, when no bundle is found, or when an input is missing or an
    archive member was refused (errors outside any bundle).
    """
    opts = parse_storage_options(storage_options)
    found = discover(list(paths), opts)
    reports = [_judge(b, opts) for b in found.bundles]
    loose_errors = any(f.severity is Severity.ERROR for f in found.findings)
    ok = all(r.ok for r in reports) and not loose_errors and bool(reports)
    if as_json:
        doc = {
            "ok": ok,
            "bundles": [_report_dict(r) for r in reports],
            "findings": [f.to_dict() for f in found.findings],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for r in reports:
            _print_report(r)
        if found.findings:
            click.echo("outside any bundle:")
            for f in sorted(found.findings, key=lambda f: _ORDER[f.severity]):
                click.echo(_finding_line(f))
        n_bad = sum(not r.ok for r in reports)
        click.echo(f"{len(reports)} bundle(s): {len(reports) - n_bad} valid, {n_bad} invalid")
        if not reports:
            click.echo(
                "no bundle found (a bundle is <prefix>_metadata.json, _data.jsonl, "
                "_frames.npy, _timestamps.npy, _README.md)",
                err=True,
            )
    sys.exit(EXIT_OK if ok else EXIT_INVALID)


def _judge(bundle: BundleRef, opts: dict[str, Any]) -> Report:
    """Validate one bundle; an I/O failure is that bundle's finding, never the end of the run."""
    try:
        return validate_bundle(bundle, opts)
    except Exception as e:  # noqa: BLE001 - one bundle's failure is its finding, never the run's
        return Report(
            bundle,
            (
                finding(
                    "READ_FAILED", bundle.prefix, f"{type(e).__name__}: {e}; check access and retry"
                ),
            ),
        )


def _report_dict(r: Report) -> dict[str, Any]:
    return {
        "prefix": r.bundle.prefix,
        "source": r.bundle.source,
        "valid": r.ok,
        "n_frames": r.n_frames,
        "n_rows": r.n_rows,
        "n_periodic": r.n_periodic,
        "n_events": r.n_events,
        "n_actions": r.n_actions,
        "blank_frames": r.blank_frames,
        "metadata_session_id": r.metadata_session_id,
        "findings": [f.to_dict() for f in r.findings],
    }


def _print_report(r: Report) -> None:
    state = (
        click.style("valid  ", fg="green") if r.ok else click.style("INVALID", fg="red", bold=True)
    )
    n_frames = r.n_frames if r.n_frames is not None else "?"
    n_rows = r.n_rows if r.n_rows is not None else "?"
    counts = f"{n_frames} frames, {n_rows} rows"
    click.echo(f"{state} {r.bundle.prefix}  ({counts})  {r.bundle.source}")
    for f in sorted(r.findings, key=lambda f: _ORDER[f.severity]):
        click.echo(_finding_line(f))


class ByteSize(click.ParamType):  # type: ignore[type-arg]
    """A byte count with an optional unit: 1000, 64KB, 256MiB, 1GB."""

    name = "bytes"
    UNITS = {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
    }

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().replace(" ", "")
        number = text.rstrip("kmgib")
        unit = text[len(number) :]
        try:
            n = int(float(number) * self.UNITS[unit])
        except (KeyError, ValueError):
            self.fail(f"{value!r} is not a size like 256MiB, 500MB or 1000000", param, ctx)
        if n < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return n


# Options shared by `convert` and `watch` (one definition, one help text).
out_option = click.option(
    "--out",
    "-o",
    required=True,
    metavar="OUT",
    help="Output dataset: a folder or an fsspec URL (s3://bucket/prefix).",
)
zarr_options = (
    click.option(
        "--chunk-frames",
        type=click.IntRange(1),
        default=DEFAULT_ZARR.chunk_frames,
        show_default=True,
        help="Frames per Zarr chunk.",
    ),
    click.option(
        "--shard-frames",
        type=click.IntRange(1),
        default=None,
        help="Frames per Zarr shard (sharding codec): few big objects per session.",
    ),
    click.option(
        "--codec",
        type=click.Choice(CODECS),
        default=DEFAULT_ZARR.codec,
        show_default=True,
        help="Compression of Zarr frame chunks.",
    ),
)
scheduler_options = (
    click.option(
        "--scheduler",
        default="auto",
        show_default=True,
        metavar="SCHEDULER",
        callback=_check_scheduler,
        help="auto, sync, threads, processes, or tcp://HOST:PORT of a Dask cluster.",
    ),
    click.option(
        "--workers",
        "-j",
        type=click.IntRange(1),
        default=None,
        help="Sessions converted at once on local Dask workers (default: one per core).",
    ),
)


def with_options(*opts: Callable[[F], F]) -> Callable[[F], F]:
    """Apply click options in the order they are listed (as --help shows them)."""

    def apply(f: F) -> F:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return apply


convert_options = with_options(
    out_option,
    click.option(
        "--format",
        "formats",
        default="zarr",
        show_default=True,
        metavar="FORMATS",
        help="Comma-separated: zarr (Zarr + rows + alignment table), wds (shards).",
    ),
    click.option(
        "--force",
        is_flag=True,
        help="Replace a converted session whose source bytes changed.",
    ),
    *zarr_options,
    click.option(
        "--shard-size",
        type=ByteSize(),
        default=None,
        metavar="BYTES",
        help="WebDataset shard size target (e.g. 256MB, 1GiB). [default: 256MiB]",
    ),
    click.option(
        "--shard-count",
        type=click.IntRange(1),
        default=None,
        help="Exactly this many WebDataset shards (wins over --shard-size).",
    ),
    click.option(
        "--shuffle",
        "shuffle_seed",
        type=int,
        default=None,
        metavar="SEED",
        help="Interleave samples of all sessions in a seeded pseudo-random order.",
    ),
    click.option(
        "--frame-encoding",
        type=click.Choice(ENCODINGS),
        default="npy",
        show_default=True,
        help="WebDataset frame member: npy (exact) or png (lossless, smaller, slower).",
    ),
    *scheduler_options,
    click.option(
        "--on-error",
        type=click.Choice(["continue", "stop"]),
        default="continue",
        show_default=True,
        help="continue: record bad bundles and go on; stop: start nothing new after one.",
    ),
    click.option("--wait", is_flag=True, help="Wait for another run on OUT instead of failing."),
    click.option("--quiet", "-q", is_flag=True, help="No progress output."),
)


def build_options(
    formats: str,
    force: bool,
    chunk_frames: int,
    shard_frames: int | None,
    codec: str,
    input_options: dict[str, Any],
    shard_size: int | None = None,
    shard_count: int | None = None,
    shuffle_seed: int | None = None,
    frame_encoding: str = "npy",
) -> ConvertOptions:
    wanted = tuple(x.strip() for x in formats.split(",") if x.strip())
    bad = [x for x in wanted if x not in FORMATS]
    if bad or not wanted:
        raise click.BadParameter(
            f"unknown format {', '.join(bad) or formats!r}; choose from {', '.join(FORMATS)}",
            param_hint="--format",
        )
    try:
        zopts = ZarrOptions(chunk_frames=chunk_frames, shard_frames=shard_frames, codec=codec)
        wopts = WdsOptions(
            shard_size=shard_size or DEFAULT_SHARD_SIZE,
            shard_count=shard_count,
            shuffle_seed=shuffle_seed,
            encoding=frame_encoding,
        )
    except ReactureError as e:
        raise click.BadParameter(str(e)) from None
    return ConvertOptions(
        formats=wanted, zarr=zopts, wds=wopts, force=force, input_options=input_options
    )


def _print_summary(summary: RunSummary) -> None:
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
                    click.echo(_finding_line(f))
    wds = summary.extra.get("wds")
    if wds:
        click.echo(
            f"webdataset: {wds['samples']} samples in {wds['shards']} shard(s), "
            f"index {wds['index']}"
        )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "no bundle found"
    rate = (
        f", {summary.frames / summary.seconds:.0f} frames/s"
        if summary.seconds and summary.frames
        else ""
    )
    click.echo(f"{counts} in {summary.seconds:.1f} s{rate} -> {summary.out}")


@contextlib.contextmanager
def progress_reporter(enabled: bool) -> Iterator[Callable[[CatalogEntry, int, int], None] | None]:
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


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@convert_options
@json_option
@storage_option
def convert(
    paths: tuple[str, ...],
    out: str,
    formats: str,
    force: bool,
    chunk_frames: int,
    shard_frames: int | None,
    codec: str,
    shard_size: int | None,
    shard_count: int | None,
    shuffle_seed: int | None,
    frame_encoding: str,
    scheduler: str,
    workers: int | None,
    on_error: str,
    wait: bool,
    quiet: bool,
    as_json: bool,
    storage_options: tuple[str, ...],
) -> None:
    """Convert every valid bundle under PATHS into OUT and record every bundle in
    OUT/catalog.parquet.

    A re-run skips unchanged sessions and finishes what an interrupted run left. Exit 0 when
    all converted (or skipped), 1 when some were rejected, conflicted or failed.
    """
    opts = parse_storage_options(storage_options)
    options = build_options(
        formats,
        force,
        chunk_frames,
        shard_frames,
        codec,
        opts,
        shard_size,
        shard_count,
        shuffle_seed,
        frame_encoding,
    )
    _run_and_report(
        list(paths),
        Output(out, opts),
        options,
        scheduler,
        workers,
        wait,
        quiet,
        as_json,
        stop_on_error=on_error == "stop",
    )


def _run_and_report(
    paths: list[str],
    out: Output,
    options: ConvertOptions,
    scheduler: str,
    workers: int | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    stop_on_error: bool = False,
) -> None:
    try:
        with progress_reporter(enabled=not (quiet or as_json)) as progress:
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
    except ReactureError as e:
        _fail(e)
        return
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    elif not quiet:
        _print_summary(summary)
    sys.exit(EXIT_OK if summary.ok else EXIT_INVALID)


@cli.command()
@click.argument("out")
@click.option(
    "--sources",
    is_flag=True,
    help="Also compare with the original bundles, bit for bit (they must still exist).",
)
@json_option
@storage_option
def verify(out: str, sources: bool, as_json: bool, storage_options: tuple[str, ...]) -> None:
    """Re-read every converted session in OUT and check it against the catalog and the alignment
    table (frame hashes, counts, row<->frame agreement) and the WebDataset index.

    Exit 0 when everything holds, 1 on any mismatch (each one named).
    """
    from reacture_convert.read.verify import verify_dataset

    opts = parse_storage_options(storage_options)
    try:
        checked, problems = verify_dataset(Output(out, opts), sources=sources)
    except ReactureError as e:
        _fail(e)
        return
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": not problems,
                    "sessions_checked": checked,
                    "problems": [{"session": p.session, "problem": p.what} for p in problems],
                },
                indent=2,
            )
        )
    else:
        for p in problems:
            click.echo(click.style("MISMATCH ", fg="red") + str(p))
        what = "outputs and sources" if sources else "outputs"
        click.echo(
            f"{checked} session(s) checked ({what}): "
            + ("all exact" if not problems else f"{len(problems)} problem(s)")
        )
    sys.exit(EXIT_OK if not problems else EXIT_INVALID)


@cli.command()
@click.argument("job_file", type=click.Path(dir_okay=False))
@click.option(
    "--input", "-i", "inputs", multiple=True, help="Replace the job's inputs (repeatable)."
)
@click.option("--out", "-o", default=None, help="Replace the job's output.")
@click.option("--format", "formats", default=None, help="Replace the job's formats (zarr,wds).")
@click.option(
    "--scheduler",
    default=None,
    callback=_check_scheduler,
    help="auto, sync, threads, processes or tcp://HOST:PORT.",
)
@click.option("--workers", "-j", type=click.IntRange(1), default=None, help="Local Dask workers.")
@click.option(
    "--on-error",
    type=click.Choice(["continue", "stop"]),
    default=None,
    help="continue: record bad bundles and go on; stop: start nothing new after one.",
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
@click.option("--wait", is_flag=True, help="Wait for another run on OUT instead of failing.")
@click.option("--once", is_flag=True, help="For a watch job: convert what is ready, then exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@json_option
@storage_option
def run(
    job_file: str,
    inputs: tuple[str, ...],
    out: str | None,
    formats: str | None,
    scheduler: str | None,
    workers: int | None,
    on_error: str | None,
    force: bool | None,
    shuffle_seed: int | None,
    wait: bool,
    once: bool,
    quiet: bool,
    as_json: bool,
    storage_options: tuple[str, ...],
) -> None:
    """Run the job described by JOB_FILE (see pipelines/*.toml); options given here override
    the file. --storage-option applies to both inputs and output.

    \b
    Example:  reacture-convert run pipelines/default.toml --out /tmp/converted
    """
    from reacture_convert.run.jobs import load_job

    opts = parse_storage_options(storage_options)
    overrides: dict[str, Any] = {
        "inputs": inputs,
        "out": out,
        "formats": formats,
        "scheduler": scheduler,
        "workers": workers,
        "on_error": on_error,
        "force": force or None,
        "shuffle": shuffle_seed,
        "input_options": opts or None,
        "output_options": opts or None,
    }
    try:
        job = load_job(job_file, overrides)
    except ReactureError as e:
        _fail(e)
        return
    if not (quiet or as_json):
        click.echo(
            f"job {job.name}: {', '.join(job.inputs)} -> {job.out} "
            f"[{','.join(job.options.formats)}]",
            err=True,
        )
    if job.watch:
        _watch_and_report(
            list(job.inputs),
            Output(job.out, job.output_storage),
            job.options,
            replace(job.watch_options, once=once or job.watch_options.once),
            job.scheduler,
            job.workers,
            wait,
            quiet,
            as_json,
            stop_on_error=job.on_error == "stop",
        )
        return
    _run_and_report(
        list(job.inputs),
        Output(job.out, job.output_storage),
        job.options,
        job.scheduler,
        job.workers,
        wait,
        quiet,
        as_json,
        stop_on_error=job.on_error == "stop",
    )


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration: 5s, 500ms, 10m, 1h, or plain seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        from reacture_convert.run.watch import parse_duration

        try:
            return parse_duration(value)
        except ReactureError as e:
            self.fail(str(e), param, ctx)


class WatchPrinter:
    """What a watcher prints: on a terminal a live status line (stderr) under one line per
    finished session; with --json one JSON object per event on stdout (JSON lines); otherwise
    one plain line per finished session."""

    SHOWN = (
        *Status,
        "stopping",
        "error",
        "finding",
    )
    COLOURS = {"converted": "green", "skipped": "blue", "duplicate": "blue", "stopping": "yellow"}

    def __init__(self, as_json: bool, quiet: bool) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.live = not (as_json or quiet) and sys.stderr.isatty()
        self.last_line = 0.0

    def event(self, ev: dict[str, Any]) -> None:
        if self.as_json:
            click.echo(json.dumps(ev, default=str))
            return
        if self.quiet or ev["event"] not in self.SHOWN:
            return
        self.clear()
        kind = ev["event"]
        if kind == "stopping":
            click.echo(
                click.style("stopping", fg="yellow") + f": finishing {ev['converting']} "
                "session(s) in flight, starting no new one (signal again to abort)"
            )
            return
        name = ev.get("session") or ev.get("source") or ""
        text = f"{click.style(f'{kind:<9}', fg=self.COLOURS.get(kind, 'red'))} {name}"
        if kind == "converted":
            text += f"  ({ev['frames']} frames, {ev['seconds']:.1f} s)"
        elif ev.get("reason") or ev.get("message"):
            text += f"  {ev.get('reason') or ev.get('message')}"
        click.echo(text)

    def status(self, st: Any) -> None:
        now = time.monotonic()
        if self.live and now - self.last_line >= 0.2:
            self.last_line = now
            click.echo(f"\r\x1b[Kwatching: {st.line()}", nl=False, err=True)

    def clear(self) -> None:
        if self.live:
            click.echo("\r\x1b[K", nl=False, err=True)


def _watch_and_report(
    paths: list[str],
    out: Output,
    options: Any,
    watch_options: Any,
    scheduler: str,
    workers: int | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    stop_on_error: bool = False,
) -> None:
    from reacture_convert.run.watch import run_watch

    printer = WatchPrinter(as_json, quiet)
    try:
        summary = run_watch(
            paths,
            out,
            options,
            watch_options,
            scheduler=scheduler,
            workers=workers,
            wait_for_lock=wait,
            on_event=printer.event,
            on_status=printer.status,
            stop_on_error=stop_on_error,
        )
    except ReactureError as e:
        printer.clear()
        _fail(e)
        return
    printer.clear()
    if not (as_json or quiet):
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "nothing"
        click.echo(
            f"stopped ({summary.stopped}): {counts} in {summary.seconds:.1f} s -> {summary.out}"
        )
    if summary.aborted:
        sys.exit(EXIT_FAILED)
    # a service stopped on purpose exits 0; a cron run (--once) or on_error=stop says 1 when a
    # bundle was rejected or failed, like `convert`
    sys.exit(
        EXIT_INVALID if summary.stopped in ("once", "on_error") and not summary.ok else EXIT_OK
    )


@cli.command()
@click.argument("incoming", nargs=-1, required=True)
@out_option
@click.option(
    "--settle",
    type=Duration(),
    default="5s",
    show_default=True,
    help="A bundle is ready when its files have not changed for this long.",
)
@click.option(
    "--poll",
    type=Duration(),
    default="1s",
    show_default=True,
    help="How often to look at INCOMING.",
)
@click.option(
    "--incomplete-timeout",
    type=Duration(),
    default="10m",
    show_default=True,
    help="Record an upload that stays incomplete (or an unreadable archive) this long "
    "as rejected in the catalog.",
)
@click.option("--once", is_flag=True, help="Convert what is ready now, then exit (for cron).")
@click.option(
    "--force",
    is_flag=True,
    help="Replace a converted session when its upload is replaced with other bytes.",
)
@with_options(*zarr_options, *scheduler_options)
@click.option(
    "--wait", is_flag=True, help="Wait for another run or watcher on OUT instead of failing."
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per event (JSON lines) for log collectors.",
)
@storage_option
def watch(
    incoming: tuple[str, ...],
    out: str,
    settle: float,
    poll: float,
    incomplete_timeout: float,
    once: bool,
    force: bool,
    chunk_frames: int,
    shard_frames: int | None,
    codec: str,
    scheduler: str,
    workers: int | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    storage_options: tuple[str, ...],
) -> None:
    """Keep converting bundles as they arrive in INCOMING (folders, archives or URLs such as
    s3://bucket/incoming/) into OUT, each once its upload is complete and has settled.

    A bundle is converted when all its files are there and unchanged for --settle; an archive
    when it opens and has settled. Uploads that stay incomplete past --incomplete-timeout get a
    rejected row in the catalog. The catalog is the memory: a restarted watcher skips what is
    done. Ctrl-C/SIGTERM finishes the sessions in flight and exits 0; a second one aborts
    (exit 3). Exit 3 also when another run holds OUT (or --wait). With --once: exit 1 when a
    bundle was rejected or failed.
    """
    from reacture_convert.run.watch import WatchOptions

    opts = parse_storage_options(storage_options)
    options = build_options("zarr", force, chunk_frames, shard_frames, codec, opts)
    try:
        watch_options = WatchOptions(
            settle=settle, poll=poll, incomplete_timeout=incomplete_timeout, once=once
        )
    except ReactureError as e:
        raise click.BadParameter(str(e)) from None
    _watch_and_report(
        list(incoming),
        Output(out, opts),
        options,
        watch_options,
        scheduler,
        workers,
        wait,
        quiet,
        as_json,
    )


@cli.command()
@click.argument("target")
@click.argument("sessions", nargs=-1)
@click.option(
    "--html",
    "report_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the report: index.html, <session>.html and <session>_files/.",
)
@storage_option
def show(
    target: str, sessions: tuple[str, ...], report_dir: str, storage_options: tuple[str, ...]
) -> None:
    """Write a static HTML report (no server, no network) of a converted dataset TARGET or of
    unconverted bundles: per session a strip of frames shown right way up, timelines of
    battery/health/fuel/damage, speed and keys with pauses marked, event and action markers,
    the frame-cadence histogram and the validation findings; an index lists every session.

    SESSIONS (names or prefixes) limit the report to those sessions.
    """
    from reacture_convert.report import write_report

    try:
        result = write_report(
            target, report_dir, list(sessions) or None, parse_storage_options(storage_options)
        )
    except ReactureError as e:
        _fail(e)
        return
    click.echo(f"wrote {len(result.pages)} session page(s); open {result.index}")


@cli.command()
@click.argument("out")
@click.option(
    "--no-frames", is_flag=True, help="Skip per-channel frame statistics (rows only, fast)."
)
@json_option
@storage_option
def stats(out: str, no_frames: bool, as_json: bool, storage_options: tuple[str, ...]) -> None:
    """Per-field statistics over all periodic rows of OUT (count, mean, std, min, max of every
    numeric field; key-press and momentary-action frequencies) and per-channel frame mean/std:
    the numbers people normalise with. Writes OUT/stats.json and prints a table.
    """
    from reacture_convert.read.stats import compute_stats, format_stats, write_stats

    opts = parse_storage_options(storage_options)
    try:
        result = compute_stats(out, storage_options=opts, frames=not no_frames)
        path = write_stats(out, result, storage_options=opts)
    except ReactureError as e:
        _fail(e)
        return
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(format_stats(result) + f"written: {path}")


def main() -> None:
    cli(prog_name="reacture-convert")
