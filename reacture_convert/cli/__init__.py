"""The ``reacture-convert`` command: a thin click layer over the library.

One module per group of commands, each command parsing its options, making one library call and
printing the result: ``validate``; ``convert`` and ``run`` (job files); ``watch``; ``verify``,
``stats`` and ``show`` (``inspect``). ``common`` holds the shared options, the option types
(wrappers of ``run.options``, the parsers job files use too) and the exit codes.

Exit codes (every command): 0 success; 1 some bundle was invalid, rejected, failed or did not
verify; 2 usage error (bad option, missing argument); 3 the run could not start or finish
(output locked or unwritable, bad job file); 130 interrupted (Ctrl-C, SIGTERM: run the same
command again to finish).
"""

from __future__ import annotations

import click

from reacture_convert import __version__
from reacture_convert.cli.convert import convert, run
from reacture_convert.cli.inspect import show, stats, verify
from reacture_convert.cli.validate import validate
from reacture_convert.cli.watch import watch

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reacture-convert")
def cli() -> None:
    """Ingest ReActure session bundles, validate them, and convert them losslessly to Zarr v3 +
    Parquet (and WebDataset shards), with exact frame/row/time alignment.

    \b
    Exit codes: 0 ok; 1 some bundle invalid, rejected or failed; 2 usage error;
    3 the run could not start or finish (output locked, unwritable, bad job file);
    130 interrupted (run the same command again to finish).
    """


for command in (validate, convert, run, watch, verify, stats, show):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="reacture-convert")
