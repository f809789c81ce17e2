"""Random access over shards (issue 29): ``ShardSource[i]`` and ``fetch([i, j])`` give the
samples the sequential shard reader gives, in its order (and the Zarr reader's at the same
index), from local disk and from an object store with and without the disk cache; bad indices
and options it cannot serve say so.

The dataset: four synthetic sessions (one all black, skipped by default), converted to Zarr and
three shards, and one session converted to shards only (no alignment tables)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reacture_convert.errors import ConfigError
from reacture_convert.read.batch import unbatch
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.sources import ShardSource, ZarrSource
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.s3 import S3
from tests.helpers.synth import convert_synth

SPECS = [
    BundleSpec(n_frames=70, seed=1, prefix="reacture_1795620000001"),
    BundleSpec(n_frames=30, seed=2, prefix="reacture_1795620000002", blank=True),
    BundleSpec(n_frames=55, seed=3, prefix="reacture_1795620000003", pauses=((20, 3000),)),
    BundleSpec(n_frames=45, seed=4, prefix="reacture_1795620000004"),
]


def convert(root: Path, specs: list[BundleSpec], formats: tuple[str, ...]) -> Path:
    return convert_synth(
        root, specs, ConvertOptions(formats=formats, wds=WdsOptions(shard_count=3))
    )


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("access"), SPECS, ("zarr", "wds"))


@pytest.fixture(scope="module")
def wds_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert(tmp_path_factory.mktemp("access-wds"), SPECS[:1], ("wds",))


def samples(source: ShardSource) -> list[dict[str, Any]]:
    """The sequential reader's samples, in order."""
    return [s for b in source.iter_batches(16) for s in unbatch(b)]


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("skip_blank", [True, False])
def test_each_sample_is_the_sequential_readers_sample_at_that_index(
    out: Path, skip_blank: bool
) -> None:
    source = ShardSource(out, ReadOptions(skip_blank=skip_blank))
    expected = samples(source)
    assert len(source) == len(expected) == sum(s.n_frames for s in SPECS) - 30 * skip_blank
    for i, want in enumerate(expected):
        assert same(source[i], want), i
        assert source.locate(i) == (want["session"], want["frame_index"])


def test_a_list_of_indices_reads_a_whole_batch(out: Path) -> None:
    source = ShardSource(out, ReadOptions(flip=True, dtype="float32"))
    ids = [5, 0, len(source) - 1, 5, -2, 69, 70]
    batch = source.fetch(ids)
    for j, got in enumerate(unbatch(batch)):
        assert same(got, source[ids[j]])
    assert batch["frame"].shape == (len(ids), 128, 128, 3) and batch["frame"].dtype == np.float32


def test_the_shards_index_is_the_zarr_readers_index(out: Path) -> None:
    shards, zarr = ShardSource(out), ZarrSource(out)
    assert len(shards) == len(zarr)
    for i in range(0, len(zarr), 7):
        assert same(shards[i], zarr[i]), i


def test_some_sessions_only(out: Path) -> None:
    some = ShardSource(out).sessions[2:]
    source = ShardSource(out, ReadOptions(sessions=some))
    expected = samples(source)
    assert len(source) == len(expected)
    assert {s["session"] for s in expected} == set(some)
    assert all(same(source[i], want) for i, want in enumerate(expected))


@pytest.mark.parametrize("index", [10_000, -10_000])
def test_an_index_out_of_range_is_an_index_error(out: Path, index: int) -> None:
    source = ShardSource(out)
    with pytest.raises(IndexError, match=f"index {index} out of range for {len(source)}"):
        source[index]
    with pytest.raises(IndexError):
        source.fetch([0, index])


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        ("out", ReadOptions(history=2), "takes no history/horizon windows"),
        ("wds_only", ReadOptions(), "needs the alignment tables"),
    ],
)
def test_what_random_access_cannot_serve_says_what_to_do(
    request: pytest.FixtureRequest, dataset: str, options: ReadOptions, message: str
) -> None:
    source = ShardSource(request.getfixturevalue(dataset), options)
    with pytest.raises(ConfigError, match=message):
        source[0]


def test_without_tables_skip_blank_false_reads_every_sample(wds_only: Path) -> None:
    source = ShardSource(wds_only, ReadOptions(skip_blank=False))
    expected = samples(source)
    assert len(expected) == len(source) == SPECS[0].n_frames
    assert all(same(source[i], want) for i, want in enumerate(expected))


# --- over an S3-compatible server -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bucket(moto_s3: S3, out: Path) -> Iterator[str]:
    moto_s3.fs.put(str(out), "datasets/access", recursive=True)
    yield "s3://datasets/access"


@pytest.mark.parametrize("cached", [False, True])
def test_random_access_from_an_object_store(
    bucket: str, moto_s3: S3, out: Path, tmp_path: Path, cached: bool
) -> None:
    from reacture_convert.read.cache import CacheOptions

    cache = CacheOptions(str(tmp_path / "cache"), 1 << 30) if cached else None
    remote = ShardSource(bucket, storage_options=moto_s3.options, cache=cache)
    local = ShardSource(out)
    ids = [3, len(local) - 1, 0, 40, 41, 42]
    pairs = zip(unbatch(remote.fetch(ids)), unbatch(local.fetch(ids)), strict=True)
    assert all(same(a, b) for a, b in pairs)
    shuffled = [
        (s["session"], s["frame_index"])
        for src in (remote, local)
        for b in src.iter_batches(16, shuffle=True, seed=1)
        for s in unbatch(b)
    ]
    half = len(shuffled) // 2
    assert shuffled[:half] == shuffled[half:]


# --- PyTorch: FrameDataset(source="wds") ---------------------------------------------------------
def test_frame_dataset_over_shards_is_the_zarr_frame_dataset(out: Path) -> None:
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from reacture_convert.read.torch import ChunkBatchSampler, FrameDataset

    shards, zarr = FrameDataset(out, source="wds"), FrameDataset(out)
    assert len(shards) == len(zarr) and shards.sessions == zarr.sessions
    for i in (0, 17, len(zarr) - 1):
        assert same(shards[i], zarr[i])
        assert shards.locate(i) == zarr.locate(i)
    assert same(shards[[4, 2, 9]], zarr[[4, 2, 9]])
    sampler = ChunkBatchSampler(shards, 16, shuffle=True, seed=3)
    loader = DataLoader(shards, batch_size=None, sampler=sampler, num_workers=2)
    got = [(s, int(f)) for b in loader for s, f in zip(b["session"], b["frame_index"], strict=True)]
    assert sorted(got) == sorted(zarr.locate(i) for i in range(len(zarr)))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"source": "lmdb"}, "unknown source 'lmdb'"),
        ({"source": "wds", "weights": [1.0]}, "reads one dataset"),
        ({"source": "wds", "history": 1}, "takes no history/horizon windows"),
    ],
)
def test_frame_dataset_over_shards_refuses_what_it_cannot_serve(
    out: Path, kw: dict[str, Any], message: str
) -> None:
    pytest.importorskip("torch")
    from reacture_convert.read.torch import FrameDataset

    with pytest.raises(ConfigError, match=message):
        FrameDataset(out, **kw)
