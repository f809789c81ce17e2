"""The README documents what the code does: every finding code, every CLI command."""

from __future__ import annotations

from pathlib import Path

from reacture_convert.cli import cli
from reacture_convert.findings import codes_markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_finding_code_exactly() -> None:
    assert codes_markdown() in README


def test_readme_shows_the_two_commands() -> None:
    assert "make convert" in README and "make test" in README


def test_every_cli_command_is_documented_and_has_help() -> None:
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        assert f"### {name}" in README, f"README has no section for the {name} command"
