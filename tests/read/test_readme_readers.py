"""The README's "Training readers" section runs as written (issues 16, 18, 19): its command
converts the shipped real recordings, each Python block runs in that folder, and every value a
block prints is the one its comment promises."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

SECTION = "### Training readers"
NEXT = "### Training on WebDataset shards"
BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.S)


def section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text[text.index(SECTION) : text.index(NEXT)]


def blocks(kind: str) -> list[str]:
    return [code for k, code in BLOCK.findall(section()) if k == kind]


def promised(code: str) -> list[str]:
    """What each ``print`` promises: its comment, or the comment line right after it."""
    lines = code.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("print("):
            comment = line.partition("#")[2] or lines[i + 1].partition("#")[2]
            out.append(comment.strip())
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like a clone (tests/data/real.tar.gz) where the sh block has run."""
    root = tmp_path_factory.mktemp("readme")
    (root / "tests" / "data").mkdir(parents=True)
    (root / "tests" / "data" / "real.tar.gz").symlink_to(REPO / "tests" / "data" / "real.tar.gz")
    (command,) = blocks("sh")
    argv = shlex.split(command.strip())
    assert argv[0] == "reacture-convert"
    cli = Path(sys.executable).with_name("reacture-convert")
    subprocess.run([str(cli), *argv[1:]], cwd=root, check=True, capture_output=True)
    return root


@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_each_python_block_runs_and_prints_what_it_says(
    folder: Path, number: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = blocks("python")[number]
    monkeypatch.chdir(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README block {number}", "exec"), {"__name__": "__readme__"})
    said = printed.getvalue().splitlines()
    assert len(said) == len(promised(code))
    for line, comment in zip(said, promised(code), strict=True):
        assert comment.startswith(line), f"printed {line!r}, the README says {comment!r}"
