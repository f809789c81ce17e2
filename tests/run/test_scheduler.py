"""Schedulers: every kind runs tasks and hands back each result or exception as a value.

The local ``threads``/``processes`` clusters and the ``tcp://`` cluster (``dask_cluster`` in
conftest: a real ``dask scheduler`` and two ``dask worker`` processes) are real; a worker that
dies really dies (``os._exit``), and what comes back becomes a ``failed`` catalog row.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import dask
import pytest
from distributed import KilledWorker

from reacture_convert.errors import ConfigError
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.run.driver import as_result
from reacture_convert.run.scheduler import (
    AUTO_PROCESSES_BYTES,
    auto_scheduler,
    check_scheduler,
    open_scheduler,
)


def double(x: int) -> int:
    return 2 * x


def fail_io(x: int) -> int:
    raise OSError(5, f"disk on fire at {x}")


def die(x: int) -> int:
    os._exit(1)  # the worker process dies mid-task: no exception, no result


def whoami(_: int) -> int:
    time.sleep(0.2)  # long enough that both workers get a task
    return os.getpid()


def run_all(spec: str, tasks: list[tuple[str, object, int]], **kw: object) -> dict[str, object]:
    with open_scheduler(spec, **kw) as sched:  # type: ignore[arg-type]
        for key, fn, arg in tasks:
            sched.submit(key, fn, arg)
        return dict(sched.results())


@pytest.mark.parametrize("spec", ["sync", "threads", "processes"])
def test_results_and_exceptions_come_back_as_values(spec: str) -> None:
    tasks = [("a", double, 1), ("b", fail_io, 2), ("c", double, 3)]
    results = run_all(spec, tasks, workers=2)
    assert results["a"] == 2 and results["c"] == 6
    err = results["b"]
    assert isinstance(err, OSError) and "disk on fire at 2" in str(err)


def test_sync_runs_in_submission_order_one_at_a_time() -> None:
    order: list[str] = []
    with open_scheduler("sync") as sched:
        assert sched.capacity == 1
        for key in "xyz":
            sched.submit(key, order.append, key)
        keys = [k for k, _ in sched.results()]
    assert keys == order == ["x", "y", "z"]


def test_sync_with_overlap_starts_the_next_task_while_the_caller_holds_a_result() -> None:
    """Into an object store the driver's commit of a result waits on round trips: the next
    session converts meanwhile, still one task at a time and in submission order."""
    started: dict[str, threading.Event] = {k: threading.Event() for k in "xyz"}
    running: list[str] = []

    def task(key: str) -> str:
        running.append(key)
        started[key].set()
        time.sleep(0.05)
        running.remove(key)
        return key

    order = []
    stop = threading.Event()
    with open_scheduler("sync", overlap=True) as sched:
        assert sched.capacity == 2
        for key in "xyz":
            sched.submit(key, task, key)
        for key, value in sched.results(stop):
            assert value == key
            after = chr(ord(key) + 1)
            if after in started:  # the next one runs while this result is being handled
                assert started[after].wait(5), f"{after} did not start while {key} was handled"
            order.append(key)
            assert len(running) <= 1
    assert order == ["x", "y", "z"]


def test_auto_is_sync_for_one_task_or_a_small_batch_and_processes_for_a_big_one() -> None:
    with open_scheduler("auto", n_tasks=1) as one:
        assert one.description.startswith("sync")
    with open_scheduler("auto", workers=2, n_tasks=5, total_bytes=10**6) as small:
        assert small.description.startswith("sync")
    with open_scheduler("auto", workers=2, n_tasks=5, total_bytes=AUTO_PROCESSES_BYTES) as big:
        assert big.description == "local dask, 2 processes"
        assert big.capacity == 4
    with open_scheduler("auto", workers=2, n_tasks=5) as unknown_size:
        assert unknown_size.description == "local dask, 2 processes"


@pytest.mark.parametrize(
    ("n_tasks", "size", "workers", "choice"),
    [
        (1, 10**12, 2, "sync"),  # one bundle: every core here
        (8, AUTO_PROCESSES_BYTES - 1, 2, "sync"),  # a cluster's start costs more than it saves
        (8, AUTO_PROCESSES_BYTES, 2, "processes"),
        (8, AUTO_PROCESSES_BYTES, 1, "sync"),  # one core: nothing to share
        (8, None, 2, "processes"),  # size unknown (a watcher): as before
    ],
)
def test_auto_decides_by_the_work(
    n_tasks: int, size: int | None, workers: int, choice: str
) -> None:
    assert auto_scheduler(n_tasks, size, workers) == choice


def test_processes_use_separate_worker_processes() -> None:
    results = run_all("processes", [(str(k), whoami, k) for k in range(4)], workers=2)
    pids = set(results.values())
    assert os.getpid() not in pids
    assert len(pids) == 2


def test_a_worker_that_dies_comes_back_as_a_value_and_becomes_a_failed_row() -> None:
    """The task's process exits; Dask gives up on it (no retries here) and the scheduler hands
    back KilledWorker instead of raising; later tasks run on the restarted worker; the batch
    turns the value into a ``failed`` catalog row with the reason."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with open_scheduler("processes", workers=2) as sched:
            sched.submit("dies", die, 0)
            first = dict(sched.results())
            sched.submit("after", double, 21)
            second = dict(sched.results())
    value = first["dies"]
    assert isinstance(value, KilledWorker)
    assert second == {"after": 42}

    bundle = BundleRef("reacture_1795600000009", "/data/incoming/b9", {})
    entry = as_result(bundle, value, "run1").entry
    assert entry.status == "failed"
    assert entry.session == "reacture_1795600000009" and entry.source == "/data/incoming/b9"
    assert entry.reason is not None and entry.reason.startswith("KilledWorker: ")
    assert [f.code for f in entry.findings] == ["CONVERT_FAILED"]
    assert entry.run_id == "run1" and entry.converted_at is not None


def test_tcp_cluster_runs_tasks_on_its_workers(dask_cluster: str) -> None:
    with open_scheduler(dask_cluster) as sched:
        assert sched.description == f"dask cluster {dask_cluster} (2 workers)"
        assert sched.capacity == 4
        for k in range(4):
            sched.submit(k, whoami, k)
        sched.submit("err", fail_io, 7)
        results = dict(sched.results())
    err = results.pop("err")
    assert isinstance(err, OSError)
    pids = set(results.values())
    assert os.getpid() not in pids and len(pids) == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ("thread", "unknown scheduler 'thread'"),
        ("", "unknown scheduler ''"),
        ("tcp://", "unknown scheduler 'tcp://'"),
        ("http://127.0.0.1:8786", "unknown scheduler 'http://127.0.0.1:8786'"),
    ],
    ids=["typo", "empty", "no-host", "wrong-protocol"],
)
def test_unknown_scheduler_is_a_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_scheduler(spec)
    with pytest.raises(ConfigError, match=message):
        with open_scheduler(spec):
            pass


def test_unreachable_cluster_is_a_config_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ConfigError, match=rf"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        with open_scheduler(f"tcp://127.0.0.1:{port}", connect_timeout=1):
            pass  # (a hang would fail the test through pytest-timeout)
