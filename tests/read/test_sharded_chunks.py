"""Sharded Zarr read straight from the store (issue 23): the chunk reader reads a shard's chunk
index once, then chunks of one shard whose bytes are adjacent with one ranged request, and
decodes them itself. Checked against zarr-python's reading of the same arrays, over a real
S3-compatible server (moto, over HTTP through the counting proxy) for the requests, and with
damaged shard indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest
import zarr

from reacture_convert.errors import OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.chunks import ChunkReader, plan_requests, read_chunks
from reacture_convert.read.session import open_session
from reacture_convert.read.torch import to_pytorch_dataloader
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec
from reacture_convert.writers.zarr import ZarrOptions
from tests.helpers.loaders import loader_samples
from tests.helpers.s3 import S3
from tests.helpers.synth import convert_synth

CHUNK, SHARD, FRAMES = 16, 64, 150  # shards of 4, 4 and 2 chunks (the last one cut short)
SHARDED = ConvertOptions(zarr=ZarrOptions(chunk_frames=CHUNK, shard_frames=SHARD))
SPECS = [BundleSpec(n_frames=FRAMES, seed=i, prefix=f"reacture_17957100000{i:02d}") for i in (0, 1)]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_synth(tmp_path_factory.mktemp("sharded"), SPECS, SHARDED)


@pytest.fixture(scope="module")
def bucket(
    moto_s3: S3, local: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Output, LatencyProxy]]:
    """The sharded dataset in ``datasets/sharded``, the same bundles unsharded beside it."""
    plain = ConvertOptions(zarr=ZarrOptions(chunk_frames=CHUNK))
    unsharded = convert_synth(tmp_path_factory.mktemp("unsharded"), SPECS, plain)
    moto_s3.fs.put(str(local), "datasets/sharded", recursive=True)
    moto_s3.fs.put(str(unsharded), "datasets/unsharded", recursive=True)
    with LatencyProxy(moto_s3.endpoint, delay=0.02) as proxy:
        options = {"client_kwargs": {"endpoint_url": proxy.url}}
        yield Output("s3://datasets/sharded", options), proxy


def _chunks(reader: ChunkReader) -> list[int]:
    return list(range(-(-reader.n_frames // reader.size)))


def test_a_sharded_session_is_read_directly_and_equals_zarr_python(local: Path) -> None:
    out = Output(str(local))
    for spec in SPECS:
        reader = ChunkReader(out, spec.prefix)
        assert reader.direct and reader.sharded and reader.per_object == SHARD // CHUNK
        every = read_chunks([(reader, c) for c in _chunks(reader)])
        assert [len(b) for b in every] == [CHUNK] * 9 + [FRAMES - 9 * CHUNK]
        assert np.array_equal(np.concatenate(every), open_session(out, spec.prefix).frames[:])
        for c in (9, 0, 5):  # one at a time too, in any order
            assert np.array_equal(reader.read(c), reader.read_zarr(c))


def test_adjacent_chunks_of_a_shard_are_one_request_in_the_order_first_needed(
    local: Path,
) -> None:
    reader = ChunkReader(Output(str(local)), SPECS[0].prefix)
    other = ChunkReader(Output(str(local)), SPECS[1].prefix)
    wanted = [(reader, 5), (reader, 1), (other, 1), (reader, 0), (reader, 3), (reader, 9)]
    wanted += [(reader, 8), (reader, 4), (other, 2)]
    groups = plan_requests(wanted)
    assert groups == [[7, 0], [3, 1], [2, 8], [4], [6, 5]]  # by offset within a request
    for group in groups:  # one shard each, chunks one after another
        chunks = [wanted[i][1] for i in group]
        assert len({wanted[i][0].object_of(c) for i, c in zip(group, chunks, strict=True)}) == 1
        assert chunks == list(range(chunks[0], chunks[0] + len(chunks)))
    assert plan_requests(wanted, most_bytes=reader.chunk_bytes) == [[i] for i in range(9)]


def test_unsharded_chunks_are_one_request_each(tmp_path: Path) -> None:
    out = convert_synth(tmp_path, SPECS[:1], ConvertOptions(zarr=ZarrOptions(chunk_frames=CHUNK)))
    reader = ChunkReader(Output(str(out)), SPECS[0].prefix)
    assert not reader.sharded and reader.direct
    assert plan_requests([(reader, c) for c in (2, 1, 0)]) == [[0], [1], [2]]


def test_a_shard_index_not_the_converters_is_read_through_zarr_python(tmp_path: Path) -> None:
    """A shard index at the start of the shard (zarr-python's option): not read directly."""
    out = convert_synth(tmp_path, SPECS[:1], SHARDED)
    name = SPECS[0].prefix
    frames = open_session(Output(str(out)), name).frames[:]
    group = zarr.open_group(str(out / "zarr" / f"{name}.zarr"), mode="a")
    del group["frames"]
    array = group.create_array(
        "frames",
        shape=frames.shape,
        dtype="uint8",
        chunks=(CHUNK, *frames.shape[1:]),
        shards={"shape": (SHARD, *frames.shape[1:]), "index_location": "start"},
    )
    array[:] = frames
    reader = ChunkReader(Output(str(out)), name)
    assert reader.sharded and not reader.direct
    every = read_chunks([(reader, c) for c in _chunks(reader)])
    assert np.array_equal(np.concatenate(every), frames)


def test_reading_every_chunk_from_a_bucket_is_two_requests_a_shard(
    bucket: tuple[Output, LatencyProxy], local: Path
) -> None:
    out, proxy = bucket
    name = SPECS[0].prefix
    proxy.traffic.reset()
    reader = ChunkReader(out, name)
    proxy.traffic.reset()  # (opening the group reads its metadata)
    every = read_chunks([(reader, c) for c in _chunks(reader)])
    shards = -(-FRAMES // SHARD)
    assert proxy.traffic.gets("/frames/c/") == 2 * shards  # its index, then its chunks
    stored = sum(p.stat().st_size for p in (local / "zarr" / f"{name}.zarr/frames/c").rglob("*"))
    assert proxy.traffic.bytes <= stored
    assert np.array_equal(np.concatenate(every), open_session(Output(str(local)), name).frames[:])


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_from_a_bucket_is_the_one_on_local_disk_in_fewer_requests(
    bucket: tuple[Output, LatencyProxy], local: Path, workers: int
) -> None:
    out, proxy = bucket
    kw: dict[str, Any] = {"num_workers": workers, "seed": 4}
    requests = {}
    for url in (out.url, out.url.replace("sharded", "unsharded")):
        remote = to_pytorch_dataloader(url, 16, True, storage_options=out.storage_options, **kw)
        proxy.traffic.reset()
        got = loader_samples(remote)
        requests[url] = proxy.traffic.gets("/frames/c/")
        assert got == loader_samples(to_pytorch_dataloader(str(local), 16, True, **kw))
    sharded, unsharded = requests.values()
    assert sharded < unsharded  # chunks of a shard fetched together


def _rewrite_index(shard: Path, change: Any) -> None:
    """Shard file ``shard`` with its chunk index changed by ``change`` (its crc32c made to fit)."""
    data = bytearray(shard.read_bytes())
    size = 16 * (SHARD // CHUNK)
    index = np.frombuffer(bytes(data[-size - 4 : -4]), "<u8").reshape(-1, 2).copy()
    change(index)
    raw = index.astype("<u8").tobytes()
    data[-size - 4 :] = raw + google_crc32c.value(raw).to_bytes(4, "little")
    shard.write_bytes(bytes(data))


def _flip_crc(shard: Path) -> None:
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))


def _bigger(index: np.ndarray) -> None:
    index[1, 1] = 1 << 40


def _past_the_end(index: np.ndarray) -> None:
    index[1, 0] += 1 << 20


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_flip_crc, "fails its crc32c check"),
        (lambda p: p.write_bytes(p.read_bytes()[:20]), "the shard holds 20"),
        (lambda p: _rewrite_index(p, _bigger), "more than"),
        (lambda p: _rewrite_index(p, _past_the_end), "places chunks 1..1"),
    ],
    ids=["crc", "truncated", "chunk-too-big", "chunk-past-the-end"],
)
def test_a_damaged_shard_index_is_a_clear_error(tmp_path: Path, damage: Any, message: str) -> None:
    out = convert_synth(tmp_path, SPECS[:1], SHARDED)
    name = SPECS[0].prefix
    damage(out / "zarr" / f"{name}.zarr" / "frames" / "c" / "0" / "0" / "0" / "0")
    reader = ChunkReader(Output(str(out)), name)
    with pytest.raises(OutputError, match=message) as caught:
        read_chunks([(reader, 1)])
    assert "frames/c/0/0/0/0" in str(caught.value) and "convert the session again" in str(
        caught.value
    )
    assert np.array_equal(reader.read(5), reader.read_zarr(5))  # the other shards still read


def test_a_second_loader_with_the_cache_fetches_nothing(
    bucket: tuple[Output, LatencyProxy], local: Path, tmp_path: Path
) -> None:
    """Chunks are cached one by one, and a process that finds them all in ``cache_dir`` asks
    for no shard index either (fresh workers each epoch: not persistent)."""
    out, proxy = bucket
    kw: dict[str, Any] = {"num_workers": 2, "seed": 1, "cache_dir": str(tmp_path / "cache")}
    options = out.storage_options
    proxy.traffic.reset()
    first = loader_samples(to_pytorch_dataloader(out.url, 16, True, storage_options=options, **kw))
    assert proxy.traffic.gets("/frames/c/") > 0
    proxy.traffic.reset()
    second = loader_samples(to_pytorch_dataloader(out.url, 16, True, storage_options=options, **kw))
    assert proxy.traffic.gets("/frames/c/") == 0
    assert (
        first
        == second
        == loader_samples(to_pytorch_dataloader(str(local), 16, True, seed=1, num_workers=2))
    )
