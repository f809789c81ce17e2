"""Shards into a bucket from sessions converted on this machine: the sessions' parts wait on
local disk (``writers.webdataset.scratch``), and each shard crosses to the store once, straight
to its name, as "convert locally, then upload" would send it (#30)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.storage import Output
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.webdataset.scratch import MARGIN, folder_of, parts_dir
from reacture_convert.writers.webdataset.sink import HashedFile
from tests.helpers.s3 import S3

# sessions of ~4 and ~2 MB of samples in 3 MB shards: the first shard is a whole part of the
# first session (sent as it is), the others are copied together from both sessions' parts
SPECS = [
    BundleSpec(prefix=f"reacture_17956000001{k}", seed=k, n_frames=n) for k, n in ((1, 80), (2, 40))
]
SHARDS = ["--shard-size", "3MB"]


def _convert(bundles: Path, out: str, *extra: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["convert", str(bundles), "--out", out, "--format", "wds", "--quiet", *SHARDS, *extra],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_shards_cross_to_the_bucket_once_and_equal_a_local_convert(
    moto_s3: S3, tmp_path: Path, compression: str
) -> None:
    bundles = tmp_path / "bundles"
    for spec in SPECS:
        write_bundle(bundles / spec.prefix, spec)
    options = ("--shard-compression", compression)
    _convert(bundles, str(tmp_path / "local"), *options)
    url = f"s3://datasets/scratch-{compression}"
    with LatencyProxy(moto_s3.endpoint) as proxy:
        _convert(
            bundles,
            url,
            *options,
            "--storage-option",
            f"client_kwargs.endpoint_url={proxy.url}",
        )
        log = list(proxy.traffic.log)
    paths = [p for _, _, p, _ in log]
    assert not [p for p in paths if "/.staging/" in p]  # nothing staged in the bucket
    shard_writes = {p.split("?")[0] for _, m, p, _ in log if m in ("PUT", "POST") and ".tar" in p}
    local = _files(tmp_path / "local" / "wds")
    names = sorted(n for n in local if ".tar" in n)
    assert len(names) == 3
    assert sorted(w.rsplit("/", 1)[1] for w in shard_writes) == names  # one object each
    remote = {n: moto_s3.fs.cat_file(f"datasets/scratch-{compression}/wds/{n}") for n in local}
    assert remote == local  # shards and index byte for byte
    assert not os.path.exists(folder_of(Output(url, {"client_kwargs": {}})))


def test_the_parts_folder_is_local_emptied_and_removed(tmp_path: Path) -> None:
    out = Output("s3://datasets/parts-folder")
    assert folder_of(out) != folder_of(Output("s3://datasets/other"))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    killed = Path(folder_of(out, int(gone.stdout)))  # a run whose process is gone
    leftover = killed / ".staging" / "killed-run" / "old.tar"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"a killed run's part")
    with parts_dir(out, True, 1 << 20) as folder:
        assert folder == folder_of(out)
        assert os.listdir(folder) == []
        assert not killed.exists()  # the killed run's parts are gone
        Path(folder, "part.tar").write_bytes(b"x")
    assert not os.path.exists(folder_of(out))


def test_a_run_into_the_same_url_in_another_store_keeps_its_parts_folder() -> None:
    # the same s3:// URL on two endpoints: each run holds its own store's lock, both run here
    out = Output("s3://datasets/parts-two-stores")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            theirs = Path(folder_of(out, other.pid))
            theirs.mkdir(parents=True)
            (theirs / "part.tar").write_bytes(b"the other run's part")
            with parts_dir(out, True, 1 << 20) as folder:
                assert folder is not None and Path(folder) != theirs
            assert (theirs / "part.tar").read_bytes() == b"the other run's part"
        finally:
            other.kill()
            shutil.rmtree(theirs, ignore_errors=True)


def test_the_parts_stay_in_out_when_their_folder_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # (TMPDIR, read once a process)
    out = Output("s3://datasets/parts-blocked")
    Path(folder_of(out)).parent.write_text("a file where the parts folder would go")
    with parts_dir(out, True, 0) as folder:
        assert folder is None


@pytest.mark.parametrize(
    ("url", "here", "nbytes", "why"),
    [
        ("LOCAL", True, 0, "a local OUT is its own staging"),
        ("s3://datasets/parts-remote", False, 0, "a remote cluster's workers share no disk"),
        ("s3://datasets/parts-huge", True, 1 << 60, "more than the disk holds"),
    ],
)
def test_the_parts_stay_in_out_when_they_cannot_wait_here(
    tmp_path: Path, url: str, here: bool, nbytes: int, why: str
) -> None:
    out = Output(str(tmp_path / "out") if url == "LOCAL" else url)
    with parts_dir(out, here, nbytes) as folder:
        assert folder is None, why
    assert not os.path.exists(folder_of(out))
    assert MARGIN > 0


def test_an_aborted_shard_on_s3_leaves_what_was_at_its_name(moto_s3: S3) -> None:
    out = Output("s3://datasets/abort-keeps", moto_s3.options)
    path = out.path("wds", "reacture-00000000-000000.tar")
    moto_s3.fs.pipe_file(path, b"the shard the index lists")
    sink = HashedFile(out, path)
    sink.write(b"y" * (9 << 20))  # a part sent
    sink.abort()
    moto_s3.fs.invalidate_cache()
    assert moto_s3.fs.cat_file(path) == b"the shard the index lists"
