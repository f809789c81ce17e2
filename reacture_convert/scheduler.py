"""Where session tasks run: in this process, on a local Dask cluster, or on an existing one.

``open_scheduler(spec, workers)`` gives a ``Scheduler`` with ``submit`` and ``results``:
results arrive as tasks finish (more may be submitted meanwhile), and an exception raised by or
around a task (a worker that died: ``KilledWorker``) comes back as a value, never as a crash.

Specs: ``sync`` (this process, one at a time: debugging, a single bundle), ``threads`` (one
local worker process with N threads), ``processes`` (N local worker processes, one thread
each: the default for batches, since JSON parsing holds the GIL), ``tcp://HOST:PORT`` (an
existing ``dask.distributed`` scheduler; OUT and the inputs must be reachable from its workers,
e.g. an object store or a shared filesystem), ``auto`` (``sync`` for one bundle, else
``processes``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from reacture_convert.errors import ConfigError

__all__ = ["Scheduler", "open_scheduler", "SCHEDULERS", "default_workers"]

SCHEDULERS = ("auto", "sync", "threads", "processes")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Scheduler:
    """Submit keyed tasks; iterate ``results()`` for ``(key, value_or_exception)`` pairs."""

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    def results(self) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    description = ""


class _Sync(Scheduler):
    description = "sync (in this process)"

    def __init__(self) -> None:
        self.pending: deque[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = deque()

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        self.pending.append((key, fn, args))

    def results(self) -> Iterator[tuple[Any, Any]]:
        while self.pending:
            key, fn, args = self.pending.popleft()
            try:
                yield key, fn(*args)
            except Exception as e:  # noqa: BLE001 - handed to the caller as a value
                yield key, e


class _Distributed(Scheduler):
    def __init__(self, client: Any, description: str) -> None:
        from distributed import as_completed

        self.client = client
        self.description = description
        self.keys: dict[str, Any] = {}
        self.queue = as_completed([], with_results=False)

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        future = self.client.submit(fn, *args, pure=False)
        self.keys[future.key] = key
        self.queue.add(future)

    def results(self) -> Iterator[tuple[Any, Any]]:
        for future in self.queue:
            key = self.keys.pop(future.key)
            try:
                value = future.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker, task errors: values here
                value = e
            finally:
                future.release()
            yield key, value


@contextlib.contextmanager
def open_scheduler(spec: str, workers: int | None = None, n_tasks: int = 2) -> Iterator[Scheduler]:
    """Start (or connect to) the scheduler named by ``spec`` for the duration of a run."""
    if spec == "auto":
        spec = "sync" if n_tasks <= 1 else "processes"
    if spec == "sync":
        yield _Sync()
        return
    from distributed import Client, LocalCluster

    if spec.startswith("tcp://") or spec.startswith("tls://"):
        try:
            client = Client(spec, timeout="20s")
        except OSError as e:
            raise ConfigError(f"cannot reach the Dask scheduler at {spec}: {e}; is it running?") from e
        with client:
            n = len(client.scheduler_info().get("workers", {}))
            yield _Distributed(client, f"dask cluster {spec} ({n} workers)")
        return
    if spec not in ("threads", "processes"):
        raise ConfigError(f"unknown scheduler {spec!r}; use one of {', '.join(SCHEDULERS)} "
                          "or tcp://HOST:PORT")
    n = workers or default_workers()
    processes = spec == "processes"
    with LocalCluster(
        n_workers=n if processes else 1,
        threads_per_worker=1 if processes else n,
        processes=processes,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as client:
        yield _Distributed(client, f"local dask, {n} {'processes' if processes else 'threads'}")
