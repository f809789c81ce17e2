"""Chunk reading (issue 16): the default Zarr layout is read straight from the store (one zstd
decode per chunk) and every other layout through zarr-python; either way each chunk holds the
source's frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reacture_convert.output.storage import Output
from reacture_convert.read.chunks import ChunkReader
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.sources.zarr import ZarrSource
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.zarr import ZarrOptions
from tests.helpers.real import REAL_BUNDLES
from tests.helpers.sources import read_source

pytestmark = pytest.mark.zarr_compat  # every layout read, directly and by zarr-python

VARIANT = next(p for p in REAL_BUNDLES if p.name == "reacture_1795637148842")


@pytest.mark.parametrize(
    ("zarr", "direct"),
    [
        (ZarrOptions(), True),
        (ZarrOptions(chunk_frames=50), True),
        (ZarrOptions(codec="lz4"), False),
        (ZarrOptions(codec="none"), False),
        (ZarrOptions(chunk_frames=32, shard_frames=96), True),
    ],
    ids=["default", "chunk-50", "lz4", "none", "sharded"],
)
def test_every_layout_reads_the_source_frames(
    tmp_path: Path, zarr: ZarrOptions, direct: bool
) -> None:
    out = Output(str(tmp_path / "out"))
    run_convert([str(VARIANT)], out, ConvertOptions(zarr=zarr), scheduler="sync")
    frames = read_source(VARIANT).frames
    reader = ChunkReader(out, VARIANT.name)
    assert reader.direct is direct
    chunks = [reader.read(c) for c in range(-(-len(frames) // reader.size))]
    assert np.array_equal(np.concatenate(chunks), frames)  # the last chunk is cut to the end
    source = ZarrSource(out, ReadOptions(), layout="HWC")
    batch = source.fetch(np.arange(len(source))[::-1])
    assert np.array_equal(batch["frame"], frames[::-1])


def test_frame_source_is_a_random_access_source_of_numpy_samples(tmp_path: Path) -> None:
    """The protocol of grain and similar loaders: ``len``, ``source[i]`` (negative counts back),
    IndexError past the end; values are NumPy, frames HWC as stored."""
    out = Output(str(tmp_path / "out"))
    run_convert([str(VARIANT)], out, ConvertOptions(), scheduler="sync")
    frames = read_source(VARIANT).frames
    source = ZarrSource(out)
    assert len(source) == len(frames)
    for i in (0, 100, -1):
        sample = source[i]
        assert isinstance(sample["frame"], np.ndarray) and sample["frame"].shape == (128, 128, 3)
        assert np.array_equal(sample["frame"], frames[i])
        assert sample["frame_index"] == i % len(frames) and sample["session"] == VARIANT.name
        assert isinstance(sample["keys"], np.ndarray) and sample["keys"].shape == (6,)
    with pytest.raises(IndexError, match="out of range"):
        source[len(frames)]


def test_a_local_store_is_decoded_on_the_readers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From local disk a batch's chunks are read and decoded one after another on the reading
    thread: the fetch threads (for an object store's round trips) only cost a local reader its
    hand-offs (a shuffled epoch ~15 % slower, docs/benchmarks.md rows 6)."""
    from reacture_convert.read import chunks

    out = Output(str(tmp_path / "out"))
    run_convert([str(VARIANT)], out, ConvertOptions(), scheduler="sync")

    def no_pool() -> None:
        raise AssertionError("the fetch threads were used for a local store")

    monkeypatch.setattr(chunks, "pool", no_pool)
    source = ZarrSource(out, ReadOptions())
    batch = source.fetch(np.arange(len(source))[::-1])  # every chunk, several groups
    assert np.array_equal(batch["frame"], read_source(VARIANT).frames[::-1])
