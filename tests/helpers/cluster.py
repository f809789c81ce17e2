"""A real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .paths import REPO


def _dask_cli() -> list[str]:
    """The ``dask`` command of the interpreter running the tests (the project's venv)."""
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [shutil.which("dask") or "dask"]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process this module started: SIGTERM, then SIGKILL to its own group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group holds only what it started
            proc.wait(timeout=10)


@contextmanager
def dask_cluster(tmp: Path) -> Iterator[str]:
    """Start a scheduler and two workers (one thread each) as subprocesses, logging into
    ``tmp``; yields the scheduler address once both workers are connected, and stops all three
    afterwards."""
    from distributed import Client

    sched_file = tmp / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    # Like a real deployment, the workers run the same code as the client: the package, and
    # the test modules (the package ``tests``), whose functions tasks may name.
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}

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
