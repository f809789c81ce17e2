"""A run's progress events (``run.progress``): frames within a session from every scheduler, in
order and ending at the session's frame count; the wait for another run's lock, saying whose."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from reacture_convert.output.lease import Lease
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.run import progress as progress_module
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.progress import (
    FramesWritten,
    ProgressEvent,
    SessionDone,
    Started,
    WaitingForLock,
)
from reacture_convert.writers.zarr import ZarrOptions
from tests.helpers.s3 import S3

N_FRAMES = (90, 130)


def _run(tmp_path: Path, inputs: Path, scheduler: str, **kw: object) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    summary = run_convert(
        [str(inputs)],
        Output(str(tmp_path / "out")),
        ConvertOptions(zarr=ZarrOptions(chunk_frames=16)),
        scheduler=scheduler,
        workers=2,
        progress=events.append,
        **kw,  # type: ignore[arg-type]
    )
    assert summary.ok
    return events


def _check_frames(events: list[ProgressEvent], n_frames: dict[str, int]) -> None:
    """Per session: frame counts never go down, the last equals its frame count, bytes follow
    frames, and all of it comes before the session's result."""
    done = [e.entry.session for e in events if isinstance(e, SessionDone)]
    assert sorted(done) == sorted(n_frames)
    for session, n in n_frames.items():
        mine = [e for e in events if isinstance(e, FramesWritten) and e.session == session]
        counts = [e.frames for e in mine]
        assert counts == sorted(counts) and counts[-1] == n, (session, counts)
        assert {e.n_frames for e in mine} == {n}
        last = mine[-1]
        assert last.total_bytes is not None and last.bytes == last.total_bytes > 0
        result = [e for e in events if isinstance(e, SessionDone) and e.entry.session == session]
        assert events.index(last) < events.index(result[0])


def test_sync_reports_frames_in_order_up_to_each_sessions_count(
    tmp_path: Path, make_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, n in enumerate(N_FRAMES):
        make_bundle(f"b{k}", prefix=f"reacture_179560000000{k}", seed=k, n_frames=n)
    monkeypatch.setattr(progress_module, "EVERY_SECONDS", 0.0)  # every block, to see them all
    events = _run(tmp_path, tmp_path / "bundles", "sync")
    assert events[0] == Started(Output(str(tmp_path / "out")).url, 2)
    _check_frames(events, {f"reacture_179560000000{k}": n for k, n in enumerate(N_FRAMES)})
    frames = [e for e in events if isinstance(e, FramesWritten)]
    assert len(frames) >= sum(n // 16 for n in N_FRAMES)  # one per block of 16 frames at least


@pytest.mark.parametrize("scheduler", ["threads", "processes", "cluster"])
def test_frames_arrive_from_dask_workers(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    scheduler: str,
    request: pytest.FixtureRequest,
) -> None:
    """From a local worker's threads, from local worker processes and from the worker processes
    of a ``tcp://`` cluster: Dask events to this client."""
    if scheduler == "cluster":
        scheduler = request.getfixturevalue("dask_cluster")
    for k, n in enumerate(N_FRAMES):
        make_bundle(f"b{k}", prefix=f"reacture_179560000000{k}", seed=k, n_frames=n)
    events = _run(tmp_path, tmp_path / "bundles", scheduler)
    _check_frames(events, {f"reacture_179560000000{k}": n for k, n in enumerate(N_FRAMES)})


def test_a_progress_callback_that_raises_does_not_stop_the_run(
    tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    make_bundle("b0", n_frames=20)

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("display gone")

    summary = run_convert(
        [str(tmp_path / "bundles")], Output(str(tmp_path / "out")), progress=broken
    )
    assert summary.ok and summary.counts == {"converted": 1}


def test_waiting_for_a_held_lock_says_whose_it_is(
    tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    """Another holder (a thread here: ``flock`` locks are per open file) keeps OUT's lock until
    this run reports that it waits for it; the event names the holder (host:pid)."""
    make_bundle("b0", n_frames=10)
    out = Output(str(tmp_path / "out"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock_output(out):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(60)
    events: list[ProgressEvent] = []

    def seen(event: ProgressEvent) -> None:
        events.append(event)
        if isinstance(event, WaitingForLock):
            release.set()

    try:
        summary = run_convert([str(tmp_path / "bundles")], out, progress=seen, wait_for_lock=True)
    finally:
        release.set()
        holder.join()
    assert summary.ok
    waiting = events[0]
    assert isinstance(waiting, WaitingForLock) and waiting.out == out.url
    assert waiting.holder == f"{socket.gethostname()}:{os.getpid()}"
    assert isinstance(events[1], Started)


def test_waiting_for_an_s3_lease_names_its_owner(
    tmp_path: Path, make_bundle: Callable[..., Path], moto_s3: S3
) -> None:
    """On S3 the holder is the lease's owner, as its lock object records it."""
    make_bundle("b0", n_frames=10)
    out = Output("s3://datasets/progress-wait", moto_s3.options)
    lease = Lease(out)
    lease.acquire()
    events: list[ProgressEvent] = []

    def seen(event: ProgressEvent) -> None:
        events.append(event)
        if isinstance(event, WaitingForLock):
            lease.release()

    try:
        summary = run_convert([str(tmp_path / "bundles")], out, progress=seen, wait_for_lock=True)
    finally:
        lease.release()
    assert summary.ok
    waiting = events[0]
    assert isinstance(waiting, WaitingForLock) and waiting.holder is not None
    assert waiting.holder.startswith(f"{lease.owner} (since ")
