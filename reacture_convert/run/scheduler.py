"""Where session tasks run: in this process, on a local Dask cluster, or on an existing one.

``open_scheduler(spec, workers)`` gives a ``Scheduler`` with ``submit`` and ``results``:
results arrive as tasks finish (more may be submitted meanwhile), and an exception raised by or
around a task (a worker that died: ``KilledWorker``) comes back as a value, never as a crash.
``capacity`` says how many tasks are worth keeping in flight, so a driver can feed tasks a few
at a time and stop feeding when it must (``on_error = "stop"``).

Specs: ``sync`` (this process, one session at a time, each on every core: frames are hashed
and encoded on a thread per core while the rows are parsed), ``threads`` (one local worker
process with N threads, a session on each), ``processes`` (N local worker processes, one
thread and one session each), ``tcp://HOST:PORT`` (an existing ``dask.distributed`` scheduler;
OUT and the inputs must be reachable from its workers, e.g. an object store or a shared
filesystem), ``auto`` (``auto_scheduler``: ``processes`` once the batch is big enough to pay for
starting a local cluster, else ``sync``). Dask is imported only for a scheduler that needs it.

A task whose worker process dies is retried on another worker by Dask up to
``distributed.scheduler.allowed-failures`` times (default 3) before it comes back as
``KilledWorker``; lower that setting (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0``) to
give up on a poisonous bundle at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from reacture_convert.cores import available_cores
from reacture_convert.errors import ConfigError

__all__ = [
    "AUTO_PROCESSES_BYTES",
    "SCHEDULERS",
    "auto_scheduler",
    "Scheduler",
    "check_scheduler",
    "default_workers",
    "open_scheduler",
    "ResultPump",
    "runs_here",
]

SCHEDULERS = ("auto", "sync", "threads", "processes")
_REMOTE = ("tcp://", "tls://")
# Input bytes from which ``auto`` starts local worker processes (measured on 2 cores: below,
# starting the cluster and its workers costs more than running sessions on every core here
# saves; benchmarks/PROFILES.md, "Choosing the scheduler").
AUTO_PROCESSES_BYTES = 4 * 10**9
POLL = 0.05  # seconds between looks at ``stop`` while waiting for results


def auto_scheduler(n_tasks: int, total_bytes: int | None, workers: int | None = None) -> str:
    """What ``auto`` runs: ``sync`` for one bundle, on one core, or for a batch smaller than
    ``AUTO_PROCESSES_BYTES`` (its sessions use every core here, one after the other);
    ``processes`` for a bigger batch, or when its size is unknown (``None``)."""
    cores = workers or default_workers()
    if n_tasks <= 1 or cores <= 1:
        return "sync"
    if total_bytes is not None and total_bytes < AUTO_PROCESSES_BYTES:
        return "sync"
    return "processes"


def default_workers() -> int:
    """Local workers when none are asked for: one per CPU this process may run on."""
    return available_cores()


def check_scheduler(spec: str) -> str:
    """``spec`` if it names a scheduler (see the module doc), else a ConfigError saying which."""
    if spec in SCHEDULERS or (spec.startswith(_REMOTE) and len(spec) > len("tcp://")):
        return spec
    raise ConfigError(
        f"unknown scheduler {spec!r}; use one of {', '.join(SCHEDULERS)} "
        "or tcp://HOST:PORT of a running Dask scheduler"
    )


def runs_here(spec: str) -> bool:
    """The tasks of scheduler ``spec`` run on this machine (all but a remote Dask cluster's),
    so they share its disk with the caller."""
    return not spec.startswith(_REMOTE)


class Scheduler:
    """Submit keyed tasks; iterate ``results()`` for ``(key, value_or_exception)`` pairs."""

    description = ""
    capacity = 1  # tasks worth keeping in flight
    workers = 1  # tasks that run at once (worker threads in all)

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        raise NotImplementedError

    def results(self, stop: threading.Event | None = None) -> Iterator[tuple[Any, Any]]:
        """Results as tasks finish; returns early, within ``POLL`` seconds, once ``stop`` is
        set (the tasks still in flight are then the caller's to ``abandon``)."""
        raise NotImplementedError

    def abandon(self) -> None:
        """Drop every task in flight at once, without waiting for it (after an interrupt)."""

    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> Callable[[], None]:
        """Have ``handler`` take the Dask events that tasks log under ``topic`` (none here: a
        task in this process has nothing to log them to); returns how to stop."""
        return lambda: None


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - handed to the caller as a value
        return e


def _call_into(done: queue.Queue[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    done.put(_call(fn, args))


class _Sync(Scheduler):
    """Runs each task in this process when its result is asked for: deterministic order. With
    a ``stop`` event the task runs on a thread of its own while the caller waits, so that the
    caller hears a signal at once; an abandoned task's thread is left to its end (a daemon).
    ``ahead``: the next task starts (still one at a time) as a result is handed over, so that
    the caller's work on it (a commit's round trips to an object store) overlaps the next
    task's; two tasks are then worth keeping in flight."""

    description = "sync (in this process)"

    def __init__(self, ahead: bool = False) -> None:
        self.pending: deque[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = deque()
        self.ahead = ahead
        self.capacity = 2 if ahead else 1

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        self.pending.append((key, fn, args))

    def _start(self) -> tuple[Any, queue.Queue[Any]]:
        key, fn, args = self.pending.popleft()
        done: queue.Queue[Any] = queue.Queue(1)
        threading.Thread(
            target=_call_into, args=(done, fn, args), name="reacture-session", daemon=True
        ).start()
        return key, done

    def results(self, stop: threading.Event | None = None) -> Iterator[tuple[Any, Any]]:
        if stop is None:
            while self.pending:
                key, fn, args = self.pending.popleft()
                yield key, _call(fn, args)
            return
        running = None
        while (running is not None or self.pending) and not stop.is_set():
            key, done = running if running is not None else self._start()
            while True:
                try:
                    value = done.get(timeout=POLL)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                break
            running = self._start() if self.ahead and self.pending else None
            yield key, value


class _Distributed(Scheduler):
    """Tasks as ``dask.distributed`` futures, handed back in the order they finish. ``client``
    may still be starting (a future of it, from a background thread): the first use of the
    scheduler waits for it."""

    def __init__(self, client: Any, description: str) -> None:
        self._client = client
        self.description = description
        self.keys: dict[str, Any] = {}
        self.futures: dict[str, Any] = {}  # in flight, by Dask key
        self.abandoned = False
        self._queue: Any = None
        self._workers: int | None = None

    def _ready(self) -> Any:
        """The client, once started; its ``as_completed`` queue made."""
        if isinstance(self._client, Future):
            self._client = self._client.result()[1]
        if self._queue is None:
            from distributed import as_completed

            self._queue = as_completed([], with_results=False)  # type: ignore[no-untyped-call]
        return self._client

    @property
    def workers(self) -> int:  # type: ignore[override]
        if self._workers is None:
            threads = sum(self._ready().nthreads().values())  # 0 while workers connect
            self._workers = max(1, threads)
        return self._workers

    @property
    def capacity(self) -> int:  # type: ignore[override]
        return max(2, 2 * self.workers)

    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> Callable[[], None]:
        client = self._ready()
        client.subscribe_topic(topic, handler)
        return lambda: client.unsubscribe_topic(topic)

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any) -> None:
        future = self._ready().submit(fn, *args, pure=False)
        self.keys[future.key] = key
        self.futures[future.key] = future
        self._queue.add(future)

    def results(self, stop: threading.Event | None = None) -> Iterator[tuple[Any, Any]]:
        self._ready()
        while not self._queue.is_empty():
            if stop is not None:
                while not self._queue.has_ready():
                    if stop.wait(POLL):
                        return
            future = next(self._queue)
            key = self.keys.pop(future.key)
            del self.futures[future.key]
            try:
                value = future.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker, task errors: values here
                value = e
            finally:
                future.release()
            yield key, value

    def abandon(self) -> None:
        self.abandoned = True
        if self.futures and not isinstance(self._client, Future):
            with contextlib.suppress(Exception):  # a cluster that is gone has nothing to drop
                self._client.cancel(list(self.futures.values()), force=True)
        self.futures.clear()


def _kill_workers(client: Any) -> None:
    """SIGKILL a local cluster's worker processes (their sessions abandoned): closing the
    cluster then does not wait for tasks that would run for seconds more."""
    cluster = getattr(client, "cluster", None)
    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(getattr(nanny, "process", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _start_local(n: int, processes: bool) -> tuple[contextlib.ExitStack, Any]:
    """A local cluster of ``n`` workers (processes, one thread each; or one process with ``n``
    threads) and its client; the stack closes both. Worker processes ignore SIGINT
    (``run.workers``)."""
    import dask
    from distributed import Client, LocalCluster

    stack = contextlib.ExitStack()
    try:
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers; with our large
        # short-lived buffers that costs ~45 % more CPU per session (benchmarks/PROFILES.md).
        stack.enter_context(
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
        )
        if processes:
            stack.enter_context(
                dask.config.set({"distributed.worker.preload": ["reacture_convert.run.workers"]})
            )
        cluster = stack.enter_context(
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n if processes else 1,
                threads_per_worker=1 if processes else n,
                processes=processes,
                # no dashboard; the scheduler's HTTP server (health, metrics) only on a free
                # local port, never 0.0.0.0:8787 (a second run would clash, and it is not for
                # the network)
                dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR,
            )
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
        stack.callback(client.close)  # (not its context: that is this thread's)
    except BaseException:
        stack.close()
        raise
    return stack, client


@contextlib.contextmanager
def open_scheduler(
    spec: str,
    workers: int | None = None,
    n_tasks: int = 2,
    connect_timeout: float = 20.0,
    total_bytes: int | None = None,
    overlap: bool = False,
) -> Iterator[Scheduler]:
    """Start (or connect to) the scheduler named by ``spec`` for the duration of a run.

    ``workers``: local workers for ``threads``/``processes`` (default: one per CPU); ignored for
    a cluster, which has its own. ``n_tasks`` and ``total_bytes`` (the bundles' size, when
    known) are what ``auto`` decides by (``auto_scheduler``). A local cluster starts on a
    background thread: the caller goes on (loading the catalog, say) and the scheduler's first
    use waits for it. ``overlap``: a ``sync`` scheduler starts the next task as it hands a
    result over (for a caller whose work on results waits on round trips: an object-store
    OUT). Raises ConfigError for an unknown spec or a cluster that cannot be reached in
    ``connect_timeout`` seconds.
    """
    spec = check_scheduler(spec)
    if spec == "auto":
        spec = auto_scheduler(n_tasks, total_bytes, workers)
    if spec == "sync":
        yield _Sync(ahead=overlap)
        return
    if spec.startswith(_REMOTE):
        from distributed import Client

        try:
            client = Client(spec, timeout=connect_timeout)  # type: ignore[no-untyped-call]
        except OSError as e:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {spec}: {e}; is it running?"
            ) from e
        with client:
            n = len(client.scheduler_info().get("workers", {}))
            yield _Distributed(client, f"dask cluster {spec} ({n} workers)")
        return
    n = workers or default_workers()
    processes = spec == "processes"
    with ThreadPoolExecutor(1, thread_name_prefix="reacture-cluster") as starter:
        started = starter.submit(_start_local, n, processes)
        sched = _Distributed(started, f"local dask, {n} {'processes' if processes else 'threads'}")
        try:
            yield sched
        finally:
            # (a start that failed said so where the scheduler was used, if it was)
            if started.exception() is None:
                stack, client = started.result()
                if sched.abandoned and processes:
                    # the in-process scheduler then logs the workers' closed connections with
                    # tracebacks: a user who pressed Ctrl-C sees the run's own message only
                    log = logging.getLogger("distributed")
                    level = log.level
                    log.setLevel(logging.CRITICAL)
                    try:
                        _kill_workers(client)
                        stack.close()
                    finally:
                        log.setLevel(level)
                else:
                    stack.close()


class ResultPump:
    """Hands a scheduler's results to a queue (``results``) from a thread, so that a driver
    keeps doing other work while tasks run (``Scheduler.results`` blocks). A scheduler that
    dies is reported once as ``(None, exception)``. ``tick``: seconds between looks."""

    def __init__(self, sched: Scheduler, tick: float = 0.25) -> None:
        self.sched = sched
        self.tick = tick
        self.results: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.work = threading.Event()
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="reacture-watch-results", daemon=True)
        self.thread.start()

    def submit(self, key: Any, *task: Any) -> None:
        self.sched.submit(key, *task)
        self.work.set()

    def _run(self) -> None:
        while not self.closed:
            if not self.work.wait(timeout=self.tick):
                continue
            self.work.clear()  # before iterating: a task submitted from now on is seen
            try:
                for item in self.sched.results():
                    self.results.put(item)
            except Exception as e:  # noqa: BLE001 - the scheduler is gone: say so once
                if not self.closed:
                    self.results.put((None, e))
                return

    def close(self) -> None:
        self.closed = True
        self.work.set()
