"""Shuffle quality (issue 29): the measure itself on known orders, a floor both readers must
reach at their defaults on one session and on many (so a change that mixes less fails), and
every sample exactly once in a shuffled shard epoch however it is split.

The datasets: one synthetic session of 1,200 frames, and six sessions (one all black, skipped)
of 1,150 frames in all; each converted to Zarr and three shards. Two consumers read as two
DataLoader workers do (batches taken from them in turn)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from reacture_convert.read.options import ReadOptions
from reacture_convert.read.quality import batch_keys, positions, shuffle_quality
from reacture_convert.read.sources import ShardSource, ZarrSource
from reacture_convert.read.sources.base import SampleSource
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.synth import convert_synth

BATCH = 64
WORKERS = 2
GAP_FLOOR, DISPLACEMENT_FLOOR = 0.2, 0.25
SETS = {
    "one": [BundleSpec(n_frames=1200, seed=1, prefix="reacture_1795610000001")],
    "many": [
        BundleSpec(n_frames=n, seed=i, prefix=f"reacture_179561000001{i}", blank=i == 3)
        for i, n in enumerate([300, 150, 250, 80, 200, 170])
    ],
}


@pytest.fixture(scope="module", params=sorted(SETS))
def out(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"quality-{request.param}")
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=3))
    return convert_synth(root, SETS[request.param], options)


def test_the_measure_of_known_orders() -> None:
    n = 10_000
    in_order = shuffle_quality(np.arange(n))
    assert in_order.median_gap == pytest.approx(1 / n) and in_order.mean_displacement == 0
    backwards = shuffle_quality(np.arange(n)[::-1])
    assert backwards.mean_displacement == pytest.approx(0.5, abs=1e-3)
    uniform = shuffle_quality(np.random.default_rng(0).permutation(n))
    assert uniform.median_gap == pytest.approx(1 - 2**-0.5, abs=0.02)
    assert uniform.mean_displacement == pytest.approx(1 / 3, abs=0.02)
    assert shuffle_quality([]).samples == 0


def test_positions_are_places_in_the_datasets_order_and_refuse_repeats() -> None:
    keys = [("b", 0), ("a", 5), ("a", 2), ("b", 1)]
    assert positions(keys).tolist() == [2, 1, 0, 3]
    with pytest.raises(ValueError, match="more than once"):
        positions([("a", 1), ("a", 1)])


def delivered(source: SampleSource, seed: int, epoch: int = 0) -> list[tuple[str, int]]:
    """The samples of a shuffled epoch as a DataLoader with ``WORKERS`` workers hands them
    out: the Zarr plan dealt to the workers, or the shard consumers' batches in turn."""
    if isinstance(source, ZarrSource):
        ids = source.epoch_batches(BATCH, shuffle=True, seed=seed, epoch=epoch, workers=WORKERS)
        return batch_keys(source.fetch(b) for b in ids)
    assert isinstance(source, ShardSource)
    streams = [
        source.iter_batches(BATCH, shuffle=True, seed=seed, epoch=epoch, consumer=w, consumers=2)
        for w in range(WORKERS)
    ]
    turns = itertools.chain.from_iterable(itertools.zip_longest(*streams))
    return batch_keys(b for b in turns if b is not None)


SOURCES = {"zarr": ZarrSource, "wds": ShardSource}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_both_readers_mix_at_least_the_floor_at_their_defaults(out: Path, name: str) -> None:
    source = SOURCES[name](out)
    got = delivered(source, seed=11)
    assert len(got) == len(source)
    quality = shuffle_quality(positions(got))
    assert quality.median_gap >= GAP_FLOOR, quality
    assert quality.mean_displacement >= DISPLACEMENT_FLOOR, quality


def in_order(source: ShardSource) -> list[tuple[str, int]]:
    return batch_keys(source.iter_batches(BATCH))


@pytest.mark.parametrize("consumers", [1, 2, 3, 5])
def test_a_shuffled_shard_epoch_delivers_every_sample_once_however_split(
    out: Path, consumers: int
) -> None:
    source = ShardSource(out)
    expected = sorted(in_order(source))
    for epoch in (0, 1):
        got = [
            key
            for c in range(consumers)
            for key in batch_keys(
                source.iter_batches(
                    BATCH, shuffle=True, seed=5, epoch=epoch, consumer=c, consumers=consumers
                )
            )
        ]
        assert sorted(got) == expected
        assert got != expected


def test_the_shuffled_shard_order_depends_on_seed_and_epoch_only(out: Path) -> None:
    source = ShardSource(out)

    def whole(consumers: int, seed: int = 5, epoch: int = 0) -> list[tuple[str, int]]:
        return [
            key
            for c in range(consumers)
            for key in batch_keys(
                source.iter_batches(
                    BATCH, shuffle=True, seed=seed, epoch=epoch, consumer=c, consumers=consumers
                )
            )
        ]

    assert whole(1) == whole(2) == whole(3)
    assert whole(1) != whole(1, epoch=1) and whole(1) != whole(1, seed=6)


def test_a_shuffled_shard_epoch_of_some_sessions_keeps_only_theirs(out: Path) -> None:
    everything = ShardSource(out).sessions
    some = everything[::2]
    source = ShardSource(out, ReadOptions(sessions=some))
    got = [
        key
        for c in range(2)
        for key in batch_keys(
            source.iter_batches(BATCH, shuffle=True, seed=2, consumer=c, consumers=2)
        )
    ]
    assert sorted(got) == sorted(in_order(source))
    assert {s for s, _ in got} <= set(some)
