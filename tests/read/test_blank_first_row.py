"""Blank means every byte of the frame is zero. A frame black in its first row only (a dark
strip at the edge) or lit in its first row only is a picture: both readers keep it, and the
alignment table and the catalog do not count it as blank. Both readers decide it their own way
(the Zarr reader from the alignment table's ``blank``, which conversion computes; the shard
reader from the decoded pixels), so both are read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.sources.shards import ShardSource
from reacture_convert.read.sources.zarr import ZarrSource
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import FRAME_SHAPE

S = "reacture_1795600000007"
N = 8
FIRST_ROW_BLACK, ALL_BLACK, ONLY_FIRST_ROW_LIT, LAST_ROW_BLACK = 2, 5, 6, 7


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from reacture_convert.testing.synth import BundleSpec, write_bundle

    tmp = tmp_path_factory.mktemp("blank")
    bundle = write_bundle(tmp / "b", BundleSpec(n_frames=N, seed=4, prefix=S))
    frames = np.memmap(
        bundle / f"{S}_frames.npy", np.uint8, "r+", offset=129, shape=(N, *FRAME_SHAPE)
    )
    assert all(frames[i, 0].any() and frames[i, 1:].any() for i in range(N))
    frames[FIRST_ROW_BLACK, 0] = 0
    frames[ALL_BLACK] = 0
    frames[ONLY_FIRST_ROW_LIT, 1:] = 0
    frames[LAST_ROW_BLACK, -1] = 0
    frames.flush()
    stored = np.array(frames)
    del frames
    out = tmp / "out"
    opts = ConvertOptions(formats=("zarr", "wds"))
    assert run_convert([str(bundle)], Output(str(out)), opts, scheduler="sync").ok
    return out, stored


KEPT = [i for i in range(N) if i != ALL_BLACK]


def test_conversion_counts_only_the_all_zero_frame_as_blank(
    converted: tuple[Path, np.ndarray],
) -> None:
    out, _ = converted
    table = pq.read_table(out / "frames" / f"{S}.parquet")
    assert table["blank"].to_pylist() == [i == ALL_BLACK for i in range(N)]
    (entry,) = read_catalog(Output(str(out)))
    assert entry.blank_frames == 1
    assert verify_dataset(Output(str(out)), sources=True) == (1, [])


@pytest.mark.parametrize("reader", [ZarrSource, ShardSource], ids=["zarr", "shards"])
def test_readers_keep_frames_black_or_lit_in_their_first_row_only(
    converted: tuple[Path, np.ndarray], reader: Callable[[str], ZarrSource | ShardSource]
) -> None:
    out, stored = converted
    source = reader(str(out))
    batches = list(source.iter_batches(16))
    got = [i for b in batches for i in b["frame_index"].tolist()]
    assert got == KEPT
    frames = np.concatenate([b["frame"] for b in batches])
    assert np.array_equal(frames, stored[KEPT])
