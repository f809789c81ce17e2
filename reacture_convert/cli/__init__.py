"""The ``reacture-convert`` command: a thin click layer over the library.

One module per group of commands, each command parsing its options, making one library call and
printing the result: ``validate``; ``convert`` and ``run`` (job files); ``watch``; ``verify``,
``stats`` and ``show`` (``inspect``); ``repair``; ``remove`` and ``subset``. ``common`` holds the
shared options and the option types (wrappers of ``run.options``, the parsers job files use
too); ``exits`` the one exit-code table and the group that ends every command's error with it
(``exits.TABLE_HELP``, shown by ``--help``).
"""

from __future__ import annotations

import atexit
import os
import sys

import click

from reacture_convert import __version__
from reacture_convert.cli.convert import convert, run
from reacture_convert.cli.exits import DEBUG_ENV, TABLE_HELP, ErrorHandlingGroup
from reacture_convert.cli.inspect import show, stats, verify
from reacture_convert.cli.remove import remove, subset
from reacture_convert.cli.repair import repair
from reacture_convert.cli.validate import validate
from reacture_convert.cli.watch import watch

__all__ = ["cli", "main"]


@click.group(
    cls=ErrorHandlingGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=TABLE_HELP,
)
@click.version_option(__version__, prog_name="reacture-convert")
@click.option(
    "--debug",
    is_flag=True,
    envvar=DEBUG_ENV,
    help=f"On an error, print its traceback too (also {DEBUG_ENV}=1).",
)
def cli(debug: bool) -> None:
    """Ingest ReActure session bundles, validate them, and convert them losslessly to Zarr v3 +
    Parquet (and WebDataset shards), with exact frame/row/time alignment.
    """


for command in (validate, convert, run, watch, verify, stats, show, repair, remove, subset):
    cli.add_command(command)


def main() -> None:
    """Run the command, then leave the process without tearing down the interpreter.

    Every command has finished its work (and closed its files, leases and clusters) when it
    returns; what finalization would still do is stop the native libraries' threads (Arrow's,
    Zarr's I/O loop), and a daemon thread caught inside one of them as the interpreter goes
    away aborts the process ("terminate called without an active exception", exit -6, seen
    once in ~2,000 runs after a command had printed its result). So the exit handlers run,
    the streams are flushed, and the process ends with the command's exit code.
    """
    try:
        cli(prog_name="reacture-convert")
        code = 0
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            code = code or 1
    os._exit(code)
