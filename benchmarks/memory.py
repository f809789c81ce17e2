"""4: peak RSS of ``convert`` against the session's length."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from harness import (
    FRAMES_PER_MINUTE,
    MIN_FREE_FOR_LARGEST,
    TARGETS,
    Bench,
    Row,
    minutes,
)


def measure_rss(b: Bench) -> list[Row]:
    sizes = list(b.sizes.rss)
    notes: list[str] = []
    free = shutil.disk_usage(b.work).free
    if not b.quick and free < MIN_FREE_FOR_LARGEST:
        notes.append(
            f"{minutes(sizes[-1])} skipped: {free / 1e9:.1f} GB free on the work disk "
            f"(< {MIN_FREE_FOR_LARGEST / 1e9:.0f} GB)"
        )
        print("  NOTE: " + notes[-1], flush=True)
        sizes = sizes[:-1]
    rss: dict[int, float] = {}
    secs: dict[int, float] = {}
    for n in sizes:
        src = b.bundle(n, seed=4, group=f"rss-{n}")
        run = b.child(b.convert_cmd(src, b.fresh("m4-out"), "zarr", "--scheduler", "sync"))
        rss[n], secs[n] = run.max_rss_mb, run.seconds
        print(
            f"    {n:,} frames: peak RSS {run.max_rss_mb:,.0f} MB, {run.seconds:.1f} s", flush=True
        )
        if n != b.sizes.session:
            b.drop_bundle(src)
    growth = rss[sizes[-1]] - rss[sizes[0]]
    per_k = 1000 * growth / max(1, sizes[-1] - sizes[0])  # MB per 1,000 frames
    notes.append(
        "one run per size (peak RSS varies by a few MB between runs); convert speed: "
        + ", ".join(f"{n:,} frames {n / secs[n]:,.0f} frames/s" for n in sizes)
    )
    if per_k > 0.01:
        frames_at_300 = sizes[0] + (300 - rss[sizes[0]]) / per_k * 1000
        notes.append(
            f"growth {per_k:.2f} MB per 1,000 frames: at that slope a session "
            f"reaches 300 MB at ~{frames_at_300 / FRAMES_PER_MINUTE / 60:,.1f} h"
        )
    else:
        notes.append("no growth with N")
    largest = sizes[-1] == b.sizes.rss[-1]
    return [
        Row(
            "4",
            "peak RSS of convert --format zarr (sync)",
            ", ".join(
                f"{n // FRAMES_PER_MINUTE if not b.quick else n} "
                f"{'min' if not b.quick else 'fr'}: {rss[n]:,.0f} MB"
                for n in sizes
            ),
            "–",
            f"{growth:+,.0f} MB from shortest to longest ({per_k:+.2f} MB per 1,000 frames)",
            TARGETS["4"],
            rss[sizes[-1]] <= 300 if largest else None,
            notes,
            {
                "frames": sizes,
                "max_rss_mb": [rss[n] for n in sizes],
                "seconds": [secs[n] for n in sizes],
            },
        )
    ]


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"4": measure_rss}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {}
