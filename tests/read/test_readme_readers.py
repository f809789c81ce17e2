"""The training examples run as written (issues 16, 18, 19, 24): the README's PyTorch and
TensorFlow blocks and every block of docs/training.md up to "Mixing datasets", each in a folder
where the README's convert command has run; every value a block prints is the one its comment
promises."""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.docs import DOCS, README, blocks, command_lines, section, text
from tests.helpers.paths import REPO

CONVERT = "reacture-convert convert tests/data/real.tar.gz --out data/real --format zarr,wds"


def examples() -> list[str]:
    """The README's training blocks that use this package, then docs/training.md's blocks
    that read ``data/real`` (the later sections read other datasets: test_readme_commands)."""
    readme = [
        b for b in blocks(section(README, "## Training"), "python") if "reacture_convert" in b
    ]
    guide = text(DOCS / "training.md")
    own = blocks(guide[: guide.index("\n## Mixing datasets\n")], "python")
    assert len(readme) == 2 and own, "the training examples moved: update this test"
    return readme + own


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
    """A folder laid out like a clone (tests/data/real.tar.gz) where the README's convert
    command has run."""
    root = tmp_path_factory.mktemp("readme")
    (root / "tests" / "data").mkdir(parents=True)
    (root / "tests" / "data" / "real.tar.gz").symlink_to(REPO / "tests" / "data" / "real.tar.gz")
    assert CONVERT in command_lines(text(README))
    cli = Path(sys.executable).with_name("reacture-convert")
    subprocess.run([str(cli), *shlex.split(CONVERT)[1:]], cwd=root, check=True, capture_output=True)
    return root


@pytest.mark.parametrize("number", range(len(examples())))
def test_each_python_block_runs_and_prints_what_it_says(
    folder: Path, number: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = examples()[number]
    monkeypatch.chdir(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"training example {number}", "exec"), {"__name__": "__readme__"})
    said = printed.getvalue().splitlines()
    assert len(said) == len(promised(code))
    for line, comment in zip(said, promised(code), strict=True):
        assert comment.startswith(line), f"printed {line!r}, the README says {comment!r}"
