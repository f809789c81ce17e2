"""The one exit-code table of every command, and how an error ends a command.

``EXIT_CODES`` maps error classes to exit codes (the first class an error is an instance of
wins). ``ErrorHandlingGroup`` is the command group: whatever a command raises ends there in
``end_with_error``: one or two lines on stderr (what failed, what to do), with ``--json`` one
JSON document on stdout as well::

    {"error": {"code": 3, "kind": "no_credentials", "message": "...", "path": "s3://...",
               "hint": null}}

and the table's exit code. A traceback only with ``--debug`` (or ``REACTURE_DEBUG=1``).
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import click

from reacture_convert.errors import (
    InputError,
    OutRefusedError,
    ReactureError,
    UnknownNameError,
    storage_error,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_USAGE",
    "ErrorHandlingGroup",
    "end_interrupted",
    "end_with_error",
    "error_document",
    "exit_code",
]

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # stopped by SIGINT/SIGTERM (128 + SIGINT, as shells report it)

EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    # 2: a name on the command line that the data does not hold (show OUT SESSION)
    (UnknownNameError, EXIT_USAGE),
    # 1: what the user gave is not there or not a readable bundle (a missing path included)
    (InputError, EXIT_INVALID),
    # 2: a bad option, value or argument; an OUT that is a file or holds other files
    (click.UsageError, EXIT_USAGE),
    (OutRefusedError, EXIT_USAGE),
    # 3: the run could not start or finish: OUT locked or unwritable, a bad job file, the
    # object store (no credentials, no answer, no bucket), permission denied, disk full
    (ReactureError, EXIT_FAILED),
)

TABLE_HELP = """\b
Exit codes (every command):
  0  success (warnings allowed); a watcher stopped by a signal
  1  a bundle invalid, rejected or failed; verify found a mismatch; no bundle found;
     a path that does not exist
  2  usage error: a bad option, value or argument (an unknown session name); an OUT
     that is a file or holds other files
  3  the run could not start or finish: OUT locked or unwritable, a bad job file, the object
     store (no credentials, wrong endpoint, no such bucket), permission denied, disk full;
     a watcher aborted by a second signal
  130  interrupted (Ctrl-C, SIGTERM): run the same command again to finish
On an error, --json prints {"error": {"code", "kind", "message", "path", "hint"}} on stdout;
--debug (or REACTURE_DEBUG=1) adds the traceback."""

DEBUG_ENV = "REACTURE_DEBUG"


def exit_code(e: BaseException) -> int:
    """The table's code for ``e``; 3 for anything unforeseen (the run did not finish)."""
    for cls, code in EXIT_CODES:
        if isinstance(e, cls):
            return code
    if isinstance(e, click.ClickException):
        return e.exit_code
    return EXIT_FAILED


def _explained(e: BaseException) -> tuple[BaseException, str, str | None]:
    """``e`` as the user should see it (a storage failure translated), its kind and a hint."""
    if isinstance(e, click.UsageError):
        ctx = e.ctx
        hint = None
        if ctx is not None and ctx.command.get_help_option(ctx) is not None:
            hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help."
        return e, "usage", hint
    if isinstance(e, click.ClickException):
        return e, "usage", None
    if isinstance(e, ReactureError):
        return e, e.kind, None
    translated = storage_error(e)
    if translated is not None:
        return translated, translated.kind, None
    return e, "internal", f"run again with --debug (or {DEBUG_ENV}=1) for the traceback"


def _message(e: BaseException, kind: str) -> str:
    if isinstance(e, click.ClickException):
        text = e.format_message()
    elif kind == "internal":
        text = f"unexpected {type(e).__name__}: {e}"
    else:
        text = str(e)
    return " ".join(text.split("\n")[0].split()) if kind == "internal" else text.strip()


def error_document(e: BaseException) -> dict[str, Any]:
    """The ``--json`` document of an error: ``{"error": {code, kind, message, path, hint}}``."""
    shown, kind, hint = _explained(e)
    return {
        "error": {
            "code": exit_code(shown),
            "kind": kind,
            "message": _message(shown, kind),
            "path": getattr(shown, "path", None),
            "hint": hint,
        }
    }


def end_with_error(e: BaseException, as_json: bool, debug: bool) -> int:
    """Say what failed (stderr; with ``as_json`` also the JSON document on stdout); the exit
    code to end with. ``debug``: the traceback first."""
    if debug and not isinstance(e, click.UsageError):
        traceback.print_exception(e)
    doc = error_document(e)["error"]
    click.echo(f"Error: {doc['message']}", err=True)
    if doc["hint"]:
        click.echo(doc["hint"], err=True)
    if as_json:
        click.echo(json.dumps({"error": doc}))
    return int(doc["code"])


def end_interrupted(as_json: bool) -> int:
    """Say that Ctrl-C (or SIGINT) stopped the command outside a run's own handling (while it
    started up, or in a command that writes nothing or is undone by its next run); the exit
    code to end with."""
    doc = {
        "code": EXIT_INTERRUPTED,
        "kind": "interrupted",
        "message": "interrupted",
        "path": None,
        "hint": "nothing is lost: run the same command again",
    }
    click.echo(f"{doc['message']}; {doc['hint']}", err=True)
    if as_json:
        click.echo(json.dumps({"error": doc}))
    return EXIT_INTERRUPTED


class ErrorHandlingGroup(click.Group):
    """The command group: every error a command raises ends in ``end_with_error``, and Ctrl-C
    in ``end_interrupted`` (click's own "Aborted!" ended with exit 1)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        as_json = "--json" in args
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:  # a bad group option, an unknown command
            raise click.exceptions.Exit(end_with_error(e, as_json, debug=False)) from None
        except KeyboardInterrupt:  # (the options' checks import the converter: a while)
            raise click.exceptions.Exit(end_interrupted(as_json)) from None
        ctx.meta["reacture.as_json"] = as_json
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(
                end_interrupted(ctx.meta.get("reacture.as_json", False))
            ) from None
        except Exception as e:
            code = end_with_error(
                e, ctx.meta.get("reacture.as_json", False), bool(ctx.params.get("debug"))
            )
            raise click.exceptions.Exit(code) from None
