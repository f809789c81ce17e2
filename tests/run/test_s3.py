"""Object stores: bundles read from a bucket, datasets written to one, over real HTTP.

``moto_s3`` (conftest.py) starts moto's S3-compatible server as a separate process on
127.0.0.1; everything reaches it the way a user's code reaches S3: s3fs (botocore over HTTP),
the CLI with ``--storage-option client_kwargs.endpoint_url=...``, zarr's FsspecStore, pyarrow
through s3fs and webdataset through presigned HTTP URLs (curl). The converted dataset must
equal the one a local conversion of the same bundles gives. One writer per bucket OUT: a lease
made of conditional writes refuses (or queues) a second run or watcher, and a run that lost its
lease stops before it changes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import zarr
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.lease import LEASE_ENV, Lease, PreconditionFailed, put_object
from reacture_convert.output.storage import Output
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.zarr import BUCKET_SHARD_FRAMES
from tests.helpers.paths import SAMPLE_DIR
from tests.helpers.s3 import S3
from tests.helpers.sources import read_source

SAMPLE = SAMPLE_DIR.name
SYNTH = BundleSpec(prefix="reacture_1795600000044", seed=44, n_frames=40)
SESSIONS = sorted([SAMPLE, SYNTH.prefix])
OUT = "s3://datasets/reacture/v1"
VOLATILE = ("converted_at", "run_id")


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local inputs: a copy of the real sample folder and a .zip of a synthetic bundle."""
    root = tmp_path_factory.mktemp("s3-inputs") / "incoming"
    (root / SAMPLE).mkdir(parents=True)
    for f in SAMPLE_DIR.iterdir():
        (root / SAMPLE / f.name).write_bytes(f.read_bytes())
    synth = write_bundle(root.parent / "synth" / "session44", SYNTH)
    with zipfile.ZipFile(root / "upload-44.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(synth.iterdir()):
            zf.write(f, f"session44/{f.name}")
    return root


@pytest.fixture(scope="module")
def local_dataset(bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundles converted to local disk with the Zarr layout a bucket OUT takes by default
    (sharded, ``BUCKET_SHARD_FRAMES``; local disk's default is unsharded)."""
    out = tmp_path_factory.mktemp("s3-local") / "ds"
    code, text = run_cli(
        "convert",
        str(bundles),
        "--out",
        str(out),
        "--format",
        "zarr,wds",
        "--shard-frames",
        str(BUCKET_SHARD_FRAMES),
        "--scheduler",
        "sync",
        "--json",
    )
    assert code == 0, text
    return out


@pytest.fixture(scope="module")
def s3_dataset(moto_s3: S3, bundles: Path) -> dict[str, Any]:
    """The same bundles uploaded to s3://raw/incoming/ and converted into OUT on the bucket,
    with the default scheduler (two bundles: local Dask worker processes)."""
    moto_s3.fs.put(str(bundles) + "/", "raw/incoming/", recursive=True)
    code, text = run_cli(
        "convert",
        "s3://raw/incoming/",
        "--out",
        OUT,
        "--format",
        "zarr,wds",
        "--workers",
        "2",
        "--json",
        *moto_s3.cli_options,
    )
    assert code == 0, text
    summary: dict[str, Any] = json.loads(text)
    moto_s3.fs.invalidate_cache()
    return summary


def s3_files(moto_s3: S3, prefix: str) -> dict[str, bytes]:
    moto_s3.fs.invalidate_cache()
    root = OUT.removeprefix("s3://")
    return {
        p[len(root) + 1 :]: moto_s3.fs.cat_file(p)
        for p in sorted(moto_s3.fs.find(f"{root}/{prefix}"))
    }


def test_inputs_are_read_from_the_bucket(s3_dataset: dict[str, Any]) -> None:
    assert s3_dataset["counts"] == {"converted": 2}
    assert s3_dataset["out"] == OUT
    sources = sorted(s["source"] for s in s3_dataset["sessions"])
    assert sources == [
        "s3://raw/incoming/reacture_1795637238001",
        "s3://raw/incoming/upload-44.zip!session44",
    ]
    assert s3_dataset["wds"]["index"] == f"{OUT}/wds/index.json"


def test_zarr_groups_read_back_with_zarr(
    moto_s3: S3, s3_dataset: dict[str, Any], local_dataset: Path
) -> None:
    for session in SESSIONS:
        remote = zarr.open_group(
            f"{OUT}/zarr/{session}.zarr", mode="r", storage_options=moto_s3.options
        )
        local = zarr.open_group(str(local_dataset / "zarr" / f"{session}.zarr"), mode="r")
        for name in ("frames", "timestamps"):
            assert remote[name].metadata == local[name].metadata
            np.testing.assert_array_equal(remote[name][:], local[name][:])
        assert remote["frames"].shards is not None  # a bucket's default: sharded
        r_attrs, l_attrs = dict(remote.attrs), dict(local.attrs)
        r_src, l_src = r_attrs["provenance"].pop("source"), l_attrs["provenance"].pop("source")
        assert r_attrs == l_attrs  # same metadata, hashes, orientation...
        assert r_src.startswith("s3://raw/incoming/") and not l_src.startswith("s3://")


@pytest.mark.parametrize(
    ("out", "asked", "sharded"),
    [
        ("s3://datasets/layout/auto", [], True),
        ("s3://datasets/layout/none", ["--shard-frames", "0"], False),
        ("local", [], False),
        ("local", ["--shard-frames", "64"], True),
    ],
    ids=["bucket-default", "bucket-zero", "local-default", "local-asked"],
)
def test_zarr_is_sharded_by_default_on_a_bucket_only(
    moto_s3: S3, bundles: Path, tmp_path: Path, out: str, asked: list[str], sharded: bool
) -> None:
    where = str(tmp_path / "ds") if out == "local" else out
    source = str(bundles / SAMPLE)
    code, text = run_cli("convert", source, "--out", where, *asked, *moto_s3.cli_options)
    assert code == 0, text
    storage = moto_s3.options if where.startswith("s3://") else None
    group = zarr.open_group(f"{where}/zarr/{SAMPLE}.zarr", mode="r", storage_options=storage)
    frames = group["frames"]
    assert (frames.shards is not None) is sharded
    assert np.array_equal(frames[:], read_source(SAMPLE_DIR).frames)


def test_parquet_reads_back_with_pyarrow(
    moto_s3: S3, s3_dataset: dict[str, Any], local_dataset: Path
) -> None:
    root = OUT.removeprefix("s3://")
    for session in SESSIONS:
        for table in ("rows", "frames"):
            remote = pq.read_table(f"{root}/{table}/{session}.parquet", filesystem=moto_s3.fs)
            local = pq.read_table(local_dataset / table / f"{session}.parquet")
            assert remote.equals(local)
            assert (
                moto_s3.fs.cat_file(f"{root}/{table}/{session}.parquet")
                == (local_dataset / table / f"{session}.parquet").read_bytes()
            )
    catalog = pq.read_table(f"{root}/catalog.parquet", filesystem=moto_s3.fs)
    want = pq.read_table(local_dataset / "catalog.parquet")
    drop = [*VOLATILE, "source", "files"]
    assert catalog.drop_columns(drop).to_pylist() == want.drop_columns(drop).to_pylist()
    # the digests, taken as the objects were put (no read back): those of the bytes stored,
    # the same as on a local disk but for each group's zarr.json (its attributes name the source)
    for remote_files, local_files in zip(
        catalog["files"].to_pylist(), want["files"].to_pylist(), strict=True
    ):
        for got, local_file in zip(remote_files, local_files, strict=True):
            data = moto_s3.fs.cat_file(f"{root}/{got['path']}")
            assert (len(data), hashlib.sha256(data).hexdigest()) == (got["bytes"], got["sha256"])
            if not got["path"].endswith(".zarr/zarr.json"):
                assert got == local_file


def test_shards_read_back_with_webdataset_over_http(
    moto_s3: S3, s3_dataset: dict[str, Any], local_dataset: Path
) -> None:
    files = s3_files(moto_s3, "wds")
    local = {
        p.relative_to(local_dataset).as_posix(): p.read_bytes()
        for p in sorted((local_dataset / "wds").iterdir())
    }
    assert files == local  # same shard names, same bytes, same index
    index = json.loads(files["wds/index.json"])
    # a private bucket over plain HTTP: presigned URLs, as a training job would get them
    root = OUT.removeprefix("s3://")
    urls = [moto_s3.fs.url(f"{root}/wds/{s['url']}", expires=600) for s in index["shards"]]
    assert all(u.startswith(f"{moto_s3.endpoint}/{root}/wds/") for u in urls)
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(samples) == index["total_samples"] == 92 + SYNTH.n_frames
    first = SESSIONS[0]
    assert [s["__key__"] for s in samples[:2]] == [f"{first}/000000", f"{first}/000001"]
    group = zarr.open_group(str(local_dataset / "zarr" / f"{SYNTH.prefix}.zarr"), mode="r")
    frames = group["frames"]
    mine = [s for s in samples if s["json"]["session"] == SYNTH.prefix]
    assert [s["json"]["frame_index"] for s in mine] == list(range(SYNTH.n_frames))
    np.testing.assert_array_equal(np.stack([s["npy"] for s in mine]), frames[:])


def test_verify_passes_and_no_staging_is_left(moto_s3: S3, s3_dataset: dict[str, Any]) -> None:
    code, text = run_cli("verify", OUT, "--json", *moto_s3.cli_options)
    assert code == 0, text
    doc = json.loads(text)
    samples = s3_dataset["wds"]["samples"]
    assert doc == {
        "ok": True,
        "sessions_checked": 2,
        "shards_checked": {"shards": s3_dataset["wds"]["shards"], "samples": samples},
        "problems": [],
    }
    moto_s3.fs.invalidate_cache()
    root = OUT.removeprefix("s3://")
    assert moto_s3.fs.find(f"{root}/.staging") == []
    top = {p.rsplit("/", 1)[-1] for p in moto_s3.fs.ls(root)}
    assert top == {"catalog.parquet", "README.md", "zarr", "rows", "frames", "wds"}


def test_a_rerun_skips_everything_and_changes_no_output(
    moto_s3: S3, s3_dataset: dict[str, Any]
) -> None:
    before = {k: v for k, v in s3_files(moto_s3, "").items() if k != "catalog.parquet"}
    code, text = run_cli(
        "convert",
        "s3://raw/incoming/",
        "--out",
        OUT,
        "--format",
        "zarr,wds",
        "--scheduler",
        "threads",
        "--workers",
        "2",
        "--json",
        *moto_s3.cli_options,
    )
    assert code == 0, text
    assert json.loads(text)["counts"] == {"skipped": 2}
    after = {k: v for k, v in s3_files(moto_s3, "").items() if k != "catalog.parquet"}
    assert after == before


def test_force_replaces_a_changed_session_on_the_bucket(
    moto_s3: S3, s3_dataset: dict[str, Any], tmp_path: Path
) -> None:
    """A changed upload with --force: the new group replaces the old one object for object
    (no chunk of the longer old session is left behind), and the dataset still verifies."""
    changed = BundleSpec(prefix=SYNTH.prefix, seed=45, n_frames=24)
    folder = write_bundle(tmp_path / "src" / "session44", changed)
    local_in = tmp_path / "incoming"
    local_in.mkdir()
    with zipfile.ZipFile(local_in / "upload-44.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"session44/{f.name}")
    moto_s3.fs.put(str(local_in / "upload-44.zip"), "raw/incoming/upload-44.zip")
    code, text = run_cli(
        "convert",
        "s3://raw/incoming/",
        "--out",
        OUT,
        "--format",
        "zarr,wds",
        "--scheduler",
        "threads",
        "--workers",
        "2",
        "--force",
        "--json",
        *moto_s3.cli_options,
    )
    assert code == 0, text
    assert json.loads(text)["counts"] == {"converted": 1, "skipped": 1}
    code, text = run_cli("verify", OUT, "--sources", *moto_s3.cli_options)
    assert code == 0, text

    local_out = tmp_path / "local"
    code, text = run_cli(
        "convert",
        str(local_in),
        "--out",
        str(local_out),
        "--format",
        "zarr",
        "--shard-frames",  # the bucket's default layout
        str(BUCKET_SHARD_FRAMES),
        "--scheduler",
        "sync",
        "--json",
    )
    assert code == 0, text
    group = f"zarr/{SYNTH.prefix}.zarr"
    remote = s3_files(moto_s3, group)
    local = {
        p.relative_to(local_out).as_posix(): p.read_bytes()
        for p in sorted((local_out / group).rglob("*"))
        if p.is_file()
    }
    assert sorted(remote) == sorted(local)
    assert {k: v for k, v in remote.items() if k != f"{group}/zarr.json"} == {
        k: v for k, v in local.items() if k != f"{group}/zarr.json"
    }
    assert zarr.open_group(f"{OUT}/{group}", mode="r", storage_options=moto_s3.options)[
        "frames"
    ].shape == (24, 128, 128, 3)


def test_a_dask_cluster_reads_and_writes_the_bucket(
    moto_s3: S3, s3_dataset: dict[str, Any], dask_cluster: str
) -> None:
    """The standing cluster's workers have no AWS environment: the credentials travel with the
    storage options, and their outputs equal the local workers' object for object."""
    out = "s3://datasets/reacture/v1-cluster"
    creds = ["--storage-option", "key=testing", "--storage-option", "secret=testing"]
    code, text = run_cli(
        "convert",
        "s3://raw/incoming/",
        "--out",
        out,
        "--format",
        "zarr,wds",
        "--scheduler",
        dask_cluster,
        "--json",
        *moto_s3.cli_options,
        *creds,
    )
    assert code == 0, text
    assert json.loads(text)["counts"] == {"converted": 2}
    code, text = run_cli("verify", out, *moto_s3.cli_options, *creds)
    assert code == 0, text
    moto_s3.fs.invalidate_cache()
    got = {p.removeprefix(out[5:]): moto_s3.fs.cat_file(p) for p in moto_s3.fs.find(out[5:])}
    want = s3_files(moto_s3, "")
    assert sorted(got) == sorted("/" + k for k in want)
    assert [k for k in want if k != "catalog.parquet" and got["/" + k] != want[k]] == []


# --- one writer per bucket OUT: a lease made of conditional writes ----------------------------

CLI = [sys.executable, "-m", "reacture_convert"]


def start_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def test_the_store_honours_conditional_writes(moto_s3: S3) -> None:
    """What the lease and the catalog's log rely on: moto (5.2) honours If-None-Match: * and
    If-Match on PutObject, as S3 does."""
    out = Output("s3://datasets/conditional", moto_s3.options)
    etag = put_object(out, "x", b"1", create=True)
    with pytest.raises(PreconditionFailed):
        put_object(out, "x", b"2", create=True)
    with pytest.raises(PreconditionFailed):
        put_object(out, "x", b"2", etag='"00000000000000000000000000000000"')
    assert put_object(out, "x", b"3", etag=etag) != etag
    assert moto_s3.fs.cat_file("datasets/conditional/x") == b"3"


@pytest.mark.parametrize("wait", [False, True], ids=["refused", "waits"])
def test_a_second_writer_on_a_bucket_output_is_refused_or_waits(
    moto_s3: S3, bundles: Path, wait: bool
) -> None:
    url = f"s3://datasets/one-writer-{'wait' if wait else 'refuse'}"
    held = Lease(Output(url, moto_s3.options))  # another run, holding OUT
    held.acquire()
    args = ["convert", str(bundles), "--out", url, "--scheduler", "sync", "--json"]
    second = start_cli([*args, *(["--wait"] if wait else []), *moto_s3.cli_options])
    try:
        if not wait:
            _, err = second.communicate(timeout=120)
            assert second.returncode == 3, err
            assert b"another reacture-convert run is writing to this output" in err
            assert b"--wait" in err
        else:
            time.sleep(3)  # polling the lease, touching nothing
            assert second.poll() is None
        moto_s3.fs.invalidate_cache()
        assert moto_s3.fs.find(url[5:]) == [f"{url[5:]}/.lock"]
    finally:
        held.release()
    if wait:
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert json.loads(out)["counts"] == {"converted": 2}
    moto_s3.fs.invalidate_cache()
    assert not moto_s3.fs.exists(f"{url[5:]}/.lock")  # released by whoever held it last


def test_a_watcher_on_a_held_bucket_output_is_refused(moto_s3: S3, bundles: Path) -> None:
    url = "s3://datasets/one-watcher"
    held = Lease(Output(url, moto_s3.options))
    held.acquire()
    try:
        watcher = start_cli(["watch", str(bundles), "--out", url, "--once", *moto_s3.cli_options])
        _, err = watcher.communicate(timeout=120)
        assert watcher.returncode == 3, err
        assert b"another reacture-convert run is writing to this output" in err
    finally:
        held.release()


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops(
    moto_s3: S3, tmp_path: Path
) -> None:
    """A run frozen (SIGSTOP) longer than its lease: a second run takes OUT over and finishes;
    the first, woken up, finds its lease gone and stops (exit 3) before committing anything."""
    inputs = [
        str(
            write_bundle(
                tmp_path / f"b{k}",
                BundleSpec(prefix=f"reacture_17956200{k:05d}", seed=k, n_frames=150),
            )
        )
        for k in range(6)
    ]
    url = "s3://datasets/taken-over"
    short = {LEASE_ENV: "2"}
    args = ["convert", *inputs, "--out", url, "--scheduler", "sync", "--json", *moto_s3.cli_options]
    first = start_cli(args, short)
    try:
        deadline = time.monotonic() + 60
        while True:  # the first run holds the lease: freeze it there
            moto_s3.fs.invalidate_cache()
            if moto_s3.fs.exists(f"{url[5:]}/.lock"):
                os.killpg(first.pid, signal.SIGSTOP)
                break
            assert first.poll() is None and time.monotonic() < deadline, first.stderr
            time.sleep(0.01)
        time.sleep(4.5)  # more than the lease and the store's one-second time resolution
        second = start_cli(args, short)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        assert json.loads(out)["counts"] == {"converted": 6}
        moto_s3.fs.invalidate_cache()
        before = {p: moto_s3.fs.info(p)["ETag"] for p in moto_s3.fs.find(url[5:]) if "/." not in p}
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    assert b"lease" in err and b"took it over" in err
    moto_s3.fs.invalidate_cache()
    after = {p: moto_s3.fs.info(p)["ETag"] for p in moto_s3.fs.find(url[5:]) if "/." not in p}
    assert after == before  # the old holder changed nothing visible
    code, text = run_cli("verify", url, "--json", *moto_s3.cli_options)
    assert code == 0 and json.loads(text)["sessions_checked"] == 6, text
