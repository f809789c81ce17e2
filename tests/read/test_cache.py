"""The readers' local cache (issue 23): a bounded folder, least recently used out first, whole
entries only when processes fill it at once; and, over a real S3-compatible server (moto, over
HTTP through a counting proxy), a second epoch with the cache fetches no chunk and no shard,
with the same samples as the first and as local disk."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reacture_convert.errors import ConfigError
from reacture_convert.read.cache import ByteCache, CacheOptions, cache_options
from reacture_convert.read.torch import to_pytorch_dataloader
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.docs import section
from tests.helpers.loaders import loader_samples
from tests.helpers.paths import REPO
from tests.helpers.s3 import S3
from tests.helpers.synth import convert_synth


def test_a_cache_gives_back_what_it_was_given(tmp_path: Path) -> None:
    cache = ByteCache(CacheOptions(str(tmp_path), 1 << 20))
    assert cache.get("a") is None
    cache.put("a", b"alpha")
    cache.put("b", b"")
    assert cache.get("a") == b"alpha" and cache.get("b") == b""
    made = cache.file("c", lambda f: f.write(b"gamma"))
    assert made.read_bytes() == b"gamma"
    assert cache.file("c", lambda f: pytest.fail("filled twice")) == made


def test_the_least_recently_used_entries_go_first(tmp_path: Path) -> None:
    cache = ByteCache(CacheOptions(str(tmp_path), 10_000))
    for i in range(9):
        cache.put(f"k{i}", bytes(1000))
        os.utime(cache.path(f"k{i}"), (1000 + i, 1000 + i))
    assert cache.get("k0") is not None  # k0 used now: the newest
    for i in range(9, 12):
        cache.put(f"k{i}", bytes(1000))
    cache.evict()
    assert cache.size() <= 10_000
    kept = {i for i in range(12) if cache.path(f"k{i}").exists()}
    assert {0, 9, 10, 11} <= kept
    assert 1 not in kept and 2 not in kept


def test_a_cache_stays_within_its_limit_as_it_fills(tmp_path: Path) -> None:
    cache = ByteCache(CacheOptions(str(tmp_path), 64_000))
    for i in range(200):
        cache.put(str(i), bytes(1000))
    assert cache.size() <= 64_000


def _fill(root: str, seed: int) -> None:
    cache = ByteCache(CacheOptions(root, 200_000))
    rng = np.random.default_rng(seed)
    for i in rng.permutation(300):
        key = f"entry-{i}"
        data = bytes([i % 256]) * (500 + int(i))
        if cache.get(key) is None:
            cache.put(key, data)


def test_two_processes_filling_one_cache_leave_only_whole_entries(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fill, args=(str(tmp_path), s)) for s in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = ByteCache(CacheOptions(str(tmp_path), 200_000))
    present = 0
    for i in range(300):
        got = cache.get(f"entry-{i}")
        if got is not None:
            present += 1
            assert got == bytes([i % 256]) * (500 + i)
    assert present > 50
    assert cache.size() <= 200_000
    assert not [p for p in tmp_path.rglob(".*.tmp")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, "1GiB"), "cache_limit needs cache_dir"),
        (("x", "lots"), "is not a size"),
        (("x", 0), "at least 1 byte"),
    ],
)
def test_bad_cache_arguments_say_what_to_do(args: tuple[Any, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cache_options(*args)


# --- over an S3-compatible server -----------------------------------------------------------------
@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    specs = [BundleSpec(n_frames=150, seed=i, prefix=f"reacture_179560000000{i}") for i in range(3)]
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=3))
    return convert_synth(tmp_path_factory.mktemp("cache-data"), specs, options)


@pytest.fixture(scope="module")
def bucket(moto_s3: S3, local: Path) -> Iterator[tuple[str, LatencyProxy]]:
    moto_s3.fs.put(str(local), "datasets/cached", recursive=True)
    with LatencyProxy(moto_s3.endpoint) as proxy:
        yield "s3://datasets/cached", proxy


def epoch(out: Any, source: str, **kw: Any) -> list[tuple[str, int, bytes]]:
    loader = to_pytorch_dataloader(out, batch_size=32, shuffle=True, seed=3, source=source, **kw)
    return loader_samples(loader)


@pytest.mark.parametrize(("source", "objects"), [("zarr", "/frames/c/"), ("wds", ".tar")])
def test_a_second_epoch_with_the_cache_fetches_no_chunk_or_shard(
    bucket: tuple[str, LatencyProxy], local: Path, tmp_path: Path, source: str, objects: str
) -> None:
    url, proxy = bucket
    options = {"client_kwargs": {"endpoint_url": proxy.url}}
    kw = {"storage_options": options, "cache_dir": str(tmp_path / "cache"), "num_workers": 2}
    proxy.traffic.reset()
    first = epoch(url, source, **kw)
    assert proxy.traffic.gets(objects) > 0
    proxy.traffic.reset()
    second = epoch(url, source, **kw)
    assert proxy.traffic.gets(objects) == 0
    assert first == second == epoch(local, source, num_workers=2)


def test_the_object_store_example_runs(
    moto_s3: S3, local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/object-stores.md's "Training from an object store", against the local S3-compatible
    server (its endpoint and a private cache folder put in for the page's)."""
    page = section(REPO / "docs" / "object-stores.md", "## Training from an object store")
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    code = code.replace("http://127.0.0.1:9000", moto_s3.endpoint)
    code = code.replace("/tmp/reacture-cache", str(tmp_path / "cache"))
    moto_s3.fs.put(str(local), "datasets/reacture", recursive=True)
    exec(compile(code, "docs: Training from an object store", "exec"), {"__name__": "__readme__"})
    assert ByteCache(CacheOptions(str(tmp_path / "cache"), 1)).size() > 0


def test_a_cache_folder_that_cannot_be_made_is_refused_up_front(
    local: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    for source in ("zarr", "wds"):
        with pytest.raises(ConfigError, match="cannot create it"):
            to_pytorch_dataloader(local, 8, source=source, cache_dir=str(tmp_path / "a-file" / "c"))


class _Forgetful(ByteCache):
    """A cache that says it holds every entry, as one would whose entries another process
    evicts between that answer and the read."""

    def holds(self, key: str) -> bool:
        return True


def test_a_chunk_evicted_after_the_cache_said_it_held_it_is_fetched(
    local: Path, tmp_path: Path
) -> None:
    from reacture_convert.output.storage import Output
    from reacture_convert.read.chunks import ChunkReader, read_chunks

    session = sorted(p.name for p in (local / "zarr").iterdir())[0].removesuffix(".zarr")
    reader = ChunkReader(Output(str(local)), session)
    assert reader.direct
    cache = _Forgetful(CacheOptions(str(tmp_path / "cache"), 1 << 30))
    got = read_chunks([(reader, 0), (reader, 1)], cache)
    assert [g.tobytes() for g in got] == [
        reader.read_zarr(0).tobytes(),
        reader.read_zarr(1).tobytes(),
    ]
    assert cache.size() > 0  # fetched, then kept
