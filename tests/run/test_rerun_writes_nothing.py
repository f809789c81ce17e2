"""A re-run that changes nothing writes nothing: no file under OUT is replaced, touched or
added (the dataset card, the catalog, the shards and their index included), so sync tools and
object stores see no new object. Locally every file's and folder's (size, mtime_ns, inode) is
compared; on the S3 server every object's size, ETag and LastModified. What a run holds while it
runs (its lock's lease, staging) is gone afterwards.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.s3 import S3

SPECS = [
    BundleSpec(prefix="reacture_1795600000081", seed=81, n_frames=12),
    BundleSpec(prefix="reacture_1795600000082", seed=82, n_frames=9),
]
FORMATS = ["zarr", "wds", "zarr,wds"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rerun-inputs")
    for spec in SPECS:
        write_bundle(root / spec.prefix, spec)
    return root


def convert(bundles: Path, out: str, formats: str, *options: str) -> dict[str, Any]:
    args = ["convert", str(bundles), "--out", out, "--format", formats, "--shard-size", "300KB"]
    result = CliRunner().invoke(cli, [*args, "--scheduler", "sync", "--json", *options])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def local_state(out: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime_ns, inode) of every file and folder under ``out``."""
    state = {}
    for folder, dirs, files in os.walk(out):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            rel = os.path.relpath(os.path.join(folder, name), out)
            state[rel] = (st.st_size if name in files else 0, st.st_mtime_ns, st.st_ino)
    return state


@pytest.mark.parametrize("formats", FORMATS)
def test_a_local_rerun_of_unchanged_sessions_writes_nothing(
    bundles: Path, tmp_path: Path, formats: str
) -> None:
    out = tmp_path / "out"
    first = convert(bundles, str(out), formats)
    assert first["counts"] == {"converted": 2}
    before = local_state(out)
    time.sleep(0.02)  # a rewrite would show in mtime_ns even on a coarse clock
    again = convert(bundles, str(out), formats)
    assert again["counts"] == {"skipped": 2}
    assert local_state(out) == before
    assert {"README.md", "catalog.parquet"} <= set(before)
    assert ("wds/index.json" in before) == ("wds" in formats)


@pytest.mark.parametrize("formats", FORMATS)
def test_a_rerun_on_the_bucket_writes_no_object(moto_s3: S3, bundles: Path, formats: str) -> None:
    prefix = f"datasets/rerun-{formats.replace(',', '-')}"
    options = moto_s3.cli_options

    def objects() -> dict[str, tuple[Any, ...]]:
        moto_s3.fs.invalidate_cache()
        found = moto_s3.fs.find(prefix, detail=True)
        return {k: (v["size"], v["ETag"], v["LastModified"]) for k, v in found.items()}

    assert convert(bundles, f"s3://{prefix}", formats, *options)["counts"] == {"converted": 2}
    before = objects()
    time.sleep(1.1)  # LastModified has whole seconds
    again = convert(bundles, f"s3://{prefix}", formats, *options)
    assert again["counts"] == {"skipped": 2}
    assert objects() == before
    assert f"{prefix}/README.md" in before and not any("/.lock" in k for k in before)


def test_a_rerun_that_changes_something_still_writes_it(bundles: Path, tmp_path: Path) -> None:
    """The other side: a new session changes the catalog, the card, the shards."""
    out = tmp_path / "out"
    assert convert(bundles / SPECS[0].prefix, str(out), "zarr,wds")["counts"] == {"converted": 1}
    before = local_state(out)
    again = convert(bundles, str(out), "zarr,wds")
    assert again["counts"] == {"converted": 1, "skipped": 1}
    after = local_state(out)
    for rel in ("README.md", "catalog.parquet", "wds/index.json", "wds/README.md"):
        assert after[rel] != before[rel], rel


def test_a_rerun_on_the_bucket_of_a_session_larger_than_one_upload_part(
    moto_s3: S3, tmp_path: Path
) -> None:
    """The re-run writes a skipped session's samples again for the shard merge to compare: a
    sample tar of more than one part is a multipart upload, which the merge must wait for
    (it once looked before the upload was complete, found no such object and stopped with
    exit 3)."""
    spec = BundleSpec(prefix="reacture_1795600000083", seed=83, n_frames=200)  # ~10 MB tar
    bundle = write_bundle(tmp_path / spec.prefix, spec)
    out = "s3://datasets/rerun-multipart"
    with LatencyProxy(moto_s3.endpoint, 0.03) as proxy:  # (the parts take a while to go up)
        endpoint = ("--storage-option", f"client_kwargs.endpoint_url={proxy.url}")
        options = (*endpoint, "--shard-size", "256MB")  # one shard: the session's whole tar
        assert convert(bundle, out, "wds", *options)["counts"] == {"converted": 1}
        assert convert(bundle, out, "wds", *options)["counts"] == {"skipped": 1}


def test_a_local_rerun_with_compressed_shards_writes_nothing(bundles: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    gzip = ("--shard-compression", "gzip", "--frame-encoding", "webp")
    assert convert(bundles, str(out), "zarr,wds", *gzip)["counts"] == {"converted": 2}
    before = local_state(out)
    assert any(name.endswith(".tar.gz") for name in before)
    time.sleep(0.02)
    assert convert(bundles, str(out), "zarr,wds", *gzip)["counts"] == {"skipped": 2}
    assert local_state(out) == before
