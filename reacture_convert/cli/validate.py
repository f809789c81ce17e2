"""``reacture-convert validate``: judge bundles without converting them."""

from __future__ import annotations

import json
import posixpath
from typing import TYPE_CHECKING, Any

import click

from reacture_convert.cli.common import (
    NO_BUNDLE,
    exit_with,
    json_option,
    print_findings,
    storage_option,
)
from reacture_convert.errors import storage_errors
from reacture_convert.findings import Severity

if TYPE_CHECKING:
    from reacture_convert.ingest.validate import Report


@click.command()
@click.argument("paths", nargs=-1, required=True)
@json_option
@storage_option
def validate(paths: tuple[str, ...], as_json: bool, storage_options: dict[str, Any]) -> None:
    """Find bundles under PATHS (folders, .zip/.tar/.tar.gz archives, globs, URLs) and report
    every problem of each: file, line or frame index, and what is wrong.

    Prints one line per bundle, then its findings. Exit 0 when every bundle is valid (warnings
    allowed); 1 when any is invalid, when no bundle is found, or when an input is missing or an
    archive member was refused (errors outside any bundle); 3 when the object store cannot
    be read (no credentials, no answer).
    """
    from reacture_convert.ingest.discover import discover
    from reacture_convert.ingest.validate import validate_bundle_safely

    with storage_errors(", ".join(p for p in paths if "://" in p) or None):
        found = discover(list(paths), storage_options)
        reports = [validate_bundle_safely(b, storage_options) for b in found.bundles]
    loose_errors = any(f.severity is Severity.ERROR for f in found.findings)
    ok = all(r.ok for r in reports) and not loose_errors and bool(reports)
    if as_json:
        doc = {
            "ok": ok,
            "bundles": [r.to_dict() for r in reports],
            "findings": [f.to_dict() for f in found.findings],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for path in paths:
            _say_what_it_is(path, reports)
        for r in reports:
            _print_report(r)
        if found.findings:
            click.echo("outside any bundle:")
            print_findings(found.findings)
        n_bad = sum(not r.ok for r in reports)
        click.echo(f"{len(reports)} bundle(s): {len(reports) - n_bad} valid, {n_bad} invalid")
        if not reports:
            click.echo(NO_BUNDLE, err=True)
    exit_with(ok)


def _say_what_it_is(path: str, reports: list[Report]) -> None:
    """For an input that is one file of a bundle: which file of which bundle it is (the
    bundle's files beside it are validated with it)."""
    from reacture_convert.ingest.discover import split_role

    parts = split_role(posixpath.basename(path.rstrip("/")))
    if parts is None:
        return
    prefix, role = parts
    bundle = next((r.bundle for r in reports if r.bundle.prefix == prefix), None)
    if bundle is None:
        return
    others = len(bundle.files) - 1
    click.echo(
        f"{path} is the {role} of bundle {prefix!r}; validated with "
        + (f"the {others} other file(s) of the bundle beside it" if others else "no other file")
    )


def _print_report(r: Report) -> None:
    state = (
        click.style("valid  ", fg="green") if r.ok else click.style("INVALID", fg="red", bold=True)
    )
    n_frames = r.n_frames if r.n_frames is not None else "?"
    n_rows = r.n_rows if r.n_rows is not None else "?"
    click.echo(f"{state} {r.bundle.prefix}  ({n_frames} frames, {n_rows} rows)  {r.bundle.source}")
    print_findings(r.findings)
