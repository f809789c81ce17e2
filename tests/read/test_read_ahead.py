"""Read-ahead from an object store (issue 23): the batch sampler tells each DataLoader worker
which samples its next batches hold, and ``chunks.ChunkAhead`` requests their chunks while the
current batch is decoded, within a bound on requests in flight and bytes held. Checked over a
real S3-compatible server (moto, over HTTP through a counting proxy that adds latency): chunks
of later batches are requested before those batches are read, no chunk is fetched twice, the
bounds hold, and the samples are those of local disk."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reacture_convert.output.storage import Output
from reacture_convert.read.chunks import ChunkAhead, ChunkReader
from reacture_convert.read.torch import (
    AHEAD_BATCHES,
    AHEAD_EVERY,
    BatchIds,
    ChunkBatchSampler,
    FrameDataset,
    to_pytorch_dataloader,
)
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec
from reacture_convert.writers.zarr import ZarrOptions
from tests.helpers.loaders import loader_samples
from tests.helpers.s3 import S3
from tests.helpers.synth import convert_synth

CHUNK = 16
CHUNKS = "/frames/c/"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specs = [BundleSpec(n_frames=150, seed=i, prefix=f"reacture_179570000000{i}") for i in range(3)]
    options = ConvertOptions(zarr=ZarrOptions(chunk_frames=CHUNK))
    return convert_synth(tmp_path_factory.mktemp("ahead-data"), specs, options)


@pytest.fixture(scope="module")
def bucket(moto_s3: S3, local: Path) -> Iterator[tuple[str, LatencyProxy]]:
    moto_s3.fs.put(str(local), "datasets/ahead", recursive=True)
    with LatencyProxy(moto_s3.endpoint, delay=0.05) as proxy:
        yield "s3://datasets/ahead", proxy


def _settle(proxy: LatencyProxy) -> None:
    """Wait until the proxy has served no request for 0.3 s (read-ahead requests follow one
    another in the background, microseconds apart)."""
    deadline = time.monotonic() + 30
    quiet = 0
    while quiet < 30 and time.monotonic() < deadline:
        quiet = 0 if proxy.traffic.active else quiet + 1
        time.sleep(0.01)


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_each_batch_names_its_workers_next_batches(
    moto_s3: S3, bucket: tuple[str, LatencyProxy], workers: int
) -> None:
    """A DataLoader deals batches to its workers in turn, so batch i's read-ahead is batches
    i, i + w, i + 2w, ... (``AHEAD_BATCHES`` beyond i) of the plan; a worker is told so with
    every ``AHEAD_EVERY``-th of its own batches, its first among them (the others are lists)."""
    ds = FrameDataset(bucket[0], storage_options=moto_s3.options)
    sampler = ChunkBatchSampler(ds, 8, shuffle=True, seed=5, num_workers=workers)
    plan = [ids.tolist() for ids in sampler._plan()]
    step = max(1, workers)
    got = list(sampler)
    assert [list(batch) for batch in got] == plan
    assert len(got) > step * AHEAD_EVERY  # (so that some batches are plain lists)
    for i, batch in enumerate(got):
        own = i // step  # the worker's how-manieth batch this is
        if own % AHEAD_EVERY:
            assert type(batch) is list
            continue
        assert isinstance(batch, BatchIds)
        coming = plan[i : i + step * (AHEAD_BATCHES + 1) : step]
        assert batch.ahead.tolist() == [x for ids in coming for x in ids]


def test_on_local_disk_batches_are_plain_lists(local: Path) -> None:
    """Nothing is read ahead from local disk, so the sampler sends no more than the ids."""
    sampler = ChunkBatchSampler(FrameDataset(str(local)), 8, shuffle=True, num_workers=2)
    assert all(type(batch) is list for batch in sampler)


def test_chunks_of_later_batches_are_requested_before_those_batches_are_read(
    bucket: tuple[str, LatencyProxy],
) -> None:
    url, proxy = bucket
    options = {"client_kwargs": {"endpoint_url": proxy.url}}
    loader = to_pytorch_dataloader(url, 16, True, seed=2, storage_options=options)
    plan = list(loader.sampler)  # type: ignore[arg-type]
    first_chunks = {(s, f // CHUNK) for s, f in map(loader.dataset.locate, plan[0])}
    proxy.traffic.reset()
    batches = iter(loader)
    next(batches)
    _settle(proxy)
    assert proxy.traffic.gets(CHUNKS) > len(first_chunks)  # chunks of batches not read yet
    list(batches)
    ahead = _chunk_gets(proxy)
    # the same batches read without being told what comes next (plain lists of ids)
    plain = FrameDataset(url, storage_options=options)
    proxy.traffic.reset()
    for ids in plan:
        plain[list(ids)]
    assert ahead == _chunk_gets(proxy)  # the same objects, as often: nothing fetched twice


def _chunk_gets(proxy: LatencyProxy) -> dict[str, int]:
    with proxy.traffic.lock:
        return {p: n for (m, p), n in proxy.traffic.requests.items() if CHUNKS in p}


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_read_ahead_from_the_store_is_the_one_on_local_disk(
    bucket: tuple[str, LatencyProxy], local: Path, workers: int
) -> None:
    url, proxy = bucket
    kw: dict[str, Any] = {"num_workers": workers, "seed": 9}
    remote = to_pytorch_dataloader(
        url, 16, True, storage_options={"client_kwargs": {"endpoint_url": proxy.url}}, **kw
    )
    on_disk = to_pytorch_dataloader(str(local), 16, True, **kw)
    assert loader_samples(remote) == loader_samples(on_disk)


def test_the_read_ahead_keeps_to_its_requests_and_bytes(
    bucket: tuple[str, LatencyProxy],
) -> None:
    url, proxy = bucket
    out = Output(url, {"client_kwargs": {"endpoint_url": proxy.url}})
    session = FrameDataset(url, storage_options=dict(out.storage_options)).sessions[0]
    reader = ChunkReader(out, session)
    wanted = [(reader, c) for c in range(-(-reader.n_frames // reader.size))]

    _settle(proxy)  # (an earlier test's loader workers may still be reading ahead)
    proxy.traffic.reset()
    ahead = ChunkAhead(requests=2)
    ahead.want(wanted)
    _settle(proxy)
    assert proxy.traffic.peak <= 2  # at most 2 requests in flight, made one after another
    assert proxy.traffic.gets(CHUNKS) == len(wanted)

    one = ChunkAhead(budget=reader.chunk_bytes)  # room for one chunk in flight
    one.want(wanted)
    _settle(proxy)
    assert len(one) == 1 and one.held() <= one.budget
    job = one.take(reader.cache_key(0))
    assert job is not None
    assert np.array_equal(reader.decode(0, job.result()), reader.read(0))
    one.want(wanted[1:])  # chunk 0 taken: room for chunk 1
    _settle(proxy)
    assert len(one) == 1
    one.want(wanted[5:])  # chunk 1 no longer wanted: dropped, chunk 5 requested
    _settle(proxy)
    assert one.take(reader.cache_key(1)) is None
    assert one.take(reader.cache_key(5)) is not None
