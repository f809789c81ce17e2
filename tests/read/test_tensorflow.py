"""TensorFlow reader (issue 18): over the real recordings, the tf.data batches equal the PyTorch
batches (frames transposed, in the same order, epoch after epoch), hold every sample once per
epoch, and each sample equals its source; ``open_dataset(OUT)`` and its sessions give the game
loader's API for both frameworks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow  # noqa: F401  (these tests need it: they fail, not skip, without it)
import torch
from torch.utils.data import DataLoader

import reacture_convert
from reacture_convert.read.tensorflow import to_tensorflow_dataset
from reacture_convert.read.torch import ShardDataset, to_pytorch_dataloader
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.expect import Expected, Key, Want, sample_keys, unbatch
from tests.helpers.real import REAL_BUNDLES, convert_real_bundles
from tests.helpers.sources import read_source

VARIANT = "reacture_1795637148842"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=3))
    return convert_real_bundles(tmp_path_factory.mktemp("tf") / "out", options)


@pytest.fixture(scope="module")
def expected() -> Expected:
    return Expected({p.name: read_source(p) for p in REAL_BUNDLES})


def tf_batches(dataset: Any) -> list[dict[str, Any]]:
    """One pass over a tf.data.Dataset as NumPy, sessions as str."""
    out = []
    for batch in dataset:
        values = {k: v.numpy() for k, v in batch.items()}
        values["session"] = [s.decode() for s in values["session"]]
        out.append(values)
    return out


def torch_batches(loader: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v.numpy() if isinstance(v, torch.Tensor) else list(v) for k, v in b.items()}
        for b in loader
    ]


def assert_same_batches(tf_side: list[dict[str, Any]], torch_side: list[dict[str, Any]]) -> None:
    assert len(tf_side) == len(torch_side) > 0
    for a, b in zip(tf_side, torch_side, strict=True):
        assert a.keys() == b.keys()
        frames = a["frame"]
        assert np.array_equal(np.moveaxis(frames, -1, -3), b["frame"])  # HWC -> CHW
        for key in a.keys() - {"frame"}:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


@pytest.mark.parametrize(
    "want",
    [Want(), Want(skip_blank=False), Want(history=2, horizon=1, flip=True)],
    ids=["default", "keep-blank", "windows-flip"],
)
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_tf_batches_equal_the_torch_batches_from_zarr(
    converted: Path, expected: Expected, want: Want, shuffle: bool
) -> None:
    dataset = to_tensorflow_dataset(converted, 32, shuffle, seed=4, **want.kwargs())
    loader = to_pytorch_dataloader(converted, 32, shuffle, seed=4, **want.kwargs())
    for epoch in range(2):
        loader.set_epoch(epoch)
        tf_side = tf_batches(dataset)  # each pass is the next epoch
        assert_same_batches(tf_side, torch_batches(loader))
        seen: list[Key] = []
        for batch in tf_side:
            assert batch["frame"].shape[-3:] == (128, 128, 3)
            seen += [expected.check(s, want, chw=False) for s in unbatch(batch)]
        assert sorted(seen) == sorted(sample_keys(expected.sources, want))
        assert len(set(seen)) == len(seen)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_tf_batches_equal_the_torch_batches_from_shards(
    converted: Path, expected: Expected, shuffle: bool
) -> None:
    dataset = to_tensorflow_dataset(converted, 16, shuffle, source="wds", seed=2, dtype="float32")
    shards = ShardDataset(converted, shuffle=shuffle, seed=2, batch_size=16, dtype="float32")
    loader = DataLoader(shards, batch_size=None)
    tf_side = tf_batches(dataset)
    assert tf_side[0]["frame"].dtype == np.float32
    assert_same_batches(tf_side, torch_batches(loader))
    seen = [expected.check(s, Want(), chw=False) for b in tf_side for s in unbatch(b)]
    assert sorted(seen) == sorted(sample_keys(expected.sources))


def test_the_game_loader_api_runs_on_a_converted_dataset(
    converted: Path, expected: Expected
) -> None:
    """The snippet of ReActure's documentation with its first line replaced."""
    dataset = reacture_convert.open_dataset(converted)
    n = 0
    for i, sample in enumerate(dataset):
        frame = sample["frame"]  # NumPy (128, 128, 3)
        timestamp = sample["frame_timestamp_ms"]
        battery = sample["battery"]
        assert isinstance(frame, np.ndarray) and frame.shape == (128, 128, 3)
        assert float(timestamp) == float(
            expected.sources[sample["session"]].timestamps[sample["frame_index"]]
        )
        assert battery.shape == (1,)
        n = i + 1
    assert n == len(sample_keys(expected.sources))

    dataloader = dataset.to_pytorch_dataloader(batch_size=32, shuffle=True)
    for batch in dataloader:
        frames = batch["frame"]  # (32, 3, 128, 128), CHW
        keys = batch["keys"]  # (32, 6)
        battery = batch["battery"]  # (32, 1)
        assert frames.shape[1:] == (3, 128, 128) and keys.shape[1:] == (6,)
        assert battery.shape[1:] == (1,)

    tf_dataset = dataset.to_tensorflow_dataset(batch_size=32)
    for batch in tf_dataset:
        frames = batch["frame"]  # (32, 128, 128, 3), HWC
        keys = batch["keys"]  # (32, 6)
        assert tuple(frames.shape[1:]) == (128, 128, 3) and tuple(keys.shape[1:]) == (6,)


def test_a_session_iterates_its_own_samples_with_the_batch_keys(
    converted: Path, expected: Expected
) -> None:
    dataset = reacture_convert.open_dataset(converted)
    session = dataset[VARIANT]
    samples = list(session)
    assert [s["frame_index"] for s in samples] == list(
        range(len(expected.sources[VARIANT].timestamps))
    )
    for s in samples:
        expected.check(s, Want(), chw=False)
    batch = next(iter(session.to_tensorflow_dataset(batch_size=4)))
    assert set(batch) == set(samples[0])
    torch_batch = next(iter(session.to_pytorch_dataloader(batch_size=4)))
    assert set(torch_batch) == set(samples[0])
    blank = dataset["reacture_1795637238001"]
    assert list(blank) == []  # all its frames are blank
    assert len(list(blank.iter_samples(skip_blank=False))) == 92


def test_the_package_imports_without_tensorflow() -> None:
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import reacture_convert, reacture_convert.read.torch\n"
        "try:\n    import reacture_convert.read.tensorflow as t; t.to_tensorflow_dataset('x')\n"
        "except ImportError:\n    print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "ok"
