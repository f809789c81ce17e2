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
    formats = ("zarr", "wds")

    def label(n: int) -> str:
        return f"{n // FRAMES_PER_MINUTE} min" if not b.quick else f"{n} fr"

    rss: dict[tuple[str, int], float] = {}
    secs: dict[tuple[str, int], float] = {}
    for n in sizes:
        src = b.bundle(n, seed=4, group=f"rss-{n}")
        for fmt in formats:
            cmd = b.convert_cmd(src, b.fresh("m4-out"), fmt, "--scheduler", "sync")
            run = b.child(cmd)
            rss[fmt, n], secs[fmt, n] = run.max_rss_mb, run.seconds
            print(
                f"    {n:,} frames, {fmt}: peak RSS {run.max_rss_mb:,.0f} MB, {run.seconds:.1f} s",
                flush=True,
            )
        if n != b.sizes.session:
            b.drop_bundle(src)
    # growth is judged between the two longest sessions: the shortest ends before the
    # buffers of a session's read (frame blocks, rows, samples ahead) have all filled once
    first, last = sizes[-2] if len(sizes) > 2 else sizes[0], sizes[-1]
    notes.append(
        "one run per size and format (peak RSS varies by tens of MB between runs: how far "
        "the frames' and the rows' threads run ahead of each other); convert speed: "
        + "; ".join(
            f"{fmt} " + ", ".join(f"{n:,} frames {n / secs[fmt, n]:,.0f}/s" for n in sizes)
            for fmt in formats
        )
    )
    growth = {fmt: rss[fmt, last] - rss[fmt, first] for fmt in formats}
    for fmt in formats:
        per_k = 1000 * growth[fmt] / max(1, last - first)  # MB per 1,000 frames
        if per_k > 0.01:
            frames_at_300 = first + (300 - rss[fmt, first]) / per_k * 1000
            notes.append(
                f"{fmt}: growth {per_k:.2f} MB per 1,000 frames from {label(first)} to "
                f"{label(last)}: at "
                f"that slope a session reaches 300 MB at ~"
                f"{frames_at_300 / FRAMES_PER_MINUTE / 60:,.1f} h"
            )
        else:
            notes.append(f"{fmt}: no growth with N")
    largest = last == b.sizes.rss[-1]

    return [
        Row(
            "4",
            "peak RSS of convert --format zarr, wds (sync)",
            "; ".join(
                f"{fmt}: " + ", ".join(f"{label(n)} {rss[fmt, n]:,.0f}" for n in sizes) + " MB"
                for fmt in formats
            ),
            "–",
            ", ".join(f"{fmt} {growth[fmt]:+,.0f} MB" for fmt in formats)
            + f" from {label(first)} to {label(last)}",
            TARGETS["4"],
            max(rss[fmt, last] for fmt in formats) <= 300 if largest else None,
            notes,
            {
                "frames": sizes,
                **{f"{fmt}_max_rss_mb": [rss[fmt, n] for n in sizes] for fmt in formats},
                **{f"{fmt}_seconds": [secs[fmt, n] for n in sizes] for fmt in formats},
            },
        )
    ]


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"4": measure_rss}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {}
