"""A shuffled epoch over shards reads each run by index.json's ``runs`` (issue 23): no pass over
the shards to learn their sample offsets first, so the first epoch from an object store (moto
behind the counting proxy) fetches about the shards' bytes once, plain or gzip, with every
sample exactly once and the samples a local read gives; a run that index.json places wrongly
is named, with what to do; a set whose index lists no runs for its plain shards (written
before they did) reads as before, through the shards' headers, with the same samples."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.tar import sample_spans
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.sources import ShardSource
from reacture_convert.read.sources.shards import consumer_range
from reacture_convert.read.torch import to_pytorch_dataloader
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.proxy import LatencyProxy
from reacture_convert.testing.synth import BundleSpec
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.s3 import S3
from tests.helpers.synth import convert_synth

SPECS = [BundleSpec(n_frames=150, seed=i, prefix=f"reacture_179564000000{i}") for i in range(3)]
ALL = {(s.prefix, f) for s in SPECS for f in range(s.n_frames)}
Ids = list[tuple[str, int]]


@pytest.fixture(scope="module", params=["none", "gzip"])
def local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sessions as 4 shards (113 or 112 samples: runs of 32, the last of 17 or 16; the
    middle ones hold two sessions), plain or gzip."""
    wds = WdsOptions(shard_count=4, compression=request.param)
    root = tmp_path_factory.mktemp(f"runs-{request.param}")
    return convert_synth(root, SPECS, ConvertOptions(formats=("wds",), wds=wds))


def index_of(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "wds" / "index.json").read_text())
    return doc


def write_index(out: Path, doc: dict[str, Any]) -> None:
    (out / "wds" / "index.json").write_text(json.dumps(doc))


def stream(out: Any, consumers: int = 1, **kw: Any) -> Ids:
    """A shuffled epoch's samples over all ``consumers``, in each one's order."""
    source = ShardSource(out, ReadOptions(skip_blank=False, **kw))
    return [
        (history[-1].session, history[-1].frame_index)
        for c in range(consumers)
        for history, _ in source.iter_windows(c, consumers, shuffle=True, seed=5, epoch=1)
    ]


def loader_epoch(url: str, **kw: Any) -> Ids:
    loader = to_pytorch_dataloader(
        url, batch_size=16, shuffle=True, seed=3, source="wds", skip_blank=False, **kw
    )
    return [
        (s, int(f)) for b in loader for s, f in zip(b["session"], b["frame_index"], strict=True)
    ]


@pytest.fixture
def no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Learning a shard's sample offsets from its headers fails the test."""

    def refuse(self: ShardSource, shard: int) -> None:
        raise AssertionError(f"spans({shard}) read the shard's headers")

    monkeypatch.setattr(ShardSource, "spans", refuse)


def test_the_index_lists_every_shards_runs(local: Path) -> None:
    for shard in index_of(local)["shards"]:
        assert len(shard["runs"]) == -(-shard["samples"] // 32) + 1


@pytest.mark.usefixtures("no_spans")
@pytest.mark.parametrize("consumers", [1, 3])
def test_a_shuffled_epoch_reads_runs_without_the_headers(local: Path, consumers: int) -> None:
    got = stream(local, consumers)
    assert Counter(got) == Counter(dict.fromkeys(ALL, 1))  # every sample exactly once


@pytest.mark.usefixtures("no_spans")
def test_some_sessions_only_need_no_headers_either(local: Path) -> None:
    """A shard that mixes chosen and other sessions is read whole, the others' samples left
    out as they come: each chosen sample still exactly once over the consumers."""
    for chosen in ([SPECS[0].prefix, SPECS[2].prefix], [SPECS[1].prefix]):
        got = stream(local, 2, sessions=chosen)
        assert Counter(got) == Counter({x: 1 for x in ALL if x[0] in chosen})


@pytest.mark.parametrize("local", ["none"], indirect=True)  # compressed shards always had runs
def test_an_index_without_plain_runs_reads_as_before(local: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(local, old)
    doc = index_of(old)
    write_index(old, {**doc, "shards": [{**s, "runs": []} for s in doc["shards"]]})
    for kw in ({}, {"sessions": [SPECS[1].prefix]}):
        assert stream(old, 2, **kw) == stream(local, 2, **kw)
    assert loader_epoch(str(old)) == loader_epoch(str(local))


# --- runs placed wrongly ------------------------------------------------------------------------
def boundaries(out: Path, k: int) -> list[int]:
    """Where each sample of plain shard ``k`` begins, then where its last one ends."""
    path = out / "wds" / index_of(out)["shards"][k]["url"]
    with open(path, "rb") as f:
        spans = sample_spans(f, str(path))
    return [a for _, a, _ in spans] + [spans[-1][2]]


Runs = list[list[int]]
Damage = Callable[[Runs, list[int]], Runs]
BAD_RUNS: dict[str, tuple[Damage, str]] = {
    # plain shards: a run one sample longer, the next one shorter (both on sample boundaries)
    "a-sample-late": (
        lambda r, b: [r[0], [b[33], b[33]], *r[2:]],
        r"run [01] of the shard \(bytes \d+\.\.\d+ hold 3[13] sample\(s\), not 32\)",
    ),
    "into-a-sample": (lambda r, b: [r[0], [r[1][0] + 512] * 2, *r[2:]], "run [01] of the"),
    "one-missing": (lambda r, b: r[:2] + r[3:], "4 runs listed for 113 samples"),
    "descending": (lambda r, b: [r[0], r[2], r[1], *r[3:]], "do not ascend"),
    "two-offsets": (lambda r, b: [r[0], [r[1][0], r[1][0] + 1], *r[2:]], "two offsets"),
    "end-outside": (lambda r, b: [*r[:-1], [r[-1][0] + 20480] * 2], "ascend within the"),
    "end-early": (lambda r, b: [*r[:-1], [r[-1][0] - 20480] * 2], "archive ends"),
}
GZ_BAD_RUNS: dict[str, tuple[Damage, str]] = {
    "flush-moved": (lambda r, b: [r[0], [r[1][0] + 7, r[1][1]], *r[2:]], "run [01] of the"),
    "tar-offset-moved": (lambda r, b: [r[0], [r[1][0], r[1][1] - 512], *r[2:]], "run [01] of"),
    "one-missing": (lambda r, b: r[:2] + r[3:], "4 runs listed for 113 samples"),
}


@pytest.mark.parametrize(
    ("local", "case"),
    [("none", case) for case in BAD_RUNS] + [("gzip", case) for case in GZ_BAD_RUNS],
    indirect=["local"],
)
def test_runs_placed_wrongly_are_named_with_what_to_do(
    local: Path, tmp_path: Path, case: str
) -> None:
    doc = index_of(local)
    plain = "compression" not in doc
    damage, message = (BAD_RUNS if plain else GZ_BAD_RUNS)[case]
    out = tmp_path / "out"
    shutil.copytree(local, out)
    shard = doc["shards"][1]
    shard["runs"] = damage(shard["runs"], boundaries(out, 1) if plain else [])
    write_index(out, doc)
    with pytest.raises(OutputError, match=message) as caught:
        stream(out)
    assert shard["url"] in str(caught.value) and "reacture-convert verify" in str(caught.value)


def test_a_range_past_a_shards_end_reads_only_what_the_shard_holds(local: Path) -> None:
    """A range from a damaged index.json (its end far past the shard's) allocates no more than
    the shard's bytes: the local read is bounded by the file's size."""
    source = ShardSource(local, ReadOptions(skip_blank=False))
    path = local / "wds" / index_of(local)["shards"][0]["url"]
    size = path.stat().st_size
    assert source._read_range(0, size - 100, 1 << 62) == path.read_bytes()[-100:]
    assert source._read_range(0, size + 5, 1 << 62) == b""


# --- from an object store -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bucket(moto_s3: S3, local: Path) -> Iterator[tuple[str, LatencyProxy]]:
    name = index_of(local).get("compression", "none")
    moto_s3.fs.put(str(local), f"datasets/runs-{name}", recursive=True)
    with LatencyProxy(moto_s3.endpoint) as proxy:
        yield f"s3://datasets/runs-{name}", proxy


def test_a_first_epoch_from_a_bucket_fetches_the_shards_about_once(
    bucket: tuple[str, LatencyProxy], local: Path
) -> None:
    """Through the loader (which learned every shard's offsets before its workers started):
    one ranged GET a run, about the stored bytes (without runs: ~2x, every shard read whole
    first)."""
    url, proxy = bucket
    stored = sum(s["bytes"] for s in index_of(local)["shards"])
    proxy.traffic.reset()
    got = loader_epoch(url, storage_options={"client_kwargs": {"endpoint_url": proxy.url}})
    assert proxy.traffic.bytes <= 1.1 * stored, (proxy.traffic.bytes, stored)
    assert proxy.traffic.gets(".tar") == sum(
        -(-s["samples"] // 32) for s in index_of(local)["shards"]
    )
    assert sorted(got) == sorted(ALL)
    assert got == loader_epoch(str(local))


def needed_bytes(source: ShardSource, consumers: int) -> int:
    """The stored bytes of the runs each consumer's slice of the epoch holds samples of."""
    sizes = [
        c1 - c0
        for s in source.index.shards
        for (c0, _), (c1, _) in zip(s.runs, s.runs[1:], strict=False)
    ]
    order = source.epoch_positions(5, 1)
    total = 0
    for c in range(consumers):
        lo, hi = consumer_range(len(order), c, consumers)
        total += sum(sizes[r] for r in set(source.run_of()[order[lo:hi]].tolist()))
    return total


def test_consumers_fetch_only_the_runs_they_read(
    bucket: tuple[str, LatencyProxy], local: Path
) -> None:
    url, proxy = bucket
    options = {"client_kwargs": {"endpoint_url": proxy.url}}
    proxy.traffic.reset()
    source = ShardSource(url, ReadOptions(skip_blank=False), storage_options=options)
    got = [
        (history[-1].session, history[-1].frame_index)
        for c in range(3)
        for history, _ in source.iter_windows(c, 3, shuffle=True, seed=5, epoch=1)
    ]
    fetched, needed = proxy.traffic.bytes, needed_bytes(source, 3)
    assert fetched <= needed + 20_000, (fetched, needed)  # and index.json
    assert sorted(got) == sorted(ALL) and got == stream(local, 3)
