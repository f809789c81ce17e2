"""``reacture-convert repair``: rebuild a damaged catalog from the committed outputs."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from reacture_convert.cli.common import EXIT_OK, exit_on_error, json_option, storage_option


@click.command()
@click.argument("out")
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@json_option
@storage_option
def repair(out: str, dry_run: bool, as_json: bool, storage_options: dict[str, Any]) -> None:
    """Rebuild OUT's catalog (catalog.parquet and its log) from what is committed under OUT:
    the rows that still read, and a row re-derived for every committed session (its Zarr
    group, rows and frames tables) that has none. The old catalog's files are set aside in
    OUT/.damaged/<when>/, never deleted. Then `reacture-convert verify OUT` passes.

    Exit 0 when repaired or nothing was wrong, 3 when it cannot (not a dataset, locked,
    unwritable).
    """
    from reacture_convert.output.storage import Output
    from reacture_convert.run.repair import repair_catalog

    with exit_on_error():
        result = repair_catalog(Output(out, storage_options), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({**asdict(result), "changed": result.changed}, indent=2))
        raise SystemExit(EXIT_OK)
    would = "would " if dry_run else ""
    for d in result.damage:
        click.echo(click.style("DAMAGED ", fg="red") + d)
    for s in result.derived:
        click.echo(f"{would}re-derive the row of {s} from its outputs")
    for path in result.set_aside:
        click.echo(f"set aside: {path}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.changed:
        click.echo(f"{result.out}: the catalog is whole ({result.rows} rows): nothing to do")
    elif dry_run:
        click.echo(
            f"{result.out}: would rebuild the catalog: {result.rows} rows ({result.kept} read "
            f"back, {len(result.derived)} re-derived); nothing was changed (--dry-run)"
        )
    else:
        click.echo(
            f"{result.out}: catalog rebuilt: {result.rows} rows ({result.kept} read back, "
            f"{len(result.derived)} re-derived); check it with `reacture-convert verify {out}`"
        )
    raise SystemExit(EXIT_OK)
