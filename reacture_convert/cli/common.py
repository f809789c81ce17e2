"""What the commands share: option decorators and types, finding output.

Every option type wraps a parser of ``run.options`` (the one job files use), so a value means
the same on the command line and in a job file; its ``ConfigError`` is a usage error (exit 2).
An error a command raises ends in the group (``exits.ErrorHandlingGroup``), with the code of the
one exit-code table (``exits.EXIT_CODES``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from reacture_convert.cli.exits import EXIT_FAILED as EXIT_FAILED  # (the commands' import)
from reacture_convert.cli.exits import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from reacture_convert.cli.exits import EXIT_INVALID as EXIT_INVALID
from reacture_convert.cli.exits import EXIT_OK as EXIT_OK
from reacture_convert.cli.exits import EXIT_USAGE as EXIT_USAGE
from reacture_convert.errors import ConfigError, InputNotFoundError
from reacture_convert.findings import Finding, Severity
from reacture_convert.formats.zarr import CODECS, DEFAULT_CHUNK_FRAMES, DEFAULT_CODEC
from reacture_convert.run.options import (
    convert_options,
    parse_duration,
    parse_formats,
    parse_size,
    parse_storage_options,
)
from reacture_convert.run.scheduler import check_scheduler

if TYPE_CHECKING:
    from reacture_convert.run.convert import ConvertOptions

F = TypeVar("F", bound=Callable[..., Any])

# --- errors and exit codes ----------------------------------------------------------------------


@contextlib.contextmanager
def exit_on_error(before: Callable[[], None] | None = None) -> Iterator[None]:
    """Run a library call; an error it raises runs ``before`` (e.g. clearing a status line),
    then goes on to the group, which ends the command with the table's code."""
    try:
        yield
    except Exception:
        if before is not None:
            before()
        raise


def require_local_inputs(paths: Iterable[str]) -> None:
    """``InputNotFoundError`` (exit 1) for a local input path (not a URL or a glob) that does
    not exist: checked before anything touches OUT."""
    for path in paths:
        if "://" not in path and not any(c in path for c in "*?[") and not os.path.exists(path):
            raise InputNotFoundError(
                f"{path}: no such file or folder; check the path (INCOMING must exist)", path=path
            )


def build_options(values: Mapping[str, Any], storage_options: Mapping[str, Any]) -> ConvertOptions:
    """The flags' values (keyed as in a job file) through the library's one builder; options
    that do not go together are a usage error (exit 2)."""
    try:
        return convert_options(values, storage_options)
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None


def exit_with(ok: bool) -> NoReturn:
    sys.exit(EXIT_OK if ok else EXIT_INVALID)


# --- option types: the library's parsers ---------------------------------------------------------


class Parsed(click.ParamType):  # type: ignore[type-arg]
    """A click type that parses with ``parse`` (a ``run.options`` parser)."""

    def __init__(self, name: str, parse: Callable[[Any], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.parse(value)
        except ConfigError as e:
            self.fail(str(e), param, ctx)


BYTES = Parsed("bytes", parse_size)
DURATION = Parsed("duration", parse_duration)
FORMATS = Parsed("formats", parse_formats)
SCHEDULER = Parsed("scheduler", check_scheduler)


def _storage_options(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    try:
        return parse_storage_options(values)
    except ConfigError as e:
        raise click.BadParameter(str(e), ctx, param) from None


# --- options -------------------------------------------------------------------------------------


def with_options(*opts: Callable[[F], F]) -> Callable[[F], F]:
    """Apply click options in the order they are listed (as --help shows them)."""

    def apply(f: F) -> F:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return apply


storage_option = click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_storage_options,
    help="fsspec option for s3:// and other URLs, repeatable; dots nest "
    "(e.g. client_kwargs.endpoint_url=http://127.0.0.1:9000, anon=true).",
)


def json_flag(text: str = "Print one JSON document for machines.") -> Callable[[F], F]:
    """``--json`` (``as_json``), saying what the command prints with it."""
    return click.option("--json", "as_json", is_flag=True, help=text)


json_option = json_flag()
out_option = click.option(
    "--out",
    "-o",
    required=True,
    metavar="OUT",
    help="Output dataset: a folder or an fsspec URL (s3://bucket/prefix).",
)
zarr_options = with_options(
    click.option(
        "--chunk-frames",
        type=click.IntRange(1),
        default=DEFAULT_CHUNK_FRAMES,
        show_default=True,
        help="Frames per Zarr chunk.",
    ),
    click.option(
        "--shard-frames",
        type=click.IntRange(0),
        default=None,
        help="Frames per Zarr shard, a multiple of the chunk (sharding codec): few big "
        "objects per session. Default: 1024 when OUT is an object store (s3://...: measured "
        "faster to write and to read there), none on local disk; 0: no sharding.",
    ),
    click.option(
        "--codec",
        type=click.Choice(tuple(CODECS)),
        default=DEFAULT_CODEC,
        show_default=True,
        help="Compression of Zarr frame chunks.",
    ),
)
scheduler_options = with_options(
    click.option(
        "--scheduler",
        type=SCHEDULER,
        default="auto",
        show_default=True,
        metavar="SCHEDULER",
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
wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Wait for another run or watcher on OUT instead of failing (exit 3).",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
ON_ERROR_HELP = "continue: record bad bundles and go on; stop: start nothing new after one."


# --- printing ------------------------------------------------------------------------------------

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
_COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def finding_line(f: Finding) -> str:
    """One indented line: severity, code, where, what."""
    severity = click.style(f"{f.severity:<7}", fg=_COLOURS[f.severity])
    return f"    {severity} {f.code:<24} {f.location()}: {f.message}"


def print_findings(findings: Iterable[Finding]) -> None:
    """Errors first, then warnings, then infos, one line each."""
    for f in sorted(findings, key=lambda f: _ORDER[f.severity]):
        click.echo(finding_line(f))


NO_BUNDLE = (
    "no bundle found (a bundle is <prefix>_metadata.json, _data.jsonl, _frames.npy, "
    "_timestamps.npy, _README.md)"
)


def counts_line(counts: Mapping[str, int], empty: str) -> str:
    """``2 converted, 1 rejected`` (by status name), or ``empty``."""
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or empty
