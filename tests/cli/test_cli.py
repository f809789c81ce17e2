"""The command group: ``python -m reacture_convert``, the installed entry point, help texts."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from click.testing import CliRunner

from reacture_convert import __version__
from reacture_convert.cli import cli, main
from tests.helpers.paths import REPO

COMMANDS = {
    "validate",
    "convert",
    "run",
    "watch",
    "verify",
    "stats",
    "show",
    "repair",
    "remove",
    "subset",
}


def test_every_command_is_registered() -> None:
    assert set(cli.commands) == COMMANDS


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reacture_convert", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and "validate" in proc.stdout


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_text(name: str) -> None:
    command = cli.commands[name]
    assert command.help and command.help.strip(), name
    assert command.get_short_help_str().strip()
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name}" in result.output or f"{name} [OPTIONS]" in result.output
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert getattr(param, "help", None), f"{name} {param.opts} has no help"


def test_the_installed_command_is_main() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "reacture-convert"]
    assert script.value == "reacture_convert.cli:main"
    assert script.load() is main


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"reacture-convert, version {__version__}"
