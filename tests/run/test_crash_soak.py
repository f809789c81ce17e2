"""The kill trials of ``test_crash`` again, many more of them (a soak): a file of its own, so
that the two halves run on different pytest-xdist workers (``make test`` distributes by file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run.test_crash import SOAK_TRIALS, TRIALS, World, crash_trial
from tests.run.test_crash import world as world  # the module's fixture: the bundles, clean runs


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS, TRIALS + SOAK_TRIALS))
def test_soak_killed_run_then_rerun_equals_a_clean_run(
    world: World, tmp_path: Path, trial: int
) -> None:
    crash_trial(world, tmp_path, trial, processes=(3, 6), cycle=8)  # zarr,wds and zarr
