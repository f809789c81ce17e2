"""The command line loads only what a command runs: no Dask for a conversion in this process,
no converter for ``--help``. Many tests run the command line in a subprocess, so what it imports
is paid by every one of them (docs/benchmarks.md, start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PROBE = """
import json, sys
from reacture_convert.cli import cli
try:
    cli.main(args=sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded(*args: str) -> set[str]:
    """Top-level packages imported by running ``reacture-convert ARGS`` (in a fresh process)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


# What no local conversion or validation runs: the cluster, zarr-python (the package writes
# Zarr's bytes itself), the readers' frameworks, object-store clients, the report's plotting.
NEVER_HERE = {
    "dask",
    "distributed",
    "zarr",
    "torch",
    "tensorflow",
    "s3fs",
    "botocore",
    "aiohttp",
    "pandas",
    "matplotlib",
    "PIL",
    "rich",
}
# What printing help needs none of: the converter's libraries
NOT_FOR_HELP = NEVER_HERE | {"numpy", "pyarrow", "fsspec", "msgspec", "numcodecs"}


@pytest.mark.parametrize("scheduler", ["sync", "auto"])
def test_converting_here_imports_neither_dask_nor_zarr(
    make_bundle: Callable[..., Path], tmp_path: Path, scheduler: str
) -> None:
    src = make_bundle(n_frames=5)
    modules = loaded(
        "convert", str(src), "--out", str(tmp_path / "out"), "--quiet", "--scheduler", scheduler
    )
    assert not modules & NEVER_HERE, modules & NEVER_HERE


def test_progress_off_a_terminal_imports_no_rich(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    # no --quiet: stderr is a pipe here, so the progress display is off and rich stays unloaded
    src = make_bundle(n_frames=5)
    modules = loaded("convert", str(src), "--out", str(tmp_path / "out"), "--scheduler", "sync")
    assert "rich" not in modules


def test_converting_to_shards_here_imports_no_picture_library(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    src = make_bundle(n_frames=5)
    out = str(tmp_path / "out")
    modules = loaded("convert", str(src), "--out", out, "--format", "zarr,wds", "--quiet")
    assert not modules & NEVER_HERE, modules & NEVER_HERE


def test_validating_imports_no_converter_library(make_bundle: Callable[..., Path]) -> None:
    modules = loaded("validate", str(make_bundle(n_frames=5)))
    assert not modules & (NEVER_HERE | {"numcodecs"}), modules & (NEVER_HERE | {"numcodecs"})


@pytest.mark.parametrize(
    "command", ["", "convert", "validate", "watch", "run", "verify", "show", "remove"]
)
def test_help_imports_none_of_the_converter(command: str) -> None:
    modules = loaded(*command.split(), "--help")
    assert not modules & NOT_FOR_HELP, modules & NOT_FOR_HELP


def test_a_local_cluster_imports_distributed(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    src = make_bundle(n_frames=3)
    modules = loaded(
        "convert",
        str(src),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        "--scheduler",
        "threads",
        "--workers",
        "1",
    )
    assert "distributed" in modules  # (the probe sees imports: this one must show)
