"""Real storage faults for tests: a small tmpfs (a disk that fills), and a command prefix under
which file permissions bind even for root (a folder that refuses writes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["small_tmpfs", "unprivileged"]


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"1m"``, ``"16m"``) mounted at ``mount`` (made here), unmounted
    after; skips the test where mounting is impossible (not root, no mount)."""
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def unprivileged() -> list[str]:
    """A prefix under which file permissions bind (root ignores them: drop that power)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be made to bind")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def wait_stopped(pid: int, timeout: float = 30.0) -> None:
    """Wait until process ``pid`` is stopped (``phases.reached`` stops it with SIGSTOP just
    after it writes its marker: a loaded machine may run the test before the stop lands)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "Tt":
        assert time.monotonic() < deadline, f"process {pid} never stopped"
        time.sleep(0.005)
