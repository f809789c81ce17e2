"""``reacture-convert watch``: convert bundles as their uploads complete, and what it prints."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import click

from reacture_convert.cli.common import (
    DURATION,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    FORMATS,
    build_options,
    counts_line,
    exit_on_error,
    json_flag,
    out_option,
    quiet_option,
    require_local_inputs,
    scheduler_options,
    storage_option,
    wait_option,
    with_options,
    zarr_options,
)
from reacture_convert.errors import ConfigError
from reacture_convert.output.status import Status

if TYPE_CHECKING:
    from reacture_convert.output.storage import Output
    from reacture_convert.run.convert import ConvertOptions
    from reacture_convert.run.summary import WatchStatus
    from reacture_convert.run.watch import WatchOptions


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

    def status(self, st: WatchStatus) -> None:
        now = time.monotonic()
        if self.live and now - self.last_line >= 0.2:
            self.last_line = now
            click.echo(f"\r\x1b[Kwatching: {st.line()}", nl=False, err=True)

    def clear(self) -> None:
        if self.live:
            click.echo("\r\x1b[K", nl=False, err=True)


allow_other_files_option = click.option(
    "--allow-other-files",
    is_flag=True,
    default=None,
    help="Write the dataset into OUT although it holds other files (none is overwritten: "
    "where README.md is yours, the dataset card is DATASET_CARD.md).",
)


def watch_and_report(
    paths: list[str],
    out: Output,
    options: ConvertOptions,
    watch_options: WatchOptions,
    scheduler: str,
    workers: int | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    stop_on_error: bool = False,
) -> NoReturn:
    """``run_watch`` with a ``WatchPrinter``, then the totals and the exit code."""
    from reacture_convert.run.watch import run_watch

    require_local_inputs(paths)
    printer = WatchPrinter(as_json, quiet)
    with exit_on_error(before=printer.clear):
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
    printer.clear()
    if not (as_json or quiet):
        said = [counts_line(summary.counts, "nothing converted")]
        if summary.waiting:
            said.append(f"{summary.waiting} upload(s) still incomplete or settling")
        if summary.findings:
            said.append(f"{len(summary.findings)} error(s) outside any bundle (above)")
        click.echo(
            f"stopped ({summary.stopped}): {'; '.join(said)} in {summary.seconds:.1f} s "
            f"-> {summary.out}"
        )
    if summary.aborted:
        # A session task may still be running in a thread (sync and threads schedulers):
        # leave at once instead of finalising the interpreter under it (which can abort the
        # process). Its output is staging only, cleared by the next run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    # a service stopped on purpose exits 0; a cron run (--once) or on_error=stop says 1 when a
    # bundle was rejected or failed, or an input is not there, like `convert`
    sys.exit(
        EXIT_INVALID if summary.stopped in ("once", "on_error") and not summary.ok else EXIT_OK
    )


@click.command()
@click.argument("incoming", nargs=-1, required=True)
@out_option
@click.option(
    "--settle",
    type=DURATION,
    default="5s",
    show_default=True,
    help="A bundle is ready when its files have not changed for this long "
    "(500ms, 5s, 10m, 1h, or seconds).",
)
@click.option(
    "--poll",
    type=DURATION,
    default="1s",
    show_default=True,
    help="How often to look at INCOMING.",
)
@click.option(
    "--incomplete-timeout",
    type=DURATION,
    default="10m",
    show_default=True,
    help="Record an upload that stays incomplete (or an unreadable archive) this long "
    "as rejected in the catalog.",
)
@click.option("--once", is_flag=True, help="Convert what is ready now, then exit (for cron).")
@click.option(
    "--format",
    "formats",
    type=FORMATS,
    default="zarr",
    show_default=True,
    metavar="FORMATS",
    help="Comma-separated: zarr (Zarr + rows + alignment table), wds (WebDataset shards: "
    "converted sessions are appended to the shard set as new shards).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a converted session when its upload is replaced with other bytes.",
)
@zarr_options
@scheduler_options
@allow_other_files_option
@with_options(
    wait_option,
    quiet_option,
    json_flag("Print one JSON object per event (JSON lines) for log collectors."),
    storage_option,
)
def watch(
    incoming: tuple[str, ...],
    out: str,
    settle: float,
    poll: float,
    incomplete_timeout: float,
    once: bool,
    formats: str,
    force: bool,
    chunk_frames: int,
    shard_frames: int | None,
    codec: str,
    scheduler: str,
    workers: int | None,
    allow_other_files: bool | None,
    wait: bool,
    quiet: bool,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """Keep converting bundles as they arrive in INCOMING (folders, archives or URLs such as
    s3://bucket/incoming/) into OUT, each once its upload is complete and has settled.

    A bundle is converted when all its files are there and unchanged for --settle; an archive
    when it opens and has settled. Uploads that stay incomplete past --incomplete-timeout get a
    rejected row in the catalog. The catalog is the memory: a restarted watcher skips what is
    done. Ctrl-C/SIGTERM finishes the sessions in flight and exits 0; a second one aborts
    at once, dropping them (exit 130). Exit 3 when another run or watcher holds OUT (unless
    --wait). With --once: exit 1 when a bundle was rejected or failed.
    """
    from reacture_convert.output.storage import Output
    from reacture_convert.run.watch import WatchOptions

    values = {
        "formats": formats,
        "append": "wds" in formats,  # shards grow as sessions arrive
        "force": force,
        "chunk_frames": chunk_frames,
        "shard_frames": shard_frames,
        "codec": codec,
        "allow_other_files": allow_other_files,
    }
    options = build_options(values, storage_options)
    try:
        watch_options = WatchOptions(
            settle=settle, poll=poll, incomplete_timeout=incomplete_timeout, once=once
        )
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    watch_and_report(
        list(incoming),
        Output(out, storage_options),
        options,
        watch_options,
        scheduler,
        workers,
        wait,
        quiet,
        as_json,
    )
