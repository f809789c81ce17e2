"""PyTorch readers (issues 6, 16): DataLoaders with 2 workers over the Zarr store and over the
shards yield every sample of the real fixtures once, each equal to its source bundle at that
frame index, with blank frames skipped by default and kept on request; batches have the
documented shapes and dtypes; the Zarr reader's chunk-aware shuffle and the shards split across
workers and ranks without duplicates or loss; flip and float frames; the package imports
without torch."""

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
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.torch import (
    ChunkBatchSampler,
    FrameDataset,
    ShardDataset,
    consumer_range,
    to_pytorch_dataloader,
)
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.expect import (
    DEFAULT,
    SCALARS,
    VECTORS,
    Expected,
    Key,
    Want,
    keys_of,
    sample_keys,
    unbatch,
)
from tests.helpers.real import REAL_BUNDLES, convert_real_bundles
from tests.helpers.sources import Source, read_source

SHARDS = 5
VARIANT = "reacture_1795637148842"  # the only real recording whose frames are not all black
MODES = [Want(), Want(skip_blank=False)]
MODE_IDS = ["skip-blank", "keep-blank"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every real fixture converted once for this module: Zarr + Parquet and 5 shards."""
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=SHARDS))
    return convert_real_bundles(tmp_path_factory.mktemp("torch") / "out", options)


@pytest.fixture(scope="module")
def sources() -> dict[str, Source]:
    return {p.name: read_source(p) for p in REAL_BUNDLES}


@pytest.fixture(scope="module")
def expected(sources: dict[str, Source]) -> Expected:
    return Expected(sources)


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
    assert batch["frame"].is_contiguous()
    assert batch["keys"].shape == (b, 6) and batch["keys"].dtype == torch.float32
    assert batch["actions"].shape == (b, 4) and batch["actions"].dtype == torch.float32
    for name in SCALARS:
        assert batch[name].shape == (b, 1) and batch[name].dtype == torch.float32
    for name in VECTORS:
        assert batch[name].shape == (b, 3) and batch[name].dtype == torch.float32
    for name in ("frame_timestamp_ms", "timestamp_ms"):
        assert batch[name].shape == (b,) and batch[name].dtype == torch.float64
    assert batch["frame_index"].shape == (b,) and batch["frame_index"].dtype == torch.int64
    assert all(isinstance(s, str) for s in batch["session"])
    return b


def check_loader(
    loader: Iterable[dict[str, Any]],
    expected: Expected,
    want: Want = DEFAULT,
    batched: bool = True,
) -> list[Key]:
    """The loader yields each expected sample once, equal to its source; returns the keys in
    the order they came."""
    seen: list[Key] = []
    for batch in loader:
        if batched:
            check_batch_layout(batch)
        for sample in unbatch(batch) if batched else [batch]:
            seen.append(expected.check(sample, want, chw=True))
    keys = sample_keys(expected.sources, want)
    assert len(seen) == len(set(seen)) == len(keys)
    assert set(seen) == set(keys)
    return seen


# --- every sample, through workers ----------------------------------------------------------------
@pytest.mark.parametrize("want", MODES, ids=MODE_IDS)
def test_zarr_loader_with_2_workers_yields_every_sample_as_in_its_bundle(
    converted: Path, expected: Expected, want: Want
) -> None:
    """A plain DataLoader with batch_size (the dataset's __getitems__ + default collate)."""
    ds = FrameDataset(converted, **want.kwargs())
    check_loader(DataLoader(ds, batch_size=32, num_workers=2), expected, want)


@pytest.mark.parametrize("want", MODES, ids=MODE_IDS)
def test_shard_loader_with_2_workers_yields_every_sample_as_in_its_bundle(
    converted: Path, expected: Expected, want: Want
) -> None:
    ds = ShardDataset(converted, **want.kwargs())
    check_loader(DataLoader(ds, batch_size=32, num_workers=2), expected, want)


@pytest.mark.parametrize("want", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("source", ["zarr", "wds"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_to_pytorch_dataloader_yields_each_sample_once_with_2_workers(
    converted: Path, expected: Expected, want: Want, source: str, shuffle: bool
) -> None:
    loader = to_pytorch_dataloader(
        converted, batch_size=64, shuffle=shuffle, num_workers=2, source=source, **want.kwargs()
    )
    seen = check_loader(loader, expected, want)
    if not shuffle and source == "zarr":
        assert seen == sample_keys(expected.sources, want)  # in order, sessions by name


def test_blank_frames_are_skipped_by_default_and_counted(
    converted: Path, expected: Expected, caplog: pytest.LogCaptureFixture
) -> None:
    blank = sum(
        1
        for src in expected.sources.values()
        for f in range(len(src.timestamps))
        if not src.frames[f].any()
    )
    assert blank > 0  # the real fixtures have all-black sessions
    with caplog.at_level("WARNING", logger="reacture_convert.read"):
        zarr_ds = FrameDataset(converted)
        shard_ds = ShardDataset(converted)
    assert zarr_ds.skipped_blank == shard_ds.skipped_blank == blank
    assert zarr_ds.dropped_windows == shard_ds.dropped_windows == 0
    assert (
        len(zarr_ds)
        == len(shard_ds)
        == sum(len(s.timestamps) for s in expected.sources.values()) - blank
    )
    said = [r.getMessage() for r in caplog.records if "blank" in r.getMessage()]
    assert len(said) == 2 and all(f"skipping {blank} blank" in m for m in said)
    assert FrameDataset(converted, skip_blank=False).skipped_blank == 0


# --- chunk-aware shuffling ------------------------------------------------------------------------
def test_chunk_aware_shuffle_varies_with_seed_and_epoch_and_loses_nothing(converted: Path) -> None:
    ds = FrameDataset(converted, skip_blank=False)
    sampler = ChunkBatchSampler(ds, 16, shuffle=True, seed=1)
    first = [i for batch in sampler for i in batch]
    assert first == [i for batch in sampler for i in batch]  # same seed and epoch: same order
    sampler.set_epoch(1)
    second = [i for batch in sampler for i in batch]
    other_seed = [i for b in ChunkBatchSampler(ds, 16, shuffle=True, seed=2) for i in b]
    for order in (first, second, other_seed):
        assert sorted(order) == list(range(len(ds)))
    assert len({tuple(first), tuple(second), tuple(other_seed)}) == 3
    assert first != sorted(first)


def test_a_shuffled_batch_draws_from_a_window_of_chunks(converted: Path) -> None:
    """With a window of w chunks, every batch of the (single-worker) order draws from at most
    2 w chunks (a batch can straddle two windows), not from a chunk per sample."""
    ds = FrameDataset(converted, skip_blank=False)
    chunk_of = ds.source.chunk_of()
    for batch in ChunkBatchSampler(ds, 32, shuffle=True, window=2):
        assert len(set(chunk_of[batch].tolist())) <= 4


@pytest.mark.parametrize("world", [2, 3], ids=["2-ranks", "3-ranks"])
def test_zarr_ranks_share_the_samples_like_distributed_sampler(converted: Path, world: int) -> None:
    """Each rank gets ceil(n / world) samples; together every sample, and only the first few
    repeated to pad (as DistributedSampler pads)."""
    ds = FrameDataset(converted, skip_blank=False)
    n = len(ds)
    seen: list[int] = []
    for rank in range(world):
        sampler = ChunkBatchSampler(ds, 16, shuffle=True, seed=5, rank=rank, world_size=world)
        mine = [i for batch in sampler for i in batch]
        assert len(mine) == -(-n // world) and len(sampler) == -(-len(mine) // 16)
        seen += mine
    assert set(seen) == set(range(n)) and len(seen) - n == -n % world


# --- frame options --------------------------------------------------------------------------------
def test_flip_and_float32_give_right_way_up_scaled_frames(
    converted: Path, expected: Expected
) -> None:
    """Over the variant bundle (the only one whose frames are not all black)."""
    want = Want(flip=True)
    zarr_ds = FrameDataset(converted, [VARIANT], flip=True, dtype="float32")
    shard_ds = ShardDataset(converted, [VARIANT], flip=True, dtype="float32")
    n = 0
    for sample in shard_ds:
        assert sample["frame"].dtype == torch.float32
        expected.check(sample, want, chw=True)
        n += 1
    assert n == len(zarr_ds) == len(expected.sources[VARIANT].frames)
    for i in range(len(zarr_ds)):
        sample = zarr_ds[i]
        expected.check(sample, want, chw=True)
        assert 0.0 <= float(sample["frame"].min()) and float(sample["frame"].max()) <= 1.0


def test_default_keeps_the_stored_bottom_up_bytes(
    converted: Path, sources: dict[str, Source]
) -> None:
    ds = FrameDataset(converted, sessions=[VARIANT])
    frame = sources[VARIANT].frames[40]
    assert torch.equal(ds[40]["frame"], torch.from_numpy(frame.transpose(2, 0, 1).copy()))
    assert not np.array_equal(frame, frame[::-1])  # the variant's frames are not symmetric


def test_a_list_of_indices_reads_a_whole_batch(converted: Path, expected: Expected) -> None:
    ds = FrameDataset(converted, skip_blank=False)
    picked = [len(ds) - 1, 0, 200, 17]
    batch = ds[picked]
    check_batch_layout(batch)
    assert keys_of(unbatch(batch)) == [ds.locate(i) for i in picked]
    for sample in unbatch(batch):
        expected.check(sample, Want(skip_blank=False), chw=True)


# --- splitting shards -----------------------------------------------------------------------------
@pytest.mark.parametrize("world", [2, 4], ids=["2-ranks", "4-ranks"])
def test_shards_split_across_workers_and_ranks_without_duplicates_or_loss(
    converted: Path, expected: Expected, world: int
) -> None:
    """2 workers on each of ``world`` simulated ranks: 4 or 8 consumers (more than the 5
    shards) each read an equal share of the samples."""
    seen: list[Key] = []
    for rank in range(world):
        ds = ShardDataset(converted, rank=rank, world_size=world, skip_blank=False)
        mine = keys_of(DataLoader(ds, batch_size=None, num_workers=2))
        assert mine, f"rank {rank} got nothing"
        seen += mine
    want = sample_keys(expected.sources, Want(skip_blank=False))
    assert len(seen) == len(set(seen)) and set(seen) == set(want)


@given(total=st.integers(0, 500), consumers=st.integers(1, 12))
def test_consumer_ranges_give_every_sample_to_exactly_one_consumer(
    total: int, consumers: int
) -> None:
    ranges = [consumer_range(total, c, consumers) for c in range(consumers)]
    assert [a for a, _ in ranges] == [0, *(b for _, b in ranges[:-1])]
    assert ranges[-1][1] == total
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_rank_and_world_come_from_torch_distributed(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    ds = ShardDataset(converted)
    assert ds.consumer(0, 2) == (2, 4)
    loader = to_pytorch_dataloader(converted, batch_size=8, source="zarr")
    assert isinstance(loader.sampler, ChunkBatchSampler)
    assert loader.sampler.rank == 1 and loader.sampler.world_size == 2


def test_shuffled_shards_change_order_with_the_epoch_and_lose_nothing(converted: Path) -> None:
    ds = ShardDataset(converted, shuffle=True, seed=3, shuffle_buffer=16)
    first = keys_of(ds)
    ds.set_epoch(1)
    second = keys_of(ds)
    assert first != second and sorted(first) == sorted(second)
    assert len(set(first)) == len(first) == len(ds)


@pytest.mark.parametrize("source", ["zarr", "wds"])
def test_the_loaders_set_epoch_reshuffles_either_source(converted: Path, source: str) -> None:
    """``loader.set_epoch(e)``, as the README's training loop calls it, whatever the source."""
    loader = to_pytorch_dataloader(converted, batch_size=8, shuffle=True, source=source)

    def epoch(e: int) -> list[tuple[str, int]]:
        loader.set_epoch(e)
        return [
            (s, int(i))
            for batch in loader
            for s, i in zip(batch["session"], batch["frame_index"].tolist(), strict=True)
        ]

    first, second, again = epoch(0), epoch(1), epoch(0)
    assert first != second and sorted(first) == sorted(second)
    assert again == first  # the epoch, not the call count, decides the order


def test_set_epoch_refuses_persistent_workers_over_shards(converted: Path) -> None:
    loader = to_pytorch_dataloader(
        converted, batch_size=8, shuffle=True, source="wds", num_workers=1, persistent_workers=True
    )
    loader.set_epoch(0)
    next(iter(loader))  # the worker starts, with epoch 0
    with pytest.raises(ConfigError, match="persistent_workers=False"):
        loader.set_epoch(1)


@pytest.mark.parametrize("encoding", ["png", "webp"])
def test_shards_from_an_index_url_and_image_shards(
    converted: Path, tmp_path: Path, expected: Expected, encoding: str
) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/wds-{uuid.uuid4().hex}"
    fs.put(str(converted / "wds"), root, recursive=True)
    try:
        from_url = ShardDataset(f"memory://{root}/index.json")
        assert from_url.skipped_blank is None  # no alignment tables beside an index URL
        assert sorted(keys_of(from_url)) == sorted(sample_keys(expected.sources))
    finally:
        fs.rm(root, recursive=True)
    variant = next(p for p in REAL_BUNDLES if p.name == VARIANT)
    run_convert(
        [str(variant)],
        Output(str(tmp_path)),
        ConvertOptions(formats=("wds",), wds=WdsOptions(encoding=encoding)),
        scheduler="sync",
    )
    index = ShardDataset(tmp_path / "wds" / "index.json")
    assert index.source.index.encoding == encoding
    loader = DataLoader(index, batch_size=None)
    seen = [expected.check(s, Want(), chw=True) for s in loader]
    assert seen == sample_keys({VARIANT: expected.sources[VARIANT]})


# --- processes ------------------------------------------------------------------------------------
def test_a_pickled_dataset_reopens_its_store(converted: Path) -> None:
    ds = FrameDataset(converted)
    before = ds[100]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.source._local is None
    after = clone[100]
    assert torch.equal(before["frame"], after["frame"]) and before["keys"].equal(after["keys"])


def test_spawned_workers_read_the_same_samples(converted: Path) -> None:
    ds = FrameDataset(converted, sessions=[VARIANT])
    loader = DataLoader(ds, batch_size=64, num_workers=1, multiprocessing_context="spawn")
    frames = torch.cat([b["frame"] for b in loader])
    assert torch.equal(frames, torch.stack([ds[i]["frame"] for i in range(len(ds))]))


def test_a_worker_batch_arrives_as_one_shared_block_and_a_plain_dict(converted: Path) -> None:
    loader = to_pytorch_dataloader(converted, batch_size=16, num_workers=1)
    batch = next(iter(loader))
    assert type(batch) is dict
    blocks = {v.untyped_storage().data_ptr() for v in batch.values() if isinstance(v, torch.Tensor)}
    assert len(blocks) == 1 and batch["frame"].is_shared()


def test_the_package_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['tensorflow'] = None\n"
        "import reacture_convert, reacture_convert.read.dataset, reacture_convert.read.stats\n"
        "import reacture_convert.read.sources.zarr, reacture_convert.read.sources.shards\n"
        "try:\n    import reacture_convert.read.torch\nexcept ImportError:\n    print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "ok"


# --- bad arguments --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wds_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wds-only") / "out"
    run_convert(
        [str(REAL_BUNDLES[0])], Output(str(out)), ConvertOptions(formats=("wds",)), scheduler="sync"
    )
    return out


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda out: FrameDataset(out, dtype="float16"), ConfigError, "unknown frame dtype"),
        (lambda out: FrameDataset(out, sessions=["nope"]), ConfigError, "is not a session of"),
        (lambda out: ShardDataset(out, sessions=["nope"]), ConfigError, "is not a session of"),
        (lambda out: to_pytorch_dataloader(out, source="hdf5"), ConfigError, "unknown source"),
        (
            lambda out: to_pytorch_dataloader(out, sampler=[0]),
            ConfigError,
            "makes its own sampler",
        ),
        (lambda out: ShardDataset(out, rank=2, world_size=2), ConfigError, "rank 2 is not"),
        (lambda out: ShardDataset(out / "zarr"), OutputError, "convert with --format wds"),
        (lambda out: FrameDataset(out, history=-1), ConfigError, "history=-1"),
        (
            lambda out: FrameDataset(out, split="train", split_fractions=(0.5, 0.2, 0.2)),
            ConfigError,
            "add up to 1",
        ),
        (lambda out: FrameDataset(out, split="dev"), ConfigError, "unknown split"),
        (
            lambda out: to_pytorch_dataloader(out, sessions=["reacture_1795637238001"]),
            OutputError,
            "no samples to read",
        ),
    ],
    ids=[
        "dtype",
        "session",
        "wds-session",
        "source",
        "sampler",
        "rank",
        "no-index",
        "history",
        "fractions",
        "split",
        "all-blank",
    ],
)
def test_bad_arguments_say_what_to_do(
    converted: Path, call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(converted)


def test_a_wds_only_dataset_says_to_use_the_shards(wds_only: Path) -> None:
    with pytest.raises(
        OutputError, match="has no Zarr sessions: convert with --format zarr or use source='wds'"
    ):
        to_pytorch_dataloader(wds_only, source="zarr")
    loader = to_pytorch_dataloader(wds_only, source="wds", batch_size=8, skip_blank=False)
    assert sum(len(b["session"]) for b in loader) == len(read_source(REAL_BUNDLES[0]).timestamps)


def test_torch_data_is_the_old_name_of_read_torch() -> None:
    """README: ``reacture_convert.torch_data`` is the old name of ``read.torch``."""
    import reacture_convert.read.torch as new
    import reacture_convert.torch_data as old

    assert old.__all__ == new.__all__
    assert all(getattr(old, name) is getattr(new, name) for name in new.__all__)
