"""A run killed (SIGKILL, a real process) at the catalog phase, then its newest log fragment
cut short as a torn write leaves it: every later reader and run heals the catalog on its own.

The run starts on a dataset whose last rows are still in the log (a run killed before its final
compaction), so the first thing it does is the catalog phase: the compaction of that log
(``REACTURE_PAUSE_AT=catalog`` stops it there, and the test kills it). Nothing recorded is lost
by the kill; with the newest fragment then cut to half, ``verify`` (a real process) says it
dropped the fragment and verifies the rest, and the next ``convert`` says so too, converts the
session whose row was lost again, and leaves a dataset that verifies whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from tests.helpers.damaged import (
    DAMAGES,
    FRAGMENT,
    LOGGED,
    N_BUNDLES,
    caught_mid_run,
    write_bundles,
)

CLI = [sys.executable, "-m", "reacture_convert"]


def test_killed_at_the_catalog_phase_with_its_newest_fragment_cut_heals(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_bundles(inputs)
    convert = [*CLI, "convert", str(inputs), "--out", str(out), "--scheduler", "sync"]
    subprocess.run([*convert, "-q"], check=True, capture_output=True, timeout=300)
    caught_mid_run(Output(str(out)))

    marker = tmp_path / "phase"
    env = {**os.environ, "REACTURE_PAUSE_AT": "catalog", "REACTURE_PHASE_FILE": str(marker)}
    proc = subprocess.Popen(
        convert, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the catalog phase was never reached"
            time.sleep(0.01)
        time.sleep(0.05)  # the marker is written just before the stop
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert marker.read_text().split()[0] == "catalog"
    assert len(read_catalog(Output(str(out)))) == N_BUNDLES  # the kill lost nothing
    assert sorted(p.name for p in (out / ".catalog").iterdir()) == [
        Path(FRAGMENT[k]).name for k in range(1, LOGGED + 1)
    ]

    DAMAGES["trailing fragment cut to half"][0](out)  # a torn write of the newest fragment
    said = f"catalog: dropped an incomplete fragment {FRAGMENT[3]} left by an interrupted run"
    verify = subprocess.run([*CLI, "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert said in verify.stderr and f"{N_BUNDLES - 1} session(s) checked" in verify.stdout
    run = subprocess.run(convert, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and said in run.stderr, run.stdout + run.stderr
    assert "1 converted, 6 skipped" in run.stdout
    verify = subprocess.run([*CLI, "verify", str(out), "--sources"], capture_output=True, text=True)
    assert verify.returncode == 0 and said not in verify.stderr, verify.stdout + verify.stderr
    assert f"{N_BUNDLES} session(s) checked (outputs and sources): all exact" in verify.stdout
    assert not (out / ".catalog").exists()
