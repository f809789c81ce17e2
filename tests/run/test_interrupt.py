"""Ctrl-C stops a run at once: ``reacture-convert convert`` (and ``watch``'s second signal) in a
process of its own, sent a real SIGINT or SIGTERM while it converts, to its whole process group
(a terminal's Ctrl-C: the Dask workers get it too) or to the main process only.

- It exits 130 well within a few seconds (the time is printed), saying how many sessions it
  converted and how many are left, with nothing of the sessions in flight left in staging.
- What it committed stays and verifies; the next run says it resumes, and finishes with every
  session exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.paths import REPO

CLI = [sys.executable, "-m", "reacture_convert"]
SPECS = [
    BundleSpec(prefix=f"reacture_17956000040{i:02d}", seed=40 + i, n_frames=2500) for i in range(4)
]
STOP_WITHIN = 5.0  # seconds from the signal to the exit (under load; ~0.5 s when idle)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four sessions of 2500 frames: a couple of seconds each to convert."""
    root = tmp_path_factory.mktemp("interrupt") / "in"
    for i, spec in enumerate(SPECS):
        write_bundle(root / f"b{i}", spec)
    return root


def live_sessions(out: Path) -> list[str]:
    try:
        return [e.session or "" for e in read_catalog(Output(str(out))) if e.status.is_live]
    except OSError:
        return []


def staged(out: Path) -> list[Path]:
    return sorted((out / ".staging").glob("*/*")) if (out / ".staging").exists() else []


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as sink:
        return subprocess.Popen(
            [*CLI, *args], stdout=sink, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )


def wait_until_converting(proc: subprocess.Popen[bytes], out: Path, log: Path) -> None:
    """Until a session is committed and another one is being staged."""
    deadline = time.monotonic() + 120
    while not (live_sessions(out) and staged(out)):
        assert proc.poll() is None, f"the run ended first:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "never converting"
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[bytes], how: str, sig: int = signal.SIGINT) -> float:
    """Send ``sig`` (to the group: a terminal's Ctrl-C; or to the process only); the seconds
    until the process exited."""
    sent = time.monotonic()
    if how == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return time.monotonic() - sent


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("scheduler", "how", "as_json"),
    [
        ("sync", "group", False),
        ("sync", "process", True),
        ("processes", "group", False),
        ("processes", "process", False),
    ],
    ids=["sync-ctrl-c", "sync-sigint-to-process-json", "processes-ctrl-c", "processes-sigint"],
)
def test_the_first_ctrl_c_stops_at_once_and_the_next_run_resumes(
    tmp_path: Path, bundles: Path, scheduler: str, how: str, as_json: bool
) -> None:
    out, log = tmp_path / "out", tmp_path / "run.log"
    args = ["convert", str(bundles), "--out", str(out), "--scheduler", scheduler]
    proc = start([*args, *(["--json"] if as_json else [])], log)
    try:
        wait_until_converting(proc, out, log)
        seconds = interrupt(proc, how)
    finally:
        kill_group(proc)
    text = log.read_text()
    print(f"{scheduler} {how}: exited {seconds:.2f} s after SIGINT")
    assert proc.returncode == 130, text[-3000:]
    assert seconds < STOP_WITHIN, f"took {seconds:.1f} s to stop"
    assert "Aborted!" not in text and "Traceback" not in text, text[-3000:]
    done = sorted(live_sessions(out))
    assert 1 <= len(done) < len(SPECS)
    if as_json:
        summary = json.loads(text[text.index("{") :])
        assert summary["status"] == "interrupted" and summary["ok"] is False
        assert summary["interrupted"]["finished"] == len(done)
    else:
        assert (
            f"interrupted: {len(done)} converted, {len(SPECS) - len(done)} not started; "
            "run the same command again to finish"
        ) in text
    assert not (out / ".staging").exists()  # the sessions in flight: dropped, not half-there
    assert sorted(p.name for p in (out / "zarr").iterdir()) == [f"{s}.zarr" for s in done]
    assert verify_dataset(Output(str(out))) == (len(done), [])

    # the rest in this process's order: resuming does not depend on the scheduler (and a second
    # local cluster would only add its start-up)
    rest = ["convert", str(bundles), "--out", str(out), "--scheduler", "sync"]
    again = subprocess.run(
        [*CLI, *rest], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming an interrupted run: {len(done)} sessions already converted" in again.stderr
    sessions = Counter(live_sessions(out))
    assert sessions == Counter(str(s.prefix) for s in SPECS)  # each exactly once
    assert not (out / ".interrupted").exists()
    assert verify_dataset(Output(str(out))) == (len(SPECS), [])
    third = subprocess.run([*CLI, *rest], capture_output=True, text=True, cwd=REPO, check=False)
    assert third.returncode == 0 and "resuming" not in third.stderr  # finished: nothing to resume


@pytest.mark.parametrize("how", ["group", "process"])
def test_a_watchers_second_signal_stops_at_once(tmp_path: Path, bundles: Path, how: str) -> None:
    out, log = tmp_path / "out", tmp_path / "watch.log"
    proc = start(
        [
            "watch",
            str(bundles),
            "--out",
            str(out),
            "--settle",
            "0.2s",
            "--scheduler",
            "processes",
            "--workers",
            "1",
            "--json",
        ],
        log,
    )
    try:
        wait_until_converting(proc, out, log)
        interrupt_once = signal.SIGINT if how == "group" else signal.SIGTERM
        (os.killpg if how == "group" else os.kill)(proc.pid, interrupt_once)
        deadline = time.monotonic() + 30
        while '"stopping"' not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.02)
        seconds = interrupt(proc, how, interrupt_once)
    finally:
        kill_group(proc)
    print(f"watch {how}: exited {seconds:.2f} s after the second signal")
    text = log.read_text()
    assert proc.returncode == 130, text[-3000:]
    assert seconds < STOP_WITHIN, f"took {seconds:.1f} s to stop"
    assert '"reason": "abort"' in text
    assert not staged(out)
    done = live_sessions(out)
    assert verify_dataset(Output(str(out))) == (len(done), [])
