"""Compressed shards (``--shard-compression gzip``) read as the plain ones: the shard reader
streams, shuffles and serves random access with the same samples (each run one ranged read,
inflated alone), from the disk cache too; ``verify`` passes them and names a damaged one;
``remove`` and ``subset`` keep them compressed; an append must keep the compression."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reacture_convert.errors import ConfigError
from reacture_convert.output.storage import Output
from reacture_convert.read.batch import unbatch
from reacture_convert.read.cache import CacheOptions
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.sources import ShardSource
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.remove import remove_sessions
from reacture_convert.run.subset import subset_dataset
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.s3 import S3
from tests.helpers.synth import convert_synth

SPECS = [
    BundleSpec(n_frames=70, seed=1, prefix="reacture_1795630000001"),
    BundleSpec(n_frames=30, seed=2, prefix="reacture_1795630000002", blank=True),
    BundleSpec(n_frames=55, seed=3, prefix="reacture_1795630000003"),
]
TOTAL = sum(s.n_frames for s in SPECS)


def convert(root: Path, compression: str, **wds: Any) -> Path:
    options = WdsOptions(shard_count=2, compression=compression, **wds)
    return convert_synth(root, SPECS, ConvertOptions(formats=("zarr", "wds"), wds=options))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same sessions converted to plain and to gzip shards."""
    return (
        convert(tmp_path_factory.mktemp("plain"), "none"),
        convert(tmp_path_factory.mktemp("gz"), "gzip"),
    )


def index_of(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "wds" / "index.json").read_text())
    return doc


def all_samples(source: ShardSource, **stream: Any) -> list[dict[str, Any]]:
    return [s for b in source.iter_batches(16, **stream) for s in unbatch(b)]


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_index_records_the_compression_and_runs(pair: tuple[Path, Path]) -> None:
    plain, gz = index_of(pair[0]), index_of(pair[1])
    assert "compression" not in plain
    assert (gz["compression"], gz["compression_level"]) == ("gzip", 6)
    for shard in gz["shards"]:
        assert shard["url"].endswith(".tar.gz")
        assert len(shard["runs"]) == -(-shard["samples"] // 32) + 1
    for shard, gz_shard in zip(plain["shards"], gz["shards"], strict=True):
        assert [c for c, _ in shard["runs"]] == [u for _, u in shard["runs"]]  # plain: one offset
        assert [u for _, u in shard["runs"]] == [u for _, u in gz_shard["runs"]]
    # the same samples in the same shards (--shard-size counts tar bytes), fewer bytes
    assert [s["samples"] for s in gz["shards"]] == [s["samples"] for s in plain["shards"]]
    assert sum(s["bytes"] for s in gz["shards"]) < sum(s["bytes"] for s in plain["shards"])


def test_streaming_and_random_access_give_the_plain_shards_samples(
    pair: tuple[Path, Path],
) -> None:
    plain = ShardSource(pair[0], ReadOptions(skip_blank=False))
    gz = ShardSource(pair[1], ReadOptions(skip_blank=False))
    want = all_samples(plain)
    got = all_samples(gz)
    assert len(got) == len(want) == TOTAL and all(map(same, got, want))
    for i in (0, 31, 32, 33, 99, TOTAL - 1, -1):
        assert same(gz[i], plain[i]), i
    batch = gz.fetch([5, 64, 63, 120])
    assert np.array_equal(batch["frame"], plain.fetch([5, 64, 63, 120])["frame"])


@pytest.mark.parametrize("cached", [False, True], ids=["direct", "disk-cache"])
def test_a_shuffled_epoch_gives_every_sample_once(
    pair: tuple[Path, Path], tmp_path: Path, cached: bool
) -> None:
    cache = CacheOptions(str(tmp_path / "cache"), 1 << 30) if cached else None
    gz = ShardSource(pair[1], ReadOptions(skip_blank=False), cache=cache)
    plain = ShardSource(pair[0], ReadOptions(skip_blank=False))
    for epoch in (0, 1):
        got = all_samples(gz, shuffle=True, seed=7, epoch=epoch)
        want = all_samples(plain, shuffle=True, seed=7, epoch=epoch)
        keys = [(s["session"], int(s["frame_index"])) for s in got]
        assert len(set(keys)) == len(keys) == TOTAL
        assert all(map(same, got, want))  # the same order as over plain shards


def test_frame_dataset_reads_compressed_shards(pair: tuple[Path, Path]) -> None:
    from reacture_convert.read.torch import FrameDataset

    zarr = FrameDataset(str(pair[1]))
    wds = FrameDataset(str(pair[1]), source="wds")
    assert len(wds) == len(zarr) == TOTAL - 30
    for i in (0, 40, len(wds) - 1):
        assert np.array_equal(np.asarray(wds[i]["frame"]), np.asarray(zarr[i]["frame"]))


# --- verify ---------------------------------------------------------------------------------
def first_shard(out: Path) -> Path:
    return out / "wds" / index_of(out)["shards"][0]["url"]


def flip_a_run_byte(out: Path) -> None:
    shard = first_shard(out)
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x40
    shard.write_bytes(bytes(data))


def truncate(out: Path) -> None:
    shard = first_shard(out)
    shard.write_bytes(shard.read_bytes()[:-100])


def move_a_run(out: Path) -> None:
    doc = index_of(out)
    c, u = doc["shards"][0]["runs"][1]
    doc["shards"][0]["runs"][1] = [c + 1, u]
    text = json.dumps(doc, indent=2) + "\n"
    (out / "wds" / "index.json").write_text(text)


DAMAGE = {
    "byte-flipped": (flip_a_run_byte, "cannot be read as a compressed tar"),
    "truncated": (truncate, "(truncated or grown)"),
    "run-moved": (move_a_run, "in index.json's runs"),
}


def test_compressed_shards_verify(pair: tuple[Path, Path]) -> None:
    assert verify_dataset(Output(str(pair[1]))) == (3, [])


@pytest.mark.parametrize(("damage", "what"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_compressed_shard_is_named(
    pair: tuple[Path, Path], tmp_path: Path, damage: Callable[[Path], None], what: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(pair[1], out)
    damage(out)
    _, problems = verify_dataset(Output(str(out)))
    name = first_shard(out).name
    assert any(what in p.what and name in p.what for p in problems), problems


# --- remove, subset, append -------------------------------------------------------------------
def test_remove_and_subset_keep_the_shards_compressed(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(pair[1], out)
    gone = SPECS[0].prefix
    remove_sessions(Output(str(out)), [gone], reason="test")
    doc = index_of(out)
    assert doc["compression"] == "gzip" and all(s["url"].endswith(".tar.gz") for s in doc["shards"])
    assert verify_dataset(Output(str(out)))[1] == []
    left = all_samples(ShardSource(out, ReadOptions(skip_blank=False)))
    assert len(left) == TOTAL - SPECS[0].n_frames and gone not in {s["session"] for s in left}
    new = tmp_path / "subset"
    subset_dataset(Output(str(out)), Output(str(new)), [SPECS[2].prefix])
    assert index_of(new)["compression"] == "gzip"
    assert verify_dataset(Output(str(new)))[1] == []
    assert len(all_samples(ShardSource(new, ReadOptions(skip_blank=False)))) == SPECS[2].n_frames


def test_an_append_keeps_the_sets_compression(tmp_path: Path) -> None:
    first = convert_synth(
        tmp_path / "a",
        SPECS[:1],
        ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(compression="gzip")),
    )
    more = tmp_path / "b"
    from reacture_convert.testing.synth import write_bundle

    write_bundle(more / SPECS[2].prefix, SPECS[2])
    with pytest.raises(ConfigError, match="compression 'gzip'"):
        run_convert(
            [str(more)],
            Output(str(first)),
            ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(append=True)),
            scheduler="sync",
        )
    options = WdsOptions(append=True, compression="gzip")
    run_convert(
        [str(more)],
        Output(str(first)),
        ConvertOptions(formats=("zarr", "wds"), wds=options),
        scheduler="sync",
    )
    doc = index_of(first)
    assert len(doc["shards"]) == 2 and all(s["url"].endswith(".tar.gz") for s in doc["shards"])
    assert verify_dataset(Output(str(first)))[1] == []


def test_compressed_shards_written_into_and_read_from_a_bucket(
    moto_s3: S3, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Converted straight into moto's S3 server, gzip shards verify there, and the shard
    reader's random access and shuffled epoch over the bucket (a ranged read per run) give
    the samples the local plain shards give."""
    url = f"s3://datasets/gz-{tmp_path.name}"
    options = ConvertOptions(
        formats=("zarr", "wds"), wds=WdsOptions(shard_count=2, compression="gzip")
    )
    bundles = tmp_path / "bundles"
    for spec in SPECS:
        write_bundle(bundles / spec.prefix, spec)
    out = Output(url, moto_s3.options)
    run_convert([str(bundles)], out, options, scheduler="sync")
    assert verify_dataset(out) == (len(SPECS), [])
    remote = ShardSource(url, ReadOptions(skip_blank=False), storage_options=moto_s3.options)
    plain = ShardSource(pair[0], ReadOptions(skip_blank=False))
    ids = [0, 31, 32, TOTAL - 1, 64, 3]
    assert all(map(same, unbatch(remote.fetch(ids)), unbatch(plain.fetch(ids))))
    got = all_samples(remote, shuffle=True, seed=3, epoch=1)
    want = all_samples(plain, shuffle=True, seed=3, epoch=1)
    assert len(got) == TOTAL and all(map(same, got, want))
