"""writers.zarr writes, without zarr, exactly the files zarr-python writes, and zarr reads them."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from reacture_convert.output.storage import Output
from reacture_convert.writers.zarr import FRAME_SHAPE, ZarrOptions, ZarrSessionWriter

pytestmark = pytest.mark.zarr_compat  # writer bytes == zarr-python's; zarr reads them

ATTRIBUTES: dict[str, Any] = {
    "session": "s",
    "metadata": {"name": "Zoë ☃", "big": 2**70, "tiny": 1.5e-7, "none": None, "list": [1, 2.5]},
}


def by_zarr(path: Path, frames: np.ndarray, ts: np.ndarray, o: ZarrOptions) -> None:
    """What the converter wrote with zarr-python before (same arrays, options and writes)."""
    n = len(frames)
    o = o.for_output(local=True)  # (a writer given "auto" writes as on local disk)
    group = zarr.open_group(zarr.storage.LocalStore(str(path)), mode="w", zarr_format=3)
    chunk = max(1, min(o.chunk_frames, n))
    shards = None
    if isinstance(o.shard_frames, int):
        shard = max(chunk, min(o.shard_frames, n))
        shards = (chunk * -(-shard // chunk), *FRAME_SHAPE)
    compressors = {
        "zstd": [ZstdCodec(level=o.level)],
        "lz4": [BloscCodec(cname="lz4", clevel=o.level, shuffle="noshuffle")],
        "none": [],
    }[o.codec]
    array = group.create_array(
        "frames",
        shape=(n, *FRAME_SHAPE),
        chunks=(chunk, *FRAME_SHAPE),
        shards=shards,
        dtype="uint8",
        compressors=compressors,
        fill_value=0,
        dimension_names=["frame", "y", "x", "channel"],
        config={"write_empty_chunks": True},
    )
    times = group.create_array(
        "timestamps",
        shape=(len(ts),),
        chunks=(max(1, min(len(ts), 1 << 16)),),
        dtype="float32",
        compressors=[ZstdCodec(level=3)],
        fill_value=0.0,
        dimension_names=["frame"],
    )
    for a in range(0, n, o.block_frames):
        array[a : a + o.block_frames] = frames[a : a + o.block_frames]
    if ts.size:
        times[:] = ts
    group.attrs.put(ATTRIBUTES)


def by_writer(path: Path, frames: np.ndarray, ts: np.ndarray, o: ZarrOptions) -> None:
    w = ZarrSessionWriter(Output(str(path)).keys(str(path)), len(ts), {}, o)
    for a in range(0, len(frames), w.block_frames):
        w.write_frames(a, frames[a : a + w.block_frames])
    w.write_timestamps(ts)
    w.write_attributes(ATTRIBUTES)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(Path(d, f).relative_to(root)): Path(d, f).read_bytes()
        for d, _, names in os.walk(root)
        for f in names
    }


OPTIONS = [
    ZarrOptions(),
    ZarrOptions(chunk_frames=16),
    ZarrOptions(chunk_frames=256, codec="none"),
    ZarrOptions(codec="lz4"),
    ZarrOptions(level=3),
    ZarrOptions(shard_frames=128),
    ZarrOptions(chunk_frames=16, shard_frames=64),
    ZarrOptions(codec="lz4", shard_frames=1024),
]


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 197])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o.chunk_frames}-{o.shard_frames}")
def test_files_equal_zarrs(tmp_path: Path, n: int, options: ZarrOptions) -> None:
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 3, (n, *FRAME_SHAPE), dtype=np.uint8)
    frames[: n // 3] = 0  # blank frames are stored too
    ts = np.arange(n, dtype="<f4") * 100
    by_zarr(tmp_path / "zarr", frames, ts, options)
    by_writer(tmp_path / "ours", frames, ts, options)
    assert files(tmp_path / "ours") == files(tmp_path / "zarr")
    group = zarr.open_group(str(tmp_path / "ours"), mode="r")
    assert np.array_equal(group["frames"][:], frames)
    assert np.array_equal(group["timestamps"][:], ts)
    assert group.attrs.asdict() == ATTRIBUTES


@pytest.mark.parametrize(
    "ts",
    [
        np.zeros(3, "<f4"),  # a chunk of fill values only: zarr leaves it out
        -np.zeros(3, "<f4"),  # -0.0 is not the fill value, bit for bit: written
        np.arange((1 << 16) + 5, dtype="<f4"),  # two chunks, the second padded
    ],
    ids=["zeros", "negative-zeros", "two-chunks"],
)
def test_timestamps_equal_zarrs(tmp_path: Path, ts: np.ndarray) -> None:
    no_frames = np.zeros((0, *FRAME_SHAPE), np.uint8)  # (written by neither: only the timestamps)
    by_zarr(tmp_path / "zarr", no_frames, ts, ZarrOptions())
    by_writer(tmp_path / "ours", no_frames, ts, ZarrOptions())
    ours, theirs = files(tmp_path / "ours"), files(tmp_path / "zarr")
    assert {k: v for k, v in ours.items() if k.startswith("timestamps")} == {
        k: v for k, v in theirs.items() if k.startswith("timestamps")
    }


def test_a_block_that_is_not_a_chunk_is_refused(tmp_path: Path) -> None:
    w = ZarrSessionWriter(Output(str(tmp_path)).keys(str(tmp_path / "z")), 100, {}, ZarrOptions())
    with pytest.raises(ValueError, match="not one block"):
        w.write_frames(10, np.zeros((64, *FRAME_SHAPE), np.uint8))


@pytest.mark.parametrize("n", [1, 100, 197])
def test_shard_chunks_encoded_in_any_order_on_threads_give_zarrs_files(
    tmp_path: Path, n: int
) -> None:
    """Blocks are one chunk even when sharded; a shard's object is stored once its last chunk
    is encoded, whatever the order and the threads, with zarr-python's bytes."""
    options = ZarrOptions(chunk_frames=16, shard_frames=64)
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 3, (n, *FRAME_SHAPE), dtype=np.uint8)
    ts = np.arange(n, dtype="<f4") * 100
    by_zarr(tmp_path / "zarr", frames, ts, options)
    w = ZarrSessionWriter(Output(str(tmp_path)).keys(str(tmp_path / "ours")), n, {}, options)
    size = w.block_frames
    assert size == min(16, n)  # a chunk (a session shorter than one: the session)
    starts = rng.permutation(np.arange(0, n, size)).tolist()
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda a: w.encode_block(a, frames[a : a + size]), starts))
    objects = [key for objs in made for key, _ in objs]
    assert sorted(objects) == [f"frames/c/{s}/0/0/0" for s in range(-(-n // 64))]  # once each
    for objs in made:
        w.put(objs)
    w.write_timestamps(ts)
    w.write_attributes(ATTRIBUTES)
    assert files(tmp_path / "ours") == files(tmp_path / "zarr")


def test_a_chunk_given_twice_before_its_shard_is_complete_is_refused(tmp_path: Path) -> None:
    options = ZarrOptions(chunk_frames=16, shard_frames=64)
    w = ZarrSessionWriter(Output(str(tmp_path)).keys(str(tmp_path / "z")), 100, {}, options)
    block = np.zeros((16, *FRAME_SHAPE), np.uint8)
    assert w.encode_block(16, block) == []  # the shard waits for its other chunks
    with pytest.raises(ValueError, match="written already"):
        w.encode_block(16, block)
