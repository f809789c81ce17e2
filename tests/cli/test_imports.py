"""The command line loads only what a command runs: no Dask for a conversion in this process."""

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


@pytest.mark.parametrize("scheduler", ["sync", "auto"])
def test_converting_here_imports_neither_dask_nor_zarr(
    make_bundle: Callable[..., Path], tmp_path: Path, scheduler: str
) -> None:
    src = make_bundle(n_frames=5)
    modules = loaded(
        "convert", str(src), "--out", str(tmp_path / "out"), "--quiet", "--scheduler", scheduler
    )
    assert not modules & {"dask", "distributed", "zarr"}, modules & {"dask", "distributed", "zarr"}


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
