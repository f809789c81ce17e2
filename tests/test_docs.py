"""The README and docs/ document what the code does (every finding code, every CLI command), the
README starts with what a new user needs (issue 24), and nothing points where a clone has
nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reacture_convert.cli import cli
from reacture_convert.findings import codes_markdown
from tests.helpers.docs import DOCS, README, anchors, command_lines, pages, text
from tests.helpers.paths import REPO

CLI_DOC = DOCS / "cli.md"


def test_the_cli_page_lists_every_finding_code_exactly() -> None:
    """Between the markers `make docs` rewrites, as `make docs` writes it."""
    body = text(CLI_DOC)
    start = body.index("-->", body.index("<!-- codes:start")) + 3
    assert body[start : body.index("<!-- codes:end -->")] == f"\n{codes_markdown()}\n"
    assert "pathlib.Path('docs/cli.md')" in text(REPO / "Makefile")


def test_readme_shows_the_two_commands() -> None:
    head = text(README)
    assert "make convert" in head and "make test" in head


def test_every_cli_command_is_documented_and_has_help() -> None:
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        assert f"### {name}" in text(CLI_DOC), f"docs/cli.md has no section for {name}"


def test_the_readme_starts_with_training() -> None:
    """Its first 150 lines: the two commands, converting, installing a framework and training
    with PyTorch, TensorFlow, plain webdataset and Hugging Face datasets."""
    head = "\n".join(text(README).splitlines()[:150])
    for needed in (
        "make convert",
        "make test",
        "reacture-convert convert ",
        "make torch",
        "make tf",
        ".to_pytorch_dataloader(",
        ".to_tensorflow_dataset(",
        "import io, json, numpy as np, torch, webdataset as wds",
        'datasets.load_dataset("data/real/wds"',
    ):
        assert needed in head, f"the README's first 150 lines lack {needed!r}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_no_page_points_where_a_clone_has_nothing(page: Path) -> None:
    """No path beside the repository, no "this machine", no install that replaces the editable
    package, no report folder left untracked in the repository's root."""
    body = text(page)
    assert "../" + "shared" not in body, page  # the folder beside the team's clones
    assert not re.search(r"this (2-core )?machine", body, re.I)
    installs = [line for line in command_lines(body) if re.search(r"pip install .*\.\[", line)]
    assert installs == [], "pip install .[extra] replaces the editable install: make torch/tf"
    for said in re.finditer(r"pip install \.\[", body):  # in prose, only as a warning
        assert re.search(r"(not|never) `$", body[: said.start()]), body[said.start() - 80 :][:160]
    assert "--html report" not in body


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    """Each link to a file of the repository names one that exists, and its #anchor a heading."""
    body = re.sub(r"```.*?```", "", text(page), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", body):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", text(README)))
    unlinked = {p.name for p in DOCS.glob("*.md")} - linked - {"architecture.md"}
    unlinked -= {"adding-a-format.md"}  # both linked from docs/development.md
    assert unlinked == set()
