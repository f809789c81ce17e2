"""``reacture-convert verify``, ``stats`` and ``show``: look at a converted dataset."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import click

from reacture_convert.cli.common import exit_with, json_option, storage_option
from reacture_convert.errors import InputNotFoundError, storage_errors

if TYPE_CHECKING:
    from reacture_convert.output.storage import Output


def existing(out: str, storage_options: dict[str, Any]) -> Output:
    """OUT, which must exist: ``InputNotFoundError`` (exit 1) for a path that is not there."""
    from reacture_convert.output.storage import Output

    output = Output(out, storage_options)
    with storage_errors(out):
        if not output.fs.exists(output.root):
            raise InputNotFoundError(
                f"{out}: no such file, folder or URL; give the --out folder (or URL) of a "
                "`reacture-convert convert` run",
                path=out,
            )
    return output


@click.command()
@click.argument("out")
@click.option(
    "--sources",
    is_flag=True,
    help="Also compare with the original bundles, bit for bit (they must still exist).",
)
@json_option
@storage_option
def verify(out: str, sources: bool, as_json: bool, storage_options: dict[str, Any]) -> None:
    """Re-read every converted session in OUT and check it against the catalog and the alignment
    table (frame hashes, counts, row<->frame agreement) and the WebDataset index.

    Exit 0 when everything holds, 1 on any mismatch (each one named).
    """
    from reacture_convert.formats.wds.index import read_index
    from reacture_convert.read.verify import verify_dataset

    output = existing(out, storage_options)
    with storage_errors(out):
        checked, problems = verify_dataset(output, sources=sources)
        index = read_index(output)
    shards = {"shards": len(index.shards), "samples": index.total_samples} if index else None
    if as_json:
        doc = {
            "ok": not problems,
            "sessions_checked": checked,
            "shards_checked": shards,
            "problems": [{"session": p.session, "problem": p.what} for p in problems],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for p in problems:
            click.echo(click.style("MISMATCH ", fg="red") + str(p))
        what = "outputs and sources" if sources else "outputs"
        checked_what = f"{checked} session(s)"
        if shards is not None:
            checked_what += f" and {shards['shards']} shard(s) of {shards['samples']} samples"
        click.echo(
            f"{checked_what} checked ({what}): "
            + ("all exact" if not problems else f"{len(problems)} problem(s)")
        )
    exit_with(not problems)


@click.command()
@click.argument("out")
@click.option(
    "--no-frames", is_flag=True, help="Skip per-channel frame statistics (rows only, fast)."
)
@json_option
@storage_option
def stats(out: str, no_frames: bool, as_json: bool, storage_options: dict[str, Any]) -> None:
    """Per-field statistics over all periodic rows of OUT (count, mean, std, min, max of every
    numeric field; key-press and momentary-action frequencies) and per-channel frame mean/std:
    the numbers people normalise with. Writes OUT/stats.json and prints a table.
    """
    from reacture_convert.read.stats import compute_stats, format_stats, write_stats

    existing(out, storage_options)
    with storage_errors(out):
        result = compute_stats(out, storage_options=storage_options, frames=not no_frames)
        path = write_stats(out, result, storage_options=storage_options)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(format_stats(result) + f"written: {path}")


@click.command()
@click.argument("target")
@click.argument("sessions", nargs=-1)
@click.option(
    "--html",
    "report_dir",
    type=click.Path(file_okay=False),
    help="Folder for the report: index.html, <session>.html and <session>_files/.",
)
@click.option(
    "--mp4",
    "video",
    type=click.Path(dir_okay=False),
    help="Instead, write the one session SESSION of the converted dataset TARGET as an MP4 "
    "video: right way up, each frame at its recorded time (needs PyAV: the video extra).",
)
@json_option
@storage_option
def show(
    target: str,
    sessions: tuple[str, ...],
    report_dir: str | None,
    video: str | None,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """Write a static HTML report (no server, no network) of a converted dataset TARGET or of
    unconverted bundles: per session a strip of frames shown right way up, timelines of
    battery/health/fuel/damage, speed and keys with pauses marked, event and action markers,
    the frame-cadence histogram and the validation findings; an index lists every session.

    SESSIONS (names or prefixes) limit the report to those sessions.

    With --mp4 FILE instead of --html, and one SESSION: that session as an MP4 video (H.264),
    right way up, every frame (blank ones too) at its recorded time, read from the Zarr store
    or else the WebDataset shards.
    """
    if video is not None or report_dir is None:
        return _show_video(target, sessions, video, report_dir, as_json, storage_options)
    from reacture_convert.report import write_report

    with storage_errors(target):
        result = write_report(target, report_dir, list(sessions) or None, storage_options)
    if as_json:
        doc = {
            "index": str(result.index),
            "pages": [{"session": p.session, "html": str(p.html)} for p in result.pages],
            "files": [str(f) for f in result.files],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"wrote {len(result.pages)} session page(s); open {result.index}")


def _show_video(
    target: str,
    sessions: tuple[str, ...],
    video: str | None,
    report_dir: str | None,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """``show TARGET SESSION --mp4 FILE``: one session as a video (``report.video``)."""
    if video is None or report_dir is not None:
        raise click.UsageError("give --html DIR for a report or --mp4 FILE for a video (one)")
    if len(sessions) != 1:
        raise click.UsageError(
            "--mp4 writes one session: give exactly one SESSION (a name or prefix)"
        )
    from reacture_convert.report.video import write_video

    result = write_video(target, sessions[0], video, storage_options=storage_options)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        click.echo(
            f"wrote {result.path}: {result.session}, {result.frames} frames over "
            f"{result.duration:.1f} s (from {result.source}, {result.bytes:,} bytes)"
        )
