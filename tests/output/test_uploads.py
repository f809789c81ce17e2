"""Writes to an object store overlap (``output.uploads``), over real HTTP to moto's S3 server
through ``LatencyProxy``: many requests in flight at once, large files as multipart uploads whose
parts go out while the file is written, the same bytes and digests as a local write, and a
failure raised by a later write or by ``settle`` (never lost), nothing left of an aborted file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reacture_convert.errors import AccessDeniedError
from reacture_convert.output import uploads
from reacture_convert.output.storage import Output
from reacture_convert.testing.proxy import LatencyProxy
from tests.helpers.s3 import S3

DELAY = 0.2  # seconds added to every request: long next to moto's own time


@pytest.fixture
def slow(moto_s3: S3) -> Iterator[tuple[LatencyProxy, Output]]:
    with LatencyProxy(moto_s3.endpoint, DELAY) as proxy:
        out = Output(
            f"s3://datasets/uploads-{os.urandom(4).hex()}",
            {"client_kwargs": {"endpoint_url": proxy.url}},
        )
        yield proxy, out


def test_objects_put_overlap_and_are_settled(slow: tuple[LatencyProxy, Output]) -> None:
    """40 objects put one after the other go out together, not one round trip each: the proxy
    holds many of their requests at once (counted there, not timed: the machine is shared)."""
    proxy, out = slow
    keys = out.keys(out.path("g.zarr"))
    blobs = {f"c/{i}": os.urandom(1000 + i) for i in range(40)}
    proxy.traffic.reset()
    for key, data in blobs.items():
        keys.put(key, data)
    uploads.settle(keys.root)

    assert proxy.traffic.peak >= 8  # one at a time: 1; the budget allows 32
    assert keys.digests() == {k: (len(d), hashlib.sha256(d).hexdigest()) for k, d in blobs.items()}
    stored = out.fs.cat([f"{keys.root}/{key}" for key in blobs])  # (fetched together)
    assert {p.split("/g.zarr/", 1)[1]: d for p, d in stored.items()} == blobs


def test_a_large_file_is_a_multipart_upload_with_parts_in_flight_together(
    slow: tuple[LatencyProxy, Output],
) -> None:
    """A file written forward in pieces goes out in parts while it is written; the object
    holds exactly the bytes written."""
    proxy, out = slow
    pieces = [os.urandom(1 << 20) for _ in range(3 * uploads.PART_BYTES // (1 << 20) + 1)]
    path = out.path("wds/big.tar")
    proxy.traffic.reset()
    new = out.create(path)
    for piece in pieces:
        new.write_pieces([memoryview(piece)])
    new.close()
    out.fsync(path)  # an object store's: waits for the upload

    methods = proxy.traffic.by_method()
    assert methods.get("POST") == 2  # created, completed
    assert methods.get("PUT") == 4  # three full parts and the rest
    assert proxy.traffic.peak > 1
    assert out.fs.cat_file(path) == b"".join(pieces)


def test_a_small_file_is_one_put(slow: tuple[LatencyProxy, Output]) -> None:
    proxy, out = slow
    path = out.path("rows/one.parquet")
    proxy.traffic.reset()
    new = out.create(path)
    new.write_pieces([memoryview(b"x" * 1000)])
    new.close()
    out.fsync(path)
    assert proxy.traffic.by_method() == {"PUT": 1}
    assert out.fs.cat_file(path) == b"x" * 1000


def test_an_aborted_file_leaves_no_object(slow: tuple[LatencyProxy, Output]) -> None:
    _, out = slow
    path = out.path("wds/dropped.tar")
    new = out.create(path)
    new.write_pieces([memoryview(os.urandom(uploads.PART_BYTES + 1))])
    new.abort()
    uploads.settle(path)
    assert not out.fs.exists(path)
    bucket, key, _ = out.fs.split_path(path)
    listed = out.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key)
    assert listed.get("Uploads", []) == []


def test_a_refused_write_is_raised_by_a_later_put_or_by_settle(moto_s3: S3) -> None:
    """A PUT the store refuses mid-way: the next puts of that store or its settle raise it,
    naming the object; ``Output.fault`` makes it the run's storage fault (exit 3)."""

    def refused(method: str, path: str) -> bool:
        return method == "PUT" and path.endswith("/c/3")

    with LatencyProxy(moto_s3.endpoint, 0.05, refuse=refused) as proxy:
        out = Output("s3://datasets/refused", {"client_kwargs": {"endpoint_url": proxy.url}})
        keys = out.keys(out.path(".staging/run/s/g.zarr"))
        with pytest.raises(PermissionError) as raised:
            for i in range(40):
                keys.put(f"c/{i}", b"data")
                time.sleep(0.01)
            uploads.settle(keys.root)
        fault = out.fault(raised.value)
        assert isinstance(fault, AccessDeniedError)
        assert "c/3" in str(fault) and "permission denied" in str(fault)
        with pytest.raises(PermissionError):  # still said, until the folder is given up
            out.sync_staged("run/s", [])
        out.clear_staging("run/s")
        uploads.settle(keys.root)  # given up: nothing left to say
        assert out.fs.find(out.path(".staging")) == []


def test_the_budget_bounds_bytes_in_flight() -> None:
    """``take`` waits while the bytes in flight would pass the limit (one request of any size
    gets through alone)."""
    import threading

    budget = uploads._Budget(100, 8)
    budget.take(80)
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (budget.take(50), got.set()))
    waiter.start()
    assert not got.wait(0.2)
    budget.give(80)
    assert got.wait(5)
    waiter.join()
    budget.give(50)
    budget.take(500)  # larger than the limit: goes alone
    assert (budget.bytes, budget.requests) == (500, 1)


def test_convert_into_the_bucket_gives_a_local_converts_digests(
    moto_s3: S3, tmp_path: Path
) -> None:
    """A bundle converted straight into the bucket (through the latency proxy, uploads
    overlapping) has the same files with the same sha256 as converted to local disk."""
    from click.testing import CliRunner

    from reacture_convert.cli import cli
    from reacture_convert.output.catalog import read_catalog
    from reacture_convert.testing.synth import BundleSpec, write_bundle

    bundle = write_bundle(
        tmp_path / "in" / "b", BundleSpec(prefix="reacture_1795600000301", seed=301, n_frames=300)
    )
    local = Output(str(tmp_path / "local"))
    with LatencyProxy(moto_s3.endpoint, 0.05) as proxy:
        remote = Output("s3://datasets/digests", {"client_kwargs": {"endpoint_url": proxy.url}})
        for out, extra in (
            (local, []),
            (remote, ["--storage-option", f"client_kwargs.endpoint_url={proxy.url}"]),
        ):
            result = CliRunner().invoke(
                cli,
                ["convert", str(bundle), "--out", out.url, "--format", "zarr,wds", "--quiet"]
                + ["--chunk-frames", "8", "--shard-frames", "0", *extra],  # many objects
                catch_exceptions=False,
            )
            assert result.exit_code == 0, result.output
        assert proxy.traffic.peak > 1

        def files(out: Output) -> list[tuple[str, int, str]]:
            (entry,) = read_catalog(out)
            return sorted((f.path, f.bytes, f.sha256) for f in entry.files)

        assert files(remote) == files(local)
        assert len(files(local)) > 30
        for path, _, sha in files(remote):
            assert hashlib.sha256(remote.fs.cat_file(remote.path(path))).hexdigest() == sha
        assert remote.fs.find(remote.path(".staging")) == []


def test_a_session_staged_on_local_disk_is_uploaded_once_its_root_last(
    moto_s3: S3, tmp_path: Path
) -> None:
    """Sessions converted on this machine into S3 are staged on its disk: no request touches
    the bucket's staging (nothing is uploaded twice or copied), and the commit uploads the
    group's root ``zarr.json`` after every other object of the session (a reader sees no group
    before it is complete)."""
    from click.testing import CliRunner

    from reacture_convert.cli import cli
    from reacture_convert.testing.synth import BundleSpec, write_bundle

    prefix = "reacture_1795600000302"
    bundle = write_bundle(tmp_path / "b", BundleSpec(prefix=prefix, seed=302, n_frames=100))
    with LatencyProxy(moto_s3.endpoint) as proxy:
        result = CliRunner().invoke(
            cli,
            ["convert", str(bundle), "--out", "s3://datasets/staged-here", "--format", "zarr"]
            + ["--quiet", "--chunk-frames", "8", "--shard-frames", "0", "--storage-option"]
            + [f"client_kwargs.endpoint_url={proxy.url}"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        log = list(proxy.traffic.log)
    assert not [p for _, _, p, _ in log if "/.staging/" in p or "staging%2F" in p]
    puts = [p for _, m, p, _ in log if m == "PUT" and f"/{prefix}" in p]
    root = f"/datasets/staged-here/zarr/{prefix}.zarr/zarr.json"
    assert len(puts) > 15 and puts.count(root) == 1
    assert puts[-1] == root


def test_a_large_staged_file_goes_up_as_a_multipart_upload_a_part_at_a_time(
    moto_s3: S3, tmp_path: Path
) -> None:
    """A staged object larger than a part (frames that do not compress: a 14.7 MB shard of
    the sharded Zarr) is uploaded by the commit as a multipart upload, and arrives whole."""
    import numpy as np
    from click.testing import CliRunner

    from reacture_convert.cli import cli
    from reacture_convert.output.catalog import read_catalog
    from reacture_convert.read.verify import verify_dataset
    from reacture_convert.testing.synth import BundleSpec, write_bundle

    prefix = "reacture_1795600000303"
    bundle = write_bundle(tmp_path / "b", BundleSpec(prefix=prefix, seed=303, n_frames=300))
    frames = bundle / f"{prefix}_frames.npy"
    data = 300 * 128 * 128 * 3
    with open(frames, "r+b") as f:  # the pixels after the game's header, made noise
        f.seek(frames.stat().st_size - data)
        f.write(np.random.default_rng(303).integers(0, 256, data, dtype=np.uint8).tobytes())
    url = "s3://datasets/large-staged"
    with LatencyProxy(moto_s3.endpoint) as proxy:
        options = {"client_kwargs": {"endpoint_url": proxy.url}}
        result = CliRunner().invoke(
            cli,
            ["convert", str(bundle), "--out", url, "--format", "zarr", "--quiet"]
            + ["--storage-option", f"client_kwargs.endpoint_url={proxy.url}"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        shard = f"/datasets/large-staged/zarr/{prefix}.zarr/frames/c/0/0/0/0"
        assert ("POST", shard) in proxy.traffic.requests  # a multipart upload's start and end
        out = Output(url, options)
        (entry,) = read_catalog(out)
        sizes = {f.path: f.bytes for f in entry.files}
        assert sizes[f"zarr/{prefix}.zarr/frames/c/0/0/0/0"] > uploads.PART_BYTES
        for f in entry.files:
            assert hashlib.sha256(out.fs.cat_file(out.path(f.path))).hexdigest() == f.sha256
        assert verify_dataset(out, sources=False) == (1, [])
