"""Resuming an epoch (issue 23): a loader's ``state_dict()`` after k batches, loaded into a new
loader made with the same arguments, delivers exactly what the uninterrupted epoch delivered
after those k batches: in the same order with the same workers and ranks, and every remaining
sample exactly once with other numbers of workers (both sources) or ranks (Zarr, and shards read
at random); with blank skipping and history/horizon windows on; and again after a second
interruption. A state from another reading is refused.

The dataset: six synthetic sessions, two all black (skipped), with pauses (windows drop
samples across them), converted to Zarr and four shards. Samples are named by
``(session, frame_index)``."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from reacture_convert.errors import ConfigError
from reacture_convert.output.storage import Output
from reacture_convert.read.resume import ResumeState
from reacture_convert.read.torch import (
    ChunkBatchSampler,
    EpochLoader,
    FrameDataset,
    to_pytorch_dataloader,
)
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.expect import Key

BATCH = 16
WINDOWS = {"history": 2, "horizon": 1, "max_gap_ms": 1000}
SPECS = [
    BundleSpec(n_frames=90, seed=1, prefix="reacture_1795600000001", pauses=((40, 5000),)),
    BundleSpec(n_frames=70, seed=2, prefix="reacture_1795600000002", blank=True),
    BundleSpec(n_frames=110, seed=3, prefix="reacture_1795600000003"),
    BundleSpec(n_frames=60, seed=4, prefix="reacture_1795600000004", pauses=((20, 3000),)),
    BundleSpec(n_frames=50, seed=5, prefix="reacture_1795600000005", blank=True),
    BundleSpec(n_frames=80, seed=6, prefix="reacture_1795600000006"),
]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    for spec in SPECS:
        write_bundle(root / "in" / spec.prefix, spec)
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=4))
    target = root / "out"
    summary = run_convert([str(root / "in")], Output(str(target)), options, scheduler="sync")
    assert summary.counts == {"converted": len(SPECS)}
    return target


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def loader(out: Path, source: str, workers: int = 0, **kw: Any) -> EpochLoader:
    args: dict[str, Any] = {"batch_size": BATCH, "shuffle": True, "seed": 7, **WINDOWS, **kw}
    return to_pytorch_dataloader(out, source=source, num_workers=workers, **args)


def keys(batches: Iterable[dict[str, Any]]) -> list[Key]:
    pairs = (zip(b["session"], b["frame_index"], strict=True) for b in batches)
    return [(str(s), int(f)) for batch in pairs for s, f in batch]


def take(it: Iterator[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    return [next(it) for _ in range(k)]


def interrupted(
    out: Path, source: str, k: int, epoch: int = 3, **kw: Any
) -> tuple[list[Key], dict[str, Any]]:
    """The first ``k`` batches of an epoch and the state after them (pickled and back, as a
    checkpoint file would hold it)."""
    first = loader(out, source, **kw)
    first.set_epoch(epoch)
    it = iter(first)
    got = keys(take(it, k))
    state = pickle.loads(pickle.dumps(first.state_dict()))
    del it
    return got, state


def whole_epoch(out: Path, source: str, epoch: int = 3, **kw: Any) -> list[Key]:
    full = loader(out, source, **kw)
    full.set_epoch(epoch)
    return keys(full)


@pytest.mark.parametrize("source", ["zarr", "wds"])
@pytest.mark.parametrize("k", [0, 1, 5, 9])
def test_a_resumed_epoch_delivers_exactly_the_rest_in_order(out: Path, source: str, k: int) -> None:
    whole = whole_epoch(out, source, workers=2)
    assert len(whole) == len(set(whole)) > 200
    first, state = interrupted(out, source, k, workers=2)
    again = loader(out, source, workers=2)
    again.load_state_dict(state)
    rest = keys(again)
    assert first + rest == whole


@pytest.mark.parametrize("source", ["zarr", "wds"])
@pytest.mark.parametrize(("before", "after"), [(2, 0), (2, 1), (1, 2), (0, 2)])
def test_resuming_with_other_workers_delivers_every_sample_once(
    out: Path, source: str, before: int, after: int
) -> None:
    whole = whole_epoch(out, source, workers=before)
    first, state = interrupted(out, source, 4, workers=before)
    again = loader(out, source, workers=after)
    again.load_state_dict(state)
    rest = keys(again)
    assert len(first) + len(rest) == len(whole)
    assert sorted(first + rest) == sorted(whole)


def test_zarr_resumes_on_another_number_of_ranks(out: Path) -> None:
    """Two ranks interrupted after 3 batches each; the job resumes on one rank (and back on
    two): every sample of the epoch exactly once over all of them."""
    whole = [k for r in range(2) for k in whole_epoch(out, "zarr", rank=r, world_size=2)]
    firsts, states = [], []
    for rank in range(2):
        got, state = interrupted(out, "zarr", 3, rank=rank, world_size=2)
        firsts += got
        states.append(state)
    one = loader(out, "zarr", rank=0, world_size=1)
    one.load_state_dict(states[0])
    rest = keys(one)
    assert sorted(firsts + rest) == sorted(whole)


def shard_map_loader(out: Path, rank: int, world_size: int) -> EpochLoader:
    """Random access over the shards (no windows: it takes none), planned as the Zarr sampler
    plans: the order depends on the seed and the epoch only."""
    ds = FrameDataset(out, source="wds")
    sampler = ChunkBatchSampler(ds, BATCH, shuffle=True, seed=7, rank=rank, world_size=world_size)
    return EpochLoader(ds, batch_size=None, sampler=sampler, collate_fn=lambda b: b)


def test_random_access_shards_resume_on_another_number_of_ranks(out: Path) -> None:
    """Shards read at random (``FrameDataset(source="wds")``) resume as the Zarr reader does:
    two ranks interrupted after 3 batches each, the job resumed on one rank, every sample of
    the epoch exactly once; a Zarr state is refused there."""
    whole = []
    firsts, states = [], []
    for rank in range(2):
        full = shard_map_loader(out, rank, 2)
        full.set_epoch(3)
        whole += keys(full)
        first = shard_map_loader(out, rank, 2)
        first.set_epoch(3)
        it = iter(first)
        firsts += keys(take(it, 3))
        states.append(pickle.loads(pickle.dumps(first.state_dict())))
        del it
    one = shard_map_loader(out, 0, 1)
    one.load_state_dict(states[0])
    rest = keys(one)
    assert len(firsts + rest) == len(whole)
    assert sorted(firsts + rest) == sorted(whole)
    zarr = dict(states[0], source="zarr")
    with pytest.raises(ConfigError, match="source: state 'zarr', loader 'wds-map'"):
        shard_map_loader(out, 0, 1).load_state_dict(zarr)


def test_zarr_ranks_resume_on_as_many_ranks_in_order(out: Path) -> None:
    for rank in range(2):
        whole = whole_epoch(out, "zarr", rank=rank, world_size=2)
        first, state = interrupted(out, "zarr", 3, rank=rank, world_size=2)
        again = loader(out, "zarr", rank=rank, world_size=2)
        again.load_state_dict(state)
        assert first + keys(again) == whole


@pytest.mark.parametrize("source", ["zarr", "wds"])
def test_an_epoch_interrupted_twice_still_delivers_every_sample_once(
    out: Path, source: str
) -> None:
    whole = whole_epoch(out, source, workers=2)
    first, state = interrupted(out, source, 3, workers=2)
    second = loader(out, source, workers=1)
    second.load_state_dict(state)
    it = iter(second)
    middle = keys(take(it, 4))
    state2 = second.state_dict()
    del it
    third = loader(out, source, workers=2)
    third.load_state_dict(state2)
    rest = keys(third)
    assert sorted(first + middle + rest) == sorted(whole)
    assert len(first + middle + rest) == len(whole)


@pytest.mark.parametrize("source", ["zarr", "wds"])
def test_the_epoch_after_a_resumed_one_is_whole(out: Path, source: str) -> None:
    _, state = interrupted(out, source, 2, epoch=1)
    again = loader(out, source)
    again.load_state_dict(state)
    list(again)
    again.set_epoch(2)
    assert keys(again) == whole_epoch(out, source, epoch=2)


def test_set_epoch_to_another_epoch_drops_a_loaded_state(out: Path) -> None:
    _, state = interrupted(out, "zarr", 2, epoch=1)
    again = loader(out, "zarr")
    again.load_state_dict(state)
    again.set_epoch(1)  # the loop's own call for the interrupted epoch keeps it
    assert again.state_dict() == state
    again.set_epoch(4)
    assert keys(again) == whole_epoch(out, "zarr", epoch=4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 8}, "seed: state 7, loader 8"),
        ({"batch_size": 8}, "batch_size: state 16, loader 8"),
        ({"shuffle": False}, "shuffle: state True, loader False"),
        ({"skip_blank": False}, "samples: state"),
        ({"source": "wds"}, "source: state 'zarr', loader 'wds'"),
    ],
    ids=["seed", "batch", "shuffle", "options", "source"],
)
def test_a_state_of_another_reading_is_refused(
    out: Path, change: dict[str, Any], message: str
) -> None:
    _, state = interrupted(out, "zarr", 1)
    source = change.pop("source", "zarr")
    other = loader(out, source, **change)
    with pytest.raises(ConfigError, match=message):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: {**d, "version": 99}, "version 99"),
        (lambda d: {k: v for k, v in d.items() if k != "epoch"}, r"missing \['epoch'\]"),
        (lambda d: {**d, "batches": -1}, "batches=-1 is not a count"),
        (lambda d: {**d, "worker_batches": "x"}, "worker_batches='x'"),
        (lambda d: [1, 2], "a loader state is a dict"),
    ],
    ids=["version", "missing", "negative", "workers", "not-a-dict"],
)
def test_a_damaged_state_is_refused(out: Path, damage: Any, message: str) -> None:
    _, state = interrupted(out, "wds", 1)
    with pytest.raises(ConfigError, match=message):
        loader(out, "wds").load_state_dict(damage(state))


def test_shards_refuse_another_number_of_ranks_and_persistent_workers(out: Path) -> None:
    _, state = interrupted(out, "wds", 1, rank=0, world_size=2)
    with pytest.raises(ConfigError, match="resumes on as many"):
        loader(out, "wds", rank=0, world_size=1).load_state_dict(state)
    _, state = interrupted(out, "wds", 1)
    with pytest.raises(ConfigError, match="persistent workers"):
        loader(out, "wds", workers=1, persistent_workers=True).load_state_dict(state)


def test_a_state_round_trips_through_its_dict() -> None:
    inner = ResumeState("wds", 1, 3, 7, True, 16, False, 500, 2, 0, 1, (2, 1))
    state = ResumeState("wds", 1, 4, 7, True, 16, False, 500, 1, 0, 1, (4,), resumed=inner)
    assert ResumeState.from_dict(state.to_dict()) == state
