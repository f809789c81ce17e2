"""``reacture-convert remove`` and ``subset``: curate a converted dataset (take sessions out
for good; make a new dataset of some of them)."""

from __future__ import annotations

import json
from typing import Any

import click

from reacture_convert.cli.common import EXIT_OK, exit_on_error, json_option, storage_option
from reacture_convert.errors import ConfigError

_WHERE_HELP = (
    'Select sessions by a filter over the catalog\'s columns, e.g. "blank_frames = n_frames", '
    "\"session in ('a', 'b')\", \"n_frames < 100 and source = 'x'\" (=, !=, <, <=, >, >=, "
    "in (...), is [not] null, and, or, not, parentheses)."
)


@click.command()
@click.argument("out")
@click.argument("sessions", nargs=-1)
@click.option("--where", default=None, metavar="EXPR", help=_WHERE_HELP)
@click.option("--reason", required=True, help="Why they go: kept in their catalog rows.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before removing.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.option("--wait", is_flag=True, help="Wait for a run that holds OUT instead of failing.")
@json_option
@storage_option
def remove(
    out: str,
    sessions: tuple[str, ...],
    where: str | None,
    reason: str,
    yes: bool,
    dry_run: bool,
    wait: bool,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """Remove SESSIONS (and those --where matches) from the dataset OUT for good: their Zarr
    groups, rows and frames tables and their samples in every shard go (the shards that held
    them are written again without them, every other sample byte for byte as it was), and the
    index, the dataset cards and stats.json follow. The catalog keeps a `removed` row for each
    (the reason, the time, the source sha256s): a later convert of the same bytes skips it,
    `convert --readmit SESSION` brings it back. Shows what matches and asks, unless --yes.

    Exit 0 when removed (or nothing matched), 2 for a bad filter or an unknown session, 3 when
    OUT cannot be changed (not a dataset, locked, unwritable).
    """
    from reacture_convert.output.storage import Output
    from reacture_convert.run.remove import remove_sessions

    output = Output(out, storage_options)
    if not sessions and where is None:
        raise click.UsageError("name the sessions to remove, or select them with --where EXPR")

    def call(names: tuple[str, ...], expr: str | None, dry: bool) -> Any:
        try:
            with exit_on_error():
                return remove_sessions(
                    output, names, where=expr, reason=reason, dry_run=dry, wait=wait
                )
        except ConfigError as e:
            raise click.BadParameter(str(e), param_hint="--where / --reason") from None

    asked = not (yes or dry_run)
    found = call(sessions, where, dry_run or asked)
    if asked and found.sessions:
        _say(found, as_json=False, err=True)
        try:
            agreed = click.confirm(
                f"Remove these {len(found.sessions)} session(s) from {output.url} for good?",
                err=True,
            )
        except click.Abort:  # no answer (stdin closed): never taken as a yes
            raise click.UsageError(
                "no answer to the question: pass --yes to remove without asking"
            ) from None
        if not agreed:
            click.echo("nothing was removed", err=True)
            raise SystemExit(EXIT_OK)
        found = call(found.sessions, None, False)
    _say(found, as_json=as_json, err=False)
    raise SystemExit(EXIT_OK)


def _say(result: Any, *, as_json: bool, err: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if result.settled is not None:
        how = "finished" if result.settled.rolled == "forward" else "rolled back"
        click.echo(
            f"an interrupted removal of {', '.join(result.settled.sessions)} was {how} first",
            err=err,
        )
    for name in result.already:
        click.echo(f"{name}: already removed", err=err)
    if not result.sessions:
        click.echo(f"{result.out}: no session matches: nothing to remove", err=err)
        return
    verb = "will remove" if err else "would remove" if result.dry_run else "removed"
    for name in result.sessions:
        click.echo(f"{verb} {name}", err=err)
    tail = ""  # (a preview before the question: no tail)
    if result.dry_run and not err:
        tail = "; nothing was changed (--dry-run)"
    elif not err:
        tail = f"; {result.shards_rewritten} shard(s) rewritten"
    click.echo(
        f"{result.out}: {verb} {len(result.sessions)} session(s), {result.frames} frames "
        f"(reason: {result.reason}){tail}",
        err=err,
    )


@click.command()
@click.argument("out")
@click.argument("new")
@click.argument("sessions", nargs=-1)
@click.option("--where", default=None, metavar="EXPR", help=_WHERE_HELP)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default=None,
    help="Only the sessions of this split (by a hash of the name, as the readers split: "
    "80/10/10, seed 0).",
)
@click.option("--dry-run", is_flag=True, help="Say which sessions; write nothing.")
@click.option("--wait", is_flag=True, help="Wait for a run that holds OUT or NEW.")
@json_option
@storage_option
def subset(
    out: str,
    new: str,
    sessions: tuple[str, ...],
    where: str | None,
    split: str | None,
    dry_run: bool,
    wait: bool,
    as_json: bool,
    storage_options: dict[str, Any],
) -> None:
    """Write a new, independent dataset NEW of SESSIONS of OUT (and those --where matches;
    all when neither is given), only those of --split when given: their Zarr groups, rows and
    frames tables copied, their samples copied out of OUT's shards (byte for byte, in order)
    into new shards, with NEW's own catalog and dataset card. OUT is only read. NEW must be
    new or empty. `reacture-convert verify NEW` passes.

    Exit 0 when written, 2 for a bad selection or NEW, 3 when it cannot (OUT not a dataset,
    nothing selected, locked, unwritable).
    """
    from reacture_convert.output.storage import Output
    from reacture_convert.run.subset import subset_dataset

    try:
        with exit_on_error():
            result = subset_dataset(
                Output(out, storage_options),
                Output(new, storage_options),
                sessions,
                where=where,
                split=split,
                dry_run=dry_run,
                wait=wait,
            )
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="NEW / --where / --split") from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        raise SystemExit(EXIT_OK)
    verb = "would copy" if dry_run else "copied"
    for name in result.sessions:
        click.echo(f"{verb} {name}")
    shards = "" if dry_run else f", {result.samples} samples in {result.shards} shard(s)"
    click.echo(
        f"{result.new}: {len(result.sessions)} session(s) of {result.out}, {result.frames} "
        f"frames{shards}" + ("; nothing was written (--dry-run)" if dry_run else "")
    )
    raise SystemExit(EXIT_OK)
