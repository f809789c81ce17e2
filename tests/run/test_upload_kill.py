"""A run killed (SIGKILL) while its uploads to a bucket are in flight leaves nothing that looks
finished: no catalog row, no Zarr group (its root ``zarr.json``) and no shard index in place;
the next run clears what it left and finishes, and the result verifies. The session is staged
on local disk and uploaded by its commit, its group's root ``zarr.json`` last; the uploads
killed are the commit's. Real process, real
signal, moto's S3 server behind ``LatencyProxy`` (so that many uploads are in flight when the
run is killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.lease import LEASE_ENV
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.s3 import S3

PREFIX = "reacture_1795600000577"


def _convert(bundle: Path, url: str, endpoint: str) -> subprocess.Popen[bytes]:
    args = ["convert", str(bundle), "--out", url, "--format", "zarr,wds", "--scheduler", "sync"]
    args += ["--chunk-frames", "8", "--shard-frames", "0"]  # many chunk objects to kill among
    return subprocess.Popen(
        [sys.executable, "-m", "reacture_convert", *args, "--quiet"]
        + ["--storage-option", f"client_kwargs.endpoint_url={endpoint}"],
        env={**os.environ, LEASE_ENV: "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_mid_upload_leaves_nothing_finished_and_the_rerun_completes(
    moto_s3: S3, tmp_path: Path
) -> None:
    bundle = write_bundle(tmp_path / "b", BundleSpec(prefix=PREFIX, seed=577, n_frames=200))
    url = "s3://datasets/killed-mid-upload"
    with LatencyProxy(moto_s3.endpoint, 0.05) as proxy:
        out = Output(url, {"client_kwargs": {"endpoint_url": proxy.url}})
        run = _convert(bundle, url, proxy.url)
        deadline = time.monotonic() + 120
        while True:  # wait until chunks of the group are going out, then kill
            with proxy.traffic.lock:
                chunks = sum(
                    n
                    for (m, p), n in proxy.traffic.requests.items()
                    if m == "PUT" and "/frames/c/" in p
                )
                in_flight = proxy.traffic.active
            if chunks >= 3 and in_flight >= 1:  # between two requests, none is in flight
                break
            assert run.poll() is None, run.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "no chunk was ever uploaded"
            time.sleep(0.005)
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=60)
        time.sleep(0.5)  # requests the proxy still held reach the store (or not)

        out.fs.invalidate_cache()
        assert in_flight >= 1
        assert read_catalog(out) == []
        assert not out.exists(f"zarr/{PREFIX}.zarr/zarr.json")
        assert not out.exists("wds/index.json")

        time.sleep(2.5)  # the killed run's lease expires
        again = _convert(bundle, url, proxy.url)
        _, err = again.communicate(timeout=300)
        assert again.returncode == 0, err.decode()[-3000:]
        out.fs.invalidate_cache()
        assert [e.session for e in read_catalog(out)] == [PREFIX]
        assert verify_dataset(out, sources=True) == (1, [])
        assert out.fs.find(out.path(".staging")) == []
