"""The README's commands run as written (issue 19), in a folder laid out as a clone is (the
shipped recordings, the sample, the job files), with the virtualenv active as the README says.

Every command line of the README's ``sh`` blocks is either run here, in order, with the exit
code it must give, or listed in ``NOT_RUN`` with the reason and the test that runs its kind
against a real component instead: nothing is left out silently."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")

# (the line as the README writes it, what this test runs for it, the exit code it must give);
# in this order: a later command may read what an earlier one wrote.
RUN: list[tuple[str, str, int]] = [
    ("reacture-convert --help", "reacture-convert --help", 0),
    (
        "reacture-convert validate tests/data/real.tar.gz",
        "reacture-convert validate tests/data/real.tar.gz",
        0,
    ),
    (
        "reacture-convert show tests/data/real.tar.gz --html report/",
        "reacture-convert show tests/data/real.tar.gz --html report/",
        0,
    ),
    (
        "reacture-convert convert tests/data/real.tar.gz --out data/real --format zarr,wds",
        "reacture-convert convert tests/data/real.tar.gz --out data/real --format zarr,wds",
        0,
    ),
    # the synopses, with the dataset just written as OUT
    ("reacture-convert verify OUT [--sources]", "reacture-convert verify data/real --sources", 0),
    ("reacture-convert stats OUT [--no-frames] [--json]", "reacture-convert stats data/real", 0),
    (
        "reacture-convert show OUT [SESSION...] --html report/",
        "reacture-convert show data/real reacture_1795637148842 --html report2/",
        0,
    ),
    (
        "reacture-convert convert PATH... --out OUT [--format zarr,wds] [options]",
        "reacture-convert convert sample --out data/other --format zarr,wds --shard-size 1MB",
        0,
    ),
    # make convert: the sample into data/incoming, then the default job
    (
        "reacture-convert run pipelines/default.toml",
        "reacture-convert run pipelines/default.toml",
        0,
    ),
    (
        "reacture-convert watch INCOMING... --out OUT [--settle 5s] [--poll 1s] "
        "[--incomplete-timeout 10m] [options]",
        "reacture-convert watch data/incoming --out data/converted --settle 0 --once",
        0,
    ),
]

NOT_RUN: dict[str, str] = {
    "make convert": "the Makefile itself; its job is run above (run pipelines/default.toml)",
    "make test": "this very test run",
    ". .venv/bin/activate": "done here: the virtualenv's bin/ comes first on PATH",
    "reacture-convert validate uploads/*.zip s3://bucket/incoming/ --json": (
        "a user's uploads and bucket; archives and s3:// inputs: tests/ingest/test_archives.py, "
        "tests/run/test_s3.py (moto server)"
    ),
    "reacture-convert run pipelines/archive.toml --input uploads/ --out /data/archive "
    "--workers 2": "a user's folders; every shipped job file loads: tests/run/test_jobs.py",
    "reacture-convert watch /srv/uploads --out /data/reacture --workers 2": (
        "a service on a user's folders: tests/run/test_watch.py runs watchers"
    ),
    "reacture-convert watch s3://reacture-raw/incoming/ --out s3://reacture-datasets/v1 --json": (
        "a bucket: tests/run/test_watch.py watches a moto bucket"
    ),
    "dask scheduler --host 0.0.0.0 --port 8786 &": "a cluster: tests/run/test_batch.py starts one",
    "dask worker tcp://scheduler:8786 --nworkers 2 &": "as above",
    "reacture-convert convert s3://raw/sessions/ --out s3://datasets/reacture --scheduler "
    "tcp://scheduler:8786": "a bucket and a cluster: tests/run/test_s3.py, test_batch.py",
    "reacture-convert convert s3://raw/sessions/ --out s3://datasets/reacture --format zarr,wds": (
        "a bucket: tests/run/test_s3.py converts into a moto bucket"
    ),
}


def readme_command_lines() -> list[str]:
    """Every command line of the README's ``sh`` blocks, comments and continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line:
                lines.append(line)
    return lines


def _known(line: str) -> bool:
    return any(line == shown for shown, _, _ in RUN) or any(line.startswith(key) for key in NOT_RUN)


def test_every_readme_command_is_run_here_or_said_why_not() -> None:
    lines = readme_command_lines()
    assert lines, "no sh block found"
    unknown = [line for line in lines if not _known(line)]
    assert unknown == [], "README commands neither run by this test nor listed in NOT_RUN"
    for shown, _, _ in RUN:
        assert shown in lines, f"RUN names a command the README no longer shows: {shown}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as a user's clone: the shipped data, the sample, the job files."""
    root = tmp_path_factory.mktemp("clone")
    (root / "tests" / "data").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "real.tar.gz", root / "tests" / "data")
    shutil.copytree(REPO / "sample", root / "sample")
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    shutil.copytree(REPO / "sample", root / "data" / "incoming")  # what make convert copies
    return root


def test_the_readme_commands_run_as_written(clone: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for shown, command, code in RUN:
        done = subprocess.run(
            command.split(), cwd=clone, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == code, f"{shown}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert (clone / "data" / "converted" / "catalog.parquet").is_file()
    assert (clone / "report" / "index.html").is_file()


def test_the_reading_the_data_example_runs_as_written(clone: Path) -> None:
    """After `make convert` (its job, above), the "Reading the data" block."""
    if not (clone / "data" / "converted" / "catalog.parquet").exists():
        subprocess.run(
            [
                str(Path(sys.executable).parent / "reacture-convert"),
                "run",
                "pipelines/default.toml",
            ],
            cwd=clone,
            check=True,
            capture_output=True,
        )
    start = README.index("\n## Reading the data\n")
    (code,) = re.findall(r"```python\n(.*?)```", README[start : README.index("\n###", start)], re.S)
    cwd = os.getcwd()
    try:
        os.chdir(clone)
        scope: dict[str, object] = {"__name__": "__readme__"}
        exec(compile(code, "README: Reading the data", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert scope["frames"] is not None


def test_the_mixing_example_runs_as_written(clone: Path) -> None:
    """The "Mixing datasets" block, over the two datasets the README's commands convert."""
    cli = str(Path(sys.executable).parent / "reacture-convert")
    for folder, command in (
        ("data/real", "convert tests/data/real.tar.gz --out data/real --format zarr,wds"),
        ("data/other", "convert sample --out data/other --format zarr,wds --shard-size 1MB"),
    ):
        if not (clone / folder / "catalog.parquet").exists():
            subprocess.run([cli, *command.split()], cwd=clone, check=True, capture_output=True)
    start = README.index("\n### Mixing datasets\n")
    end = README.index("\n#", start + 1)
    (code,) = re.findall(r"```python\n(.*?)```", README[start:end], re.S)
    cwd = os.getcwd()
    try:
        os.chdir(clone)
        scope: dict[str, object] = {"__name__": "__readme__"}
        exec(compile(code, "README: Mixing datasets", "exec"), scope)
        loader: Any = scope["loader"]
        sessions = [s for batch in loader for s in batch["session"]]
    finally:
        os.chdir(cwd)
    assert len(sessions) == len(loader.dataset) == 534 + 92  # real (all frames) + the sample
