"""1, 2: ``convert`` of a 10-minute session against copying the same bytes durably."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import (
    TARGETS,
    Bench,
    ChildRun,
    Row,
    alternate,
    du,
    minutes,
    paired_ratio,
    seconds,
)


def measure_convert_zarr(b: Bench) -> list[Row]:
    src = b.bundle(b.sizes.session)

    def product(r: int) -> ChildRun:
        return b.child(b.convert_cmd(src, b.fresh("m1-out"), "zarr", "--scheduler", "sync"))

    def baseline(r: int) -> ChildRun:
        dest = b.fresh("m1-cp")
        return b.child(
            [
                "sh",
                "-c",
                'cp -r "$1" "$2" && sync "$2"/* "$2" "$3"',
                "sh",
                str(src),
                str(dest),
                str(dest.parent),
            ]
        )

    runs = alternate(b.reps, [("convert --format zarr", product), ("cp -r + fsync", baseline)])
    return [
        _vs_row("1", f"convert --format zarr, {minutes(b.sizes.session)}", runs, src, limit=3.0)
    ]


def measure_convert_wds(b: Bench) -> list[Row]:
    src = b.bundle(b.sizes.session)

    def product(r: int) -> ChildRun:
        return b.child(b.convert_cmd(src, b.fresh("m2-out"), "wds", "--scheduler", "sync"))

    def baseline(r: int) -> ChildRun:
        dest = b.fresh("m2.tar")
        return b.child(
            [
                "sh",
                "-c",
                'tar cf "$1" -C "$2" "$3" && sync "$1" "$4"',
                "sh",
                str(dest),
                str(src.parent),
                src.name,
                str(dest.parent),
            ]
        )

    runs = alternate(b.reps, [("convert --format wds", product), ("tar cf + fsync", baseline)])
    return [_vs_row("2", f"convert --format wds, {minutes(b.sizes.session)}", runs, src, limit=1.5)]


def _vs_row(key: str, name: str, runs: dict[str, list[ChildRun]], src: Path, limit: float) -> Row:
    (pname, prod), (bname, base) = runs.items()
    ratio = paired_ratio([r.seconds for r in prod], [r.seconds for r in base])
    mb = du(src) / 1e6
    return Row(
        key,
        name,
        seconds(prod).fmt("s"),
        f"{bname}: {seconds(base).fmt('s')}",
        ratio.fmt("×"),
        TARGETS[key],
        ratio.median <= limit,
        notes=[
            f"bundle {mb:,.0f} MB: product {mb / seconds(prod).median:,.0f} MB/s, "
            f"baseline {mb / seconds(base).median:,.0f} MB/s; product peak RSS "
            f"{max(r.max_rss_mb for r in prod):,.0f} MB, CPU "
            f"{sum(r.cpu_s for r in prod) / sum(r.seconds for r in prod):.2f}× its wall time "
            "(cores kept busy, interpreter start and imports included)"
        ],
        data={
            "bundle_mb": mb,
            "product_s": [r.seconds for r in prod],
            "baseline_s": [r.seconds for r in base],
            "product_rss_mb": [r.max_rss_mb for r in prod],
            "product_cpu_s": [r.cpu_s for r in prod],
            "ratio": ratio.median,
        },
    )


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {
    "1": measure_convert_zarr,
    "2": measure_convert_wds,
}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {}
