"""9: converting straight into an object store against converting locally and then uploading.

A local S3-compatible server (moto's server mode, started here) behind
``reacture_convert.testing.proxy.LatencyProxy``, which adds 30 ms to every request (a cloud
bucket's round trip) and counts requests and the bytes sent. For each format, in one child
process and alternating within each repetition: ``convert`` to local disk (the local baseline),
the workaround (that local output uploaded with s3fs, 16 files at once) and ``convert --out
s3://...`` through the proxy (the product). Each run writes a fresh prefix; what it wrote is
deleted (untimed) before the next.

The workaround's upload is timed as the command a user runs after the local convert
(``UPLOAD``: a fresh interpreter that imports s3fs, makes its client and uploads), as the
product is timed as its command, which pays the same imports and client before its first
request. The same upload from this process, with s3fs imported and its connections open
already, is timed too and shown beside it (``upload_warm_s``): the rows before 2026-12-07
night compared against that one.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Bench, Row, Stat, cpu_seconds, du, minutes, paired_ratio, run_child

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers.s3 (moto)

DELAY = 0.030
UPLOADS = 16  # files at once in the workaround
# the workaround's second command: upload the local output (argv: folder, s3 URL, endpoint)
UPLOAD = f"""
import sys
import s3fs
fs = s3fs.S3FileSystem(client_kwargs={{"endpoint_url": sys.argv[3]}}, skip_instance_cache=True)
fs.put(sys.argv[1], sys.argv[2], recursive=True, batch_size={UPLOADS})
"""
# key, label, the format's options. Zarr's default differs by OUT: sharded into a bucket
# (``--shard-frames`` 1024, a few objects in all), unsharded on local disk, so 9a compares the
# defaults both ways; 9c and 9d ask both for the same layout.
# 9e: measurement 5's batch (8 sessions) as 9c, where the bucket's per-session costs add up.
CASES = (
    ("9a", "zarr", ("--format", "zarr")),
    ("9b", "wds", ("--format", "wds")),
    ("9c", "zarr-sharded", ("--format", "zarr", "--shard-frames", "1024")),
    ("9d", "zarr-unsharded", ("--format", "zarr", "--shard-frames", "0")),
    ("9e", "batch-sharded", ("--format", "zarr", "--shard-frames", "1024")),
)
TARGET_WORKAROUND = 1.0
TARGET_LOCAL = 1.2


def measure_upload(b: Bench) -> list[Row]:
    src = b.bundle(b.sizes.session)
    n_sessions, n_frames = b.sizes.batch
    for s in range(n_sessions):
        b.bundle(n_frames, seed=100 + s, group="batch")
    delay = 0.0 if b.quick else DELAY
    runs = [
        b.child(
            b.child_cmd("upload", src, b.work / "batch", b.fresh("m9"), b.cli[0], r, delay)
        ).result()
        for r in range(b.reps)
    ]
    for r, run in enumerate(runs):
        print(
            f"    upload #{r + 1}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in run.items() if k.endswith("_s")),
            flush=True,
        )
    rows = []
    for key, fmt, options in CASES:
        direct = Stat.of(run[f"{fmt}_direct_s"] for run in runs)
        local = Stat.of(run[f"{fmt}_local_s"] for run in runs)
        workaround = [run[f"{fmt}_local_s"] + run[f"{fmt}_upload_s"] for run in runs]
        warm = [run[f"{fmt}_local_s"] + run[f"{fmt}_upload_warm_s"] for run in runs]
        vs_work = paired_ratio(direct.samples, workaround)
        vs_warm = paired_ratio(direct.samples, warm)
        vs_local = paired_ratio(direct.samples, local.samples)
        first = runs[0]
        rows.append(
            Row(
                key,
                f"convert {' '.join(options)} --out s3://..., "
                + (
                    f"{n_sessions} sessions × {minutes(n_frames)}"
                    if fmt.startswith("batch")
                    else minutes(b.sizes.session)
                ),
                direct.fmt("s"),
                f"convert locally + s3fs upload command ({UPLOADS} at once): "
                f"{Stat.of(workaround).fmt('s')}; local convert: {local.fmt('s')}",
                f"{vs_work.fmt('×')} the workaround, {vs_local.fmt('×')} local",
                f"≤ {TARGET_WORKAROUND:.1f}× the workaround, then ≤ {TARGET_LOCAL:.1f}× local",
                vs_work.median <= TARGET_WORKAROUND,
                [
                    f"{fmt}: moto S3 behind a proxy adding {DELAY * 1000:.0f} ms per request; "
                    f"the upload command alone "
                    f"{Stat.of(run[f'{fmt}_upload_s'] for run in runs).fmt('s')}; the same "
                    f"upload from a process with s3fs imported and connected "
                    f"{Stat.of(run[f'{fmt}_upload_warm_s'] for run in runs).fmt('s')}: "
                    f"against that workaround ({Stat.of(warm).fmt('s')}) "
                    f"{vs_warm.fmt('×')}",
                    f"{fmt}: CPU straight to the bucket: the convert "
                    f"{first[f'{fmt}_direct_cpu_s']:.2f} s, the S3 server "
                    f"{first[f'{fmt}_direct_server_cpu_s']:.2f} s (during the upload of the "
                    f"workaround: {first[f'{fmt}_upload_server_cpu_s']:.2f} s); a cloud store "
                    "spends its own",
                    f"{fmt}: straight to the bucket {first[f'{fmt}_direct_requests']:,.0f} "
                    f"requests ({first[f'{fmt}_direct_methods']}), "
                    f"{first[f'{fmt}_direct_sent'] / 1e6:,.1f} MB sent; the upload "
                    f"{first[f'{fmt}_upload_requests']:,.0f} requests, "
                    f"{first[f'{fmt}_upload_sent'] / 1e6:,.1f} MB sent "
                    f"({first[f'{fmt}_files']:,.0f} files, {first[f'{fmt}_mb']:,.1f} MB); "
                    f"most requests in flight at once: {first[f'{fmt}_direct_peak']:,.0f}; "
                    f"peak RSS straight to the bucket "
                    f"{max(run[f'{fmt}_direct_rss_mb'] for run in runs):,.0f} MB (to local disk "
                    f"{max(run[f'{fmt}_local_rss_mb'] for run in runs):,.0f} MB)",
                ],
                {
                    "direct_s": list(direct.samples),
                    "local_s": list(local.samples),
                    "workaround_s": workaround,
                    "workaround_warm_s": warm,
                    "vs_workaround": vs_work.median,
                    "vs_workaround_warm": vs_warm.median,
                    "vs_local": vs_local.median,
                    "runs": [
                        {k: v for k, v in run.items() if k.startswith(f"{fmt}_")} for run in runs
                    ],
                },
            )
        )
    return rows


def _timed(cmd: list[str]) -> tuple[float, float, float]:
    """Seconds, peak RSS (MB) and CPU seconds of ``cmd`` run to completion (it must succeed),
    through the harness's small runner (this process holds a whole upload's bytes at times: a
    child forked from it directly would report that peak as its own)."""
    run = run_child(cmd, flush=False)
    return run.seconds, run.max_rss_mb, run.cpu_s


def child_upload(
    src: str, batch: str, work: str, cli: str, rep: str, delay: str = str(DELAY)
) -> dict[str, Any]:
    """The measurement in a child process: the cases of ``src`` (a bundle), ``batch`` (a folder
    of bundles) for 9e; ``delay``: the proxy's added seconds a request (none in a quick smoke
    run, whose numbers mean nothing)."""
    import s3fs

    from reacture_convert.testing.proxy import LatencyProxy
    from tests.helpers.s3 import moto_server

    result: dict[str, Any] = {}
    Path(work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp, moto_server(Path(tmp)) as s3:
        with LatencyProxy(s3.endpoint, float(delay)) as proxy:
            options = {"client_kwargs": {"endpoint_url": proxy.url}}
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
            endpoint = ["--storage-option", f"client_kwargs.endpoint_url={proxy.url}"]
            for _, fmt, options in CASES:
                source = batch if fmt.startswith("batch") else src
                convert = [cli, "convert", source, *options, "--quiet", "--out"]
                local = Path(tmp) / f"local-{fmt}"
                result[f"{fmt}_local_s"], result[f"{fmt}_local_rss_mb"], _ = _timed(
                    [*convert, str(local)]
                )
                files = [p for p in local.rglob("*") if p.is_file()]
                result[f"{fmt}_files"] = len(files)
                result[f"{fmt}_mb"] = du(local) / 1e6

                proxy.traffic.reset()
                server = cpu_seconds(s3.pid)
                dest = f"datasets/upload-{fmt}-{rep}"
                result[f"{fmt}_upload_s"], _, _ = _timed(
                    [sys.executable, "-c", UPLOAD, str(local), f"s3://{dest}", proxy.url]
                )
                result[f"{fmt}_upload_server_cpu_s"] = cpu_seconds(s3.pid) - server
                result[f"{fmt}_upload_requests"] = sum(proxy.traffic.by_method().values())
                result[f"{fmt}_upload_sent"] = proxy.traffic.sent
                s3.fs.rm(dest, recursive=True)
                t0 = time.perf_counter()
                fs.put(str(local), dest, recursive=True, batch_size=UPLOADS)
                result[f"{fmt}_upload_warm_s"] = time.perf_counter() - t0
                s3.fs.rm(dest, recursive=True)

                proxy.traffic.reset()
                url = f"s3://datasets/direct-{fmt}-{rep}"
                server = cpu_seconds(s3.pid)
                took, rss, cpu = _timed([*convert, url, *endpoint])
                result[f"{fmt}_direct_s"], result[f"{fmt}_direct_rss_mb"] = took, rss
                result[f"{fmt}_direct_cpu_s"] = cpu
                result[f"{fmt}_direct_server_cpu_s"] = cpu_seconds(s3.pid) - server
                methods = proxy.traffic.by_method()
                result[f"{fmt}_direct_requests"] = sum(methods.values())
                result[f"{fmt}_direct_methods"] = ", ".join(
                    f"{n} {m}" for m, n in sorted(methods.items(), key=lambda kv: -kv[1])
                )
                result[f"{fmt}_direct_sent"] = proxy.traffic.sent
                result[f"{fmt}_direct_peak"] = proxy.traffic.peak
                s3.fs.rm(f"datasets/direct-{fmt}-{rep}", recursive=True)
    return result


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {"9": measure_upload}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {"upload": child_upload}
