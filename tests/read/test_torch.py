"""PyTorch readers (issue 6): DataLoaders with 2 workers over the Zarr store and over the shards
yield every sample of the real fixtures once, each equal to its source bundle at that frame
index; batches have the documented shapes and dtypes; shards split across workers and ranks
without duplicates or loss; flip and float frames; the package imports without torch."""

from __future__ import annotations

import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import torch
from conftest import REAL_BUNDLES, convert_real_bundles
from hypothesis import given
from hypothesis import strategies as st
from test_dataset import Source, expected_labels, read_source
from torch.utils.data import DataLoader, DistributedSampler

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.torch import (
    FrameDataset,
    ShardDataset,
    split_shards,
    to_pytorch_dataloader,
)
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.webdataset import WdsOptions

SHARDS = 5
VECTORS = ("position", "velocity", "accelerometer")
SCALARS = ("battery", "damage", "health")
Key = tuple[str, int]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every real fixture converted once for this module: Zarr + Parquet and 5 shards."""
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=SHARDS))
    return convert_real_bundles(tmp_path_factory.mktemp("torch") / "out", options)


@pytest.fixture(scope="module")
def sources() -> dict[str, Source]:
    return {p.name: read_source(p) for p in REAL_BUNDLES}


@pytest.fixture(scope="module")
def expected(sources: dict[str, Source]) -> dict[Key, dict[str, Any]]:
    return {
        (s, f): labels for s, src in sources.items() for f, labels in expected_labels(src).items()
    }


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Compare tensors on one thread: torch's pool on a busy machine makes tiny ops slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- checks ---------------------------------------------------------------------------------------
def check_batch_layout(batch: dict[str, Any], dtype: torch.dtype = torch.uint8) -> int:
    """The documented shapes and dtypes of a batch; returns its size."""
    b = len(batch["session"])
    assert batch["frame"].shape == (b, 3, 128, 128) and batch["frame"].dtype == dtype
    assert batch["keys"].shape == (b, 6) and batch["keys"].dtype == torch.float32
    assert batch["actions"].shape == (b, 4) and batch["actions"].dtype == torch.float32
    for name in SCALARS:
        assert batch[name].shape == (b, 1) and batch[name].dtype == torch.float32
    for name in VECTORS:
        assert batch[name].shape == (b, 3) and batch[name].dtype == torch.float32
    assert batch["timestamp_ms"].shape == (b,) and batch["timestamp_ms"].dtype == torch.float64
    assert batch["frame_index"].shape == (b,) and batch["frame_index"].dtype == torch.int64
    assert all(isinstance(s, str) for s in batch["session"])
    return b


def check_sample(sample: dict[str, Any], exp: dict[str, Any], frame: np.ndarray) -> None:
    """One (unbatched) sample against its source: the frame's stored bytes, CHW, and labels."""
    assert torch.equal(sample["frame"], torch.from_numpy(frame.transpose(2, 0, 1).copy()))
    assert sample["keys"].tolist() == [float(k) for k in exp["keys"]]
    assert sample["actions"].tolist() == [float(a) for a in exp["actions"]]
    for name in SCALARS:
        assert sample[name].tolist() == [float(np.float32(exp[name]))]
    for name in VECTORS:
        assert sample[name].tolist() == np.asarray(exp[name], np.float32).tolist()
    assert float(sample["timestamp_ms"]) == exp["timestamp_ms"]


def unbatch(batch: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for j in range(len(batch["session"])):
        yield {k: v[j] for k, v in batch.items()}


def check_loader(
    loader: Iterable[dict[str, Any]],
    expected: dict[Key, dict[str, Any]],
    sources: dict[str, Source],
    batched: bool = True,
) -> None:
    """The loader yields each expected sample once, equal to its source."""
    seen: list[Key] = []
    for batch in loader:
        if batched:
            check_batch_layout(batch)
        for sample in unbatch(batch) if batched else [batch]:
            key = (sample["session"], int(sample["frame_index"]))
            check_sample(sample, expected[key], sources[key[0]].frames[key[1]])
            seen.append(key)
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == set(expected)


def keys_of(samples: Iterable[dict[str, Any]]) -> list[Key]:
    return [(s["session"], int(s["frame_index"])) for s in samples]


# --- every sample, through workers ----------------------------------------------------------------
def test_zarr_loader_with_2_workers_yields_every_sample_as_in_its_bundle(
    converted: Path, sources: dict[str, Source], expected: dict[Key, dict[str, Any]]
) -> None:
    loader = DataLoader(FrameDataset(converted), batch_size=32, num_workers=2)
    check_loader(loader, expected, sources)


def test_shard_loader_with_2_workers_yields_every_sample_as_in_its_bundle(
    converted: Path, sources: dict[str, Source], expected: dict[Key, dict[str, Any]]
) -> None:
    loader = DataLoader(ShardDataset(converted), batch_size=32, num_workers=2)
    check_loader(loader, expected, sources)


def test_to_pytorch_dataloader_shuffles_and_still_yields_each_sample_once(
    converted: Path, sources: dict[str, Source], expected: dict[Key, dict[str, Any]]
) -> None:
    for source in ("zarr", "wds"):
        loader = to_pytorch_dataloader(
            str(converted), batch_size=64, shuffle=True, num_workers=0, source=source
        )
        check_loader(loader, expected, sources)


# --- frame options --------------------------------------------------------------------------------
def test_flip_and_float32_give_right_way_up_scaled_frames(
    converted: Path, sources: dict[str, Source]
) -> None:
    """Over the variant bundle (the only one whose frames are not all black)."""
    session = "reacture_1795637148842"
    zarr_ds = FrameDataset(converted, [session], flip=True, dtype="float32")
    shard_ds = ShardDataset(converted, flip=True, dtype="float32")
    n = 0
    for from_shards in shard_ds:
        s, f = from_shards["session"], from_shards["frame_index"]
        if s != session:
            continue
        upright = sources[s].frames[f][::-1]
        want = torch.from_numpy(upright.transpose(2, 0, 1).copy()).to(torch.float32) / 255
        assert from_shards["frame"].dtype == torch.float32
        assert torch.equal(from_shards["frame"], want)
        n += 1
    assert n == len(zarr_ds) == len(sources[session].frames)
    for i in range(len(zarr_ds)):
        sample = zarr_ds[i]
        upright = sources[sample["session"]].frames[sample["frame_index"]][::-1]
        want = torch.from_numpy(upright.transpose(2, 0, 1).copy()).to(torch.float32) / 255
        assert torch.equal(sample["frame"], want)
        assert 0.0 <= float(sample["frame"].min()) and float(sample["frame"].max()) <= 1.0


def test_default_keeps_the_stored_bottom_up_bytes(
    converted: Path, sources: dict[str, Source]
) -> None:
    ds = FrameDataset(converted, sessions=["reacture_1795637148842"])
    frame = sources["reacture_1795637148842"].frames[40]
    assert torch.equal(ds[40]["frame"], torch.from_numpy(frame.transpose(2, 0, 1).copy()))
    assert not np.array_equal(frame, frame[::-1])  # the variant's frames are not symmetric


# --- splitting ------------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [2, 4], ids=["2-ranks", "4-ranks"])
def test_shards_split_across_workers_and_ranks_without_duplicates_or_loss(
    converted: Path, expected: dict[Key, dict[str, Any]], world: int
) -> None:
    """2 workers on each of ``world`` simulated ranks: 4 consumers read whole shards, 8 (more
    than the 5 shards) split the samples of shards they share."""
    seen: list[Key] = []
    for rank in range(world):
        ds = ShardDataset(converted, rank=rank, world_size=world)
        mine = keys_of(DataLoader(ds, batch_size=None, num_workers=2))
        assert mine, f"rank {rank} got nothing"
        seen += mine
    assert len(seen) == len(set(seen)) and set(seen) == set(expected)


@given(
    sizes=st.lists(st.integers(0, 7), min_size=0, max_size=9),
    consumers=st.integers(1, 12),
)
def test_split_shards_gives_every_sample_to_exactly_one_consumer(
    sizes: list[int], consumers: int
) -> None:
    order = list(reversed(range(len(sizes))))
    taken: list[tuple[int, int]] = []
    for c in range(consumers):
        parts = split_shards(len(sizes), c, consumers, order)
        if len(sizes) >= consumers:
            assert all(p.step == 1 for p in parts)
        for p in parts:
            taken += [(p.shard, j) for j in range(sizes[p.shard]) if j % p.step == p.offset]
    assert sorted(taken) == [(s, j) for s, n in enumerate(sizes) for j in range(n)]


def test_rank_and_world_come_from_torch_distributed(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    ds = ShardDataset(converted)
    assert ds.parts(0, 2) == split_shards(SHARDS, 2, 4)
    loader = to_pytorch_dataloader(converted, batch_size=8, source="zarr")
    assert isinstance(loader.sampler, DistributedSampler)
    assert loader.sampler.rank == 1 and loader.sampler.num_replicas == 2


def test_shuffled_shards_change_order_with_the_epoch_and_lose_nothing(converted: Path) -> None:
    ds = ShardDataset(converted, shuffle=True, seed=3, shuffle_buffer=16)
    first = keys_of(ds)
    ds.set_epoch(1)
    second = keys_of(ds)
    assert first != second and sorted(first) == sorted(second)
    assert len(set(first)) == len(first) == len(ds)


def test_shards_from_an_index_url_and_png_shards(
    converted: Path, tmp_path: Path, sources: dict[str, Source], expected: dict[Key, dict[str, Any]]
) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/wds-{uuid.uuid4().hex}"
    fs.put(str(converted / "wds"), root, recursive=True)
    try:
        assert sorted(keys_of(ShardDataset(f"memory://{root}/index.json"))) == sorted(expected)
    finally:
        fs.rm(root, recursive=True)
    variant = next(p for p in REAL_BUNDLES if p.name == "reacture_1795637148842")
    run_convert(
        [str(variant)],
        Output(str(tmp_path)),
        ConvertOptions(formats=("wds",), wds=WdsOptions(encoding="png")),
        scheduler="sync",
    )
    loader = DataLoader(ShardDataset(tmp_path / "wds" / "index.json"), batch_size=None)
    check_loader(
        loader, {k: v for k, v in expected.items() if k[0] == variant.name}, sources, batched=False
    )


# --- processes ------------------------------------------------------------------------------------
def test_a_pickled_dataset_reopens_its_store(converted: Path) -> None:
    ds = FrameDataset(converted)
    before = ds[100]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._local is None
    after = clone[100]
    assert torch.equal(before["frame"], after["frame"]) and before["keys"].equal(after["keys"])


def test_spawned_workers_read_the_same_samples(converted: Path) -> None:
    ds = FrameDataset(converted, sessions=["reacture_1795637148842"])
    loader = DataLoader(ds, batch_size=64, num_workers=1, multiprocessing_context="spawn")
    frames = torch.cat([b["frame"] for b in loader])
    assert torch.equal(frames, torch.stack([ds[i]["frame"] for i in range(len(ds))]))


def test_the_package_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import reacture_convert, reacture_convert.read.dataset, reacture_convert.read.stats\n"
        "try:\n    import reacture_convert.read.torch\nexcept ImportError:\n    print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "ok"


# --- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda out: FrameDataset(out, dtype="float16"), ConfigError, "unknown frame dtype"),
        (lambda out: FrameDataset(out, sessions=["nope"]), KeyError, "not a converted session"),
        (lambda out: to_pytorch_dataloader(out, source="hdf5"), ConfigError, "unknown source"),
        (
            lambda out: to_pytorch_dataloader(out, source="wds", sessions=["x"]),
            ConfigError,
            "selects Zarr sessions",
        ),
        (lambda out: ShardDataset(out, rank=2, world_size=2), ConfigError, "rank 2 is not"),
        (lambda out: ShardDataset(out / "zarr"), OutputError, "convert with --format wds"),
    ],
    ids=["dtype", "session", "source", "wds-sessions", "rank", "no-index"],
)
def test_bad_arguments_say_what_to_do(
    converted: Path, call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(converted)
