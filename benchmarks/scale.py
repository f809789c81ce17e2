"""5: one machine's worth of parallelism: a batch on 1 vs 2 local Dask workers.

A local worker is one core (a session on a worker runs on the worker's thread alone), so the
ideal is 2×. The sessions are the 10-minute sessions of measurements 1 and 2: with shorter ones
(1,500 frames, ~0.25 s of work each) the fixed costs of a run (starting the cluster and each
worker, the driver's commits and catalog writes) are most of the wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import (
    TARGETS,
    Bench,
    ChildRun,
    Row,
    alternate,
    paired_ratio,
    seconds,
)


def measure_workers(b: Bench) -> list[Row]:
    n_sessions, n_frames = b.sizes.batch
    folder = b.work / "batch"
    for s in range(n_sessions):
        b.bundle(n_frames, seed=100 + s, group="batch")

    def with_workers(w: int) -> Callable[[int], ChildRun]:
        return lambda r: b.child(
            b.convert_cmd(
                folder, b.fresh("m5-out"), "zarr", "--scheduler", "processes", "--workers", str(w)
            )
        )

    runs = alternate(b.reps, [("1 worker", with_workers(1)), ("2 workers", with_workers(2))])
    one, two = (seconds(runs[k]) for k in ("1 worker", "2 workers"))
    speedup = paired_ratio(one.samples, two.samples)
    return [
        Row(
            "5",
            f"{n_sessions} sessions × {n_frames:,} frames, --scheduler processes",
            f"2 workers: {two.fmt('s')}",
            f"1 worker: {one.fmt('s')}",
            speedup.fmt("×"),
            TARGETS["5"],
            speedup.median >= 1.8,
            [
                f"{n_sessions * n_frames / two.median:,.0f} frames/s with 2 workers, "
                f"{n_sessions * n_frames / one.median:,.0f} with 1 (wall time of the whole "
                "command: starting the local Dask cluster, the driver's commits and catalog "
                "included)"
            ],
            {"one_s": list(one.samples), "two_s": list(two.samples), "speedup": speedup.median},
        )
    ]


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"5": measure_workers}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {}
