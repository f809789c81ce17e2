"""Shared fixtures: the shipped sample, every real fixture bundle, and a bundle factory."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import s3fs

from reacture_convert.output.storage import Output
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec, write_bundle

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SAMPLE_DIR = REPO / "sample" / "reacture_1795637238001"
REAL_ARCHIVE = DATA / "real.tar.gz"
"""The real recordings (docs/bundle-format.md, "The recordings in tests/data"), as shipped."""
LEGACY_ARCHIVE = DATA / "legacy" / "reacture_1796075622822-legacy.tar.gz"
"""A real four-file export of the game's 2025 exporter."""
CHECKER = REPO.parent / "shared" / "tools" / "check_output.py"
"""The independent conformance checker: beside the repository on the team's machines only."""
needs_checker = pytest.mark.skipif(
    not CHECKER.is_file(),
    reason="the independent checker ../shared/tools/check_output.py is not beside this clone",
)


def _unpack_real() -> Path:
    """Unpack the real recordings once per test run into a private temporary folder, read-only
    (a test that writes into its sources fails); removed when the run ends."""
    import atexit
    import shutil
    import stat
    import tarfile
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="reacture-real-"))
    with tarfile.open(REAL_ARCHIVE) as tar:
        tar.extractall(root, filter="data")
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    def remove() -> None:
        for path in root.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(remove)
    return root / "real"


REAL = _unpack_real()
"""The folder of real recordings: three bundles (one in a sub-folder) and a README.md."""


def real_bundle_dirs() -> list[Path]:
    """Every bundle folder of the real recordings (the shipped sample is one of them)."""
    return [meta.parent for meta in sorted(REAL.rglob("*_metadata.json"))]


REAL_BUNDLES = real_bundle_dirs()


@pytest.fixture(params=REAL_BUNDLES, ids=[p.name for p in REAL_BUNDLES])
def real_bundle(request: pytest.FixtureRequest) -> Path:
    """Each real bundle folder in turn (read-only: never write into it)."""
    path: Path = request.param
    return path


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic bundle in the real exporter's format; returns its folder.

    Keyword arguments are those of ``BundleSpec``; ``name`` picks the sub-folder.
    """
    counter = iter(range(10**6))

    def make(name: str | None = None, **kwargs: object) -> Path:
        spec = BundleSpec(**kwargs)  # type: ignore[arg-type]
        folder = tmp_path / "bundles" / (name or f"b{next(counter)}")
        return write_bundle(folder, spec)

    return make


# --- a real Dask cluster (tests/test_batch.py, tests/test_scheduler.py) -----------------------


def _test_dirs() -> list[str]:
    """tests/ and its sub-folders: pytest imports a test module by its file name from there."""
    here = Path(__file__).parent
    return [str(here), *(str(d) for d in sorted(here.iterdir()) if d.is_dir() and d.name != "data")]


def _dask_cli() -> list[str]:
    """The ``dask`` command of the interpreter running the tests (the project's venv)."""
    import shutil
    import sys

    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [shutil.which("dask") or "dask"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process this fixture started: SIGTERM, then SIGKILL to its own group."""
    import os
    import signal

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group holds only what it started
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``dask scheduler`` and two ``dask worker`` processes (one thread each) on
    127.0.0.1, started as subprocesses; yields the scheduler address once both workers are
    connected, and stops all three afterwards."""
    import json
    import os
    import time

    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask-cluster")
    sched_file = tmp / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    # Like a real deployment, the workers run the same code as the client: the package, and
    # the test modules (pytest imports them from tests/), whose functions tasks may name.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (*_test_dirs(), os.environ.get("PYTHONPATH", "")) if p
        ),
    }

    def start(name: str, args: list[str]) -> None:
        log = tmp / f"{name}.log"
        logs.append(log)
        with open(log, "wb") as sink:
            procs.append(
                subprocess.Popen(
                    [*_dask_cli(), *args],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=tmp,
                    env=env,
                    start_new_session=True,
                )
            )

    def logs_text() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs)

    try:
        start(
            "scheduler",
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(sched_file),
            ],
        )
        deadline = time.monotonic() + 30
        while not sched_file.exists() or not sched_file.read_text().strip():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError(f"dask scheduler did not start:\n{logs_text()}")
            time.sleep(0.05)
        address = json.loads(sched_file.read_text())["address"]
        for k in range(2):
            start(
                f"worker{k}",
                [
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(tmp / f"worker{k}"),
                ],
            )
        with Client(address, timeout=30) as client:
            try:
                client.wait_for_workers(2, timeout=60)
            except TimeoutError:
                raise RuntimeError(f"dask workers did not connect:\n{logs_text()}") from None
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


# --- a local S3-compatible server (tests/test_s3.py, tests/test_watch.py) ---------------------


@dataclass(frozen=True)
class S3:
    """moto's server: its endpoint, and an s3fs filesystem talking to it."""

    endpoint: str
    fs: s3fs.S3FileSystem

    @property
    def options(self) -> dict[str, Any]:
        return {"client_kwargs": {"endpoint_url": self.endpoint}}

    @property
    def cli_options(self) -> list[str]:
        return ["--storage-option", f"client_kwargs.endpoint_url={self.endpoint}"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"moto_server did not start:\n{tail}") from None
            time.sleep(0.05)


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's server mode in its own process on a free port, fake credentials in the
    environment (inherited by Dask's worker processes), buckets ``raw`` and ``datasets``."""
    import sys

    tmp = tmp_path_factory.mktemp("moto")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        _wait_http(f"{endpoint}/moto-api/", proc, log)
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_EC2_METADATA_DISABLED", "true")
            fs = s3fs.S3FileSystem(
                client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True
            )
            fs.mkdir("raw")
            fs.mkdir("datasets")
            yield S3(endpoint, fs)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def convert_real_bundles(out: Path, options: ConvertOptions | None = None) -> Path:
    """Convert every real bundle into ``out`` with the sync scheduler; assert all converted."""
    opts = options or ConvertOptions(formats=("zarr", "wds"))
    summary = run_convert([str(p) for p in REAL_BUNDLES], Output(str(out)), opts, scheduler="sync")
    assert summary.counts == {"converted": len(REAL_BUNDLES)}
    return out
