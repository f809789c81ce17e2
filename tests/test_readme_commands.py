"""The commands of the README and of docs/*.md run as written (issues 19, 24), in a folder laid
out as a clone is (the shipped recordings, the sample, the job files), with the virtualenv
active as the README says.

Every command line of their ``sh``/``bash`` blocks is either run here, in order, with the exit
code it must give, or listed in ``NOT_RUN`` with the reason and the test that runs its kind
against a real component instead; and every line not run is still checked against the tool it
calls (its options parse, its make target exists): nothing is left out silently."""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from tests.helpers.docs import DOCS, README, blocks, command_lines, pages, section, text
from tests.helpers.paths import REPO

BIN = Path(sys.executable).parent
CODECS_FRAMES = (
    "data/fixtures/real/variant_preserve_drawing_buffer/reacture_1795637148842/"
    "reacture_1795637148842_frames.npy"
)

# (the line as a page writes it, what this test runs for it, the exit code it must give);
# in this order: a later command may read what an earlier one wrote.
RUN: list[tuple[str, str, int]] = [
    ("reacture-convert --help", "reacture-convert --help", 0),
    (
        "reacture-convert validate tests/data/real.tar.gz",
        "reacture-convert validate tests/data/real.tar.gz",
        0,
    ),
    (
        "reacture-convert show tests/data/real.tar.gz --html data/report",
        "reacture-convert show tests/data/real.tar.gz --html data/report",
        0,
    ),
    (
        "reacture-convert convert tests/data/real.tar.gz --out data/real --format zarr,wds",
        "reacture-convert convert tests/data/real.tar.gz --out data/real --format zarr,wds",
        0,
    ),
    (
        "reacture-convert verify data/real --sources",
        "reacture-convert verify data/real --sources",
        0,
    ),
    (
        "reacture-convert show data/real --html data/report",
        "reacture-convert show data/real --html data/report",
        0,
    ),
    # the synopses, with the dataset just written as OUT
    ("reacture-convert verify OUT [--sources]", "reacture-convert verify data/real", 0),
    ("reacture-convert stats OUT [--no-frames] [--json]", "reacture-convert stats data/real", 0),
    (
        "reacture-convert show OUT [SESSION...] --html data/report",
        "reacture-convert show data/real reacture_1795637148842 --html data/report2",
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
    # docs/benchmarks.md: the real variant recording unpacked for benchmarks/zarr_codecs.py
    ("mkdir -p data/fixtures", "mkdir -p data/fixtures", 0),
    (
        "tar xzf tests/data/real.tar.gz -C data/fixtures",
        "tar xzf tests/data/real.tar.gz -C data/fixtures",
        0,
    ),
    # curating (last: it removes a session from data/real)
    *[
        (line, line, 0)
        for line in (
            'reacture-convert remove data/real --where "blank_frames = n_frames" '
            '--reason "black frames" --dry-run',
            "reacture-convert remove data/real reacture_1795637238001 "
            '--reason "the player asked" --yes',
            'reacture-convert subset data/real data/real-clean --where "blank_frames < n_frames"',
        )
    ],
]

NOT_RUN: dict[str, str] = {
    "make convert": "the Makefile itself; its job is run above (run pipelines/default.toml)",
    "make test": "this very test run",
    "make torch": "installs into the venv this test runs in (which has torch: the readers' tests)",
    "make tf": "installs into the venv this test runs in (which has it: the TensorFlow tests)",
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
    "reacture-convert show OUT SESSION --mp4 game.mp4": (
        "a placeholder dataset and session: tests/report/test_video.py exports both formats"
    ),
    "reacture-convert repair OUT": "a damaged dataset: tests/cli/test_repair.py repairs one",
    "reacture-convert remove OUT": "the synopsis; the README's remove lines run above",
    "reacture-convert remove out ": (
        "a dataset named out: the README's lines run above; tests/run/test_remove.py and "
        "tests/cli/test_remove.py remove by name and by --where"
    ),
    "reacture-convert subset OUT": "the synopsis; the README's subset line runs above",
    "reacture-convert subset out ": "as above: tests/cli/test_subset.py (--split, --where)",
    ".venv/bin/python benchmarks/zarr_codecs.py --frames 2000 --repeats 5 --real "
    + CODECS_FRAMES: (
        "a benchmark of minutes; the file it reads is unpacked above (RUN), its options parse"
    ),
}


def all_command_lines() -> list[str]:
    """Every command line of the README's and docs' ``sh``/``bash`` blocks."""
    return [line for page in pages() for line in command_lines(text(page))]


def _known(line: str) -> bool:
    return any(line == shown for shown, _, _ in RUN) or any(line.startswith(key) for key in NOT_RUN)


def test_every_readme_command_is_run_here_or_said_why_not() -> None:
    lines = all_command_lines()
    assert command_lines(text(README)), "no sh block found in the README"
    unknown = [line for line in lines if not _known(line)]
    assert unknown == [], "commands neither run by this test nor listed in NOT_RUN"
    for shown, _, _ in RUN:
        assert shown in lines, f"RUN names a command no page shows any more: {shown}"
    for key in NOT_RUN:
        assert any(line.startswith(key) for line in lines), f"NOT_RUN names a gone line: {key}"


def test_every_command_not_run_is_known_to_its_tool() -> None:
    """A line this test does not run still names a command, options and a make target that
    exist: ``reacture-convert`` and ``dask`` parse it with ``--help`` added, a script lists its
    options in its ``--help``, ``make -n`` knows the target."""
    not_run = [line for line in all_command_lines() if not any(line == s for s, _, _ in RUN)]
    assert not_run
    for line in not_run:
        argv = shlex.split(line.rstrip("&").strip())
        if argv[0] == "reacture-convert":
            done = CliRunner().invoke(cli, [*argv[1:], "--help"])
            assert done.exit_code == 0, f"{line}\n{done.output}"
        elif argv[0] == "make":
            done = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True)
            assert done.returncode == 0, f"{line}\n{done.stderr.decode()}"
        elif argv[0] == "dask":
            done = subprocess.run(
                [str(BIN / "dask"), *argv[1:], "--help"], capture_output=True, timeout=120
            )
            assert done.returncode == 0, f"{line}\n{done.stderr.decode()[-2000:]}"
        elif argv[0] == ".venv/bin/python":
            script, *options = argv[1:]
            done = subprocess.run(
                [sys.executable, str(REPO / script), "--help"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
            for option in (o for o in options if o.startswith("--")):
                assert option in done.stdout, f"{script} has no {option}"
        else:
            assert argv[0] == ".", f"no check for {line}"


def test_make_torch_and_tf_install_the_pinned_extras_beside_the_package() -> None:
    """``make torch``/``make tf`` install the extras' pins with pip into .venv, never the
    package itself (``pip install .[tf]`` replaced the editable install)."""
    pins = dict(re.findall(r'^(torch|tf) = \["([^"]+)"\]', text(REPO / "pyproject.toml"), re.M))
    assert pins == {"torch": "torch==2.13.0", "tf": "tensorflow-cpu==2.21.0"}
    for target in ("torch", "tf"):
        done = subprocess.run(
            ["make", "-n", "-W", "pyproject.toml", target],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        installs = [line for line in done.stdout.splitlines() if " pip install " in line]
        assert f"pip install --quiet '{pins['torch']}'" in done.stdout
        if target == "tf":
            assert f"-c .venv/.tf-constraints '{pins['tf']}'" in done.stdout
        assert not [line for line in installs if re.search(r"install .*'?\.\[(torch|tf)", line)]


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
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for shown, command, code in RUN:
        done = subprocess.run(
            shlex.split(command), cwd=clone, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == code, f"{shown}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert (clone / "data" / "converted" / "catalog.parquet").is_file()
    assert (clone / "data" / "report" / "index.html").is_file()  # under data/: ignored by git
    assert (clone / CODECS_FRAMES).is_file()  # what docs/benchmarks.md hands zarr_codecs.py
    kept = {p.name for p in (clone / "data" / "real" / "zarr").iterdir()}
    assert kept == {"reacture_1795637148842.zarr", "reacture_1795637693305.zarr"}  # one removed
    assert {p.name for p in (clone / "data" / "real-clean" / "zarr").iterdir()} == {
        "reacture_1795637148842.zarr"  # the one recording with pictures
    }
    assert not (clone / "report").exists()


def test_the_reading_the_data_example_runs_as_written(clone: Path) -> None:
    """After `make convert` (its job, above), docs/training.md's "Reading the tables directly"."""
    if not (clone / "data" / "converted" / "catalog.parquet").exists():
        subprocess.run(
            [
                str(BIN / "reacture-convert"),
                "run",
                "pipelines/default.toml",
            ],
            cwd=clone,
            check=True,
            capture_output=True,
        )
    (code,) = blocks(section(DOCS / "training.md", "## Reading the tables directly"), "python")
    tree = ast.parse(code)
    assert isinstance(tree.body[-1], ast.Expr)  # the block ends with the query it shows
    tree.body[-1] = ast.Assign([ast.Name("result", ast.Store())], tree.body[-1].value)
    ast.fix_missing_locations(tree)
    cwd = os.getcwd()
    try:
        os.chdir(clone)
        scope: dict[str, Any] = {"__name__": "__readme__"}
        exec(compile(tree, "docs/training.md: Reading the tables directly", "exec"), scope)
        got = scope["result"].fetchall()  # a lazy relation: it runs here, inside the clone
    finally:
        os.chdir(cwd)
    sample = clone / "sample" / "reacture_1795637238001"
    want_ts = np.fromfile(sample / "reacture_1795637238001_timestamps.npy", "<f4", offset=129)
    assert scope["frames"].shape == (92, 128, 128, 3) and str(scope["frames"].dtype) == "uint8"
    assert np.asarray(scope["ts"]).tobytes() == want_ts.tobytes()
    assert scope["rows"].num_rows == 173
    assert sorted(r[0] for r in got) == list(range(92))
    assert sorted(r[1] for r in got) == sorted(want_ts.tolist())


def test_the_mixing_example_runs_as_written(clone: Path) -> None:
    """docs/training.md's "Mixing datasets", over the two datasets the commands above convert."""
    command_line = str(BIN / "reacture-convert")
    for folder, command in (
        ("data/real", "convert tests/data/real.tar.gz --out data/real --format zarr,wds"),
        ("data/other", "convert sample --out data/other --format zarr,wds --shard-size 1MB"),
    ):
        if not (clone / folder / "catalog.parquet").exists():
            subprocess.run(
                [command_line, *command.split()], cwd=clone, check=True, capture_output=True
            )
    (code,) = blocks(section(DOCS / "training.md", "## Mixing datasets"), "python")
    cwd = os.getcwd()
    try:
        os.chdir(clone)
        scope: dict[str, object] = {"__name__": "__readme__"}
        exec(compile(code, "README: Mixing datasets", "exec"), scope)
        loader: Any = scope["loader"]
        sessions = [s for batch in loader for s in batch["session"]]
    finally:
        os.chdir(cwd)
    # real (all frames; less the session the README's `remove` took out, if it ran first) + the
    # sample
    live = [e for e in read_catalog(Output(str(clone / "data" / "real"))) if e.status.is_live]
    assert sum(e.n_frames or 0 for e in live) in (534, 534 - 92)
    assert len(sessions) == len(loader.dataset) == sum(e.n_frames or 0 for e in live) + 92
