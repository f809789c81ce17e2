"""Compressed shards (``formats.wds.compression``): a tar stream written as one gzip member
flushed after every run of samples round-trips exactly, reads as one ``.tar.gz`` to ``gzip`` and
to ``tarfile`` in stream mode (as ``webdataset`` reads), each run inflates alone from its flush
point; damaged members are named, and no read inflates more than asked."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.formats.wds.compression import (
    SHARD_RUN,
    GzipMembers,
    RunWriter,
    check_compression,
    gzip_member,
    inflate_run,
    plain_points,
    shard_writer,
)
from reacture_convert.formats.wds.tar import (
    end_of_archive,
    iter_tar_samples,
    member_header,
    padding,
    sample_spans,
)

Sample = tuple[str, dict[str, bytes]]


def sample_bytes(key: str, members: dict[str, bytes]) -> bytes:
    return b"".join(
        member_header(f"{key}.{ext}", len(d)) + d + padding(len(d)) for ext, d in members.items()
    )


def write(
    samples: list[Sample], compression: str = "gzip", level: int = 6
) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    """(the plain tar, the stored shard, its flush points) of these samples."""
    plain, stored = io.BytesIO(), io.BytesIO()
    writer = shard_writer(stored.write, compression, level)
    content = 0
    for key, members in samples:
        data = sample_bytes(key, members)
        plain.write(data)
        writer.write(data[:100])  # in pieces, as the merge hands them over
        writer.write(data[100:])
        writer.end_sample()
        content += len(data)
    plain.write(end_of_archive(content))
    writer.finish(end_of_archive(content))
    return plain.getvalue(), stored.getvalue(), writer.points


def make_samples(n: int, size: int = 700) -> list[Sample]:
    return [
        (f"s/{i:06d}", {"json": b'{"i": %d}' % i, "npy": bytes([i % 251]) * (size + i)})
        for i in range(n)
    ]


samples_strategy = st.lists(
    st.tuples(st.binary(max_size=40), st.binary(max_size=1500)), max_size=3 * SHARD_RUN + 5
).map(lambda xs: [(f"k/{i:06d}", {"json": a, "bin": b}) for i, (a, b) in enumerate(xs)])


@settings(max_examples=40, deadline=None)
@given(samples=samples_strategy, level=st.sampled_from([1, 6, 9]))
def test_samples_round_trip_and_runs_inflate_alone(samples: list[Sample], level: int) -> None:
    plain, stored, points = write(samples, level=level)
    assert gzip.decompress(stored) == plain  # one .gz to gzip
    with tarfile.open(fileobj=io.BytesIO(stored), mode="r|*") as tar:  # as webdataset opens it
        names = [m.name for m in tar]
    assert names == [f"{k}.{e}" for k, m in samples for e in m]
    gz = GzipMembers(io.BytesIO(stored), "shard")
    assert list(iter_tar_samples(gz, "shard")) == samples  # type: ignore[arg-type]
    assert len(gz.drain()) == 1  # one member
    sizes = [len(sample_bytes(k, m)) for k, m in samples]
    starts = [sum(sizes[:i]) for i in range(0, len(sizes), SHARD_RUN)]
    assert [u for _, u in points] == [*starts, sum(sizes)] if sizes else [0]
    for (c0, u0), (c1, u1) in zip(points, points[1:], strict=False):  # each run alone
        assert inflate_run(stored[c0:c1], u1 - u0, "shard", c0) == plain[u0:u1]


def test_spans_over_the_decompressed_stream_are_the_plain_tars() -> None:
    samples = make_samples(SHARD_RUN * 2 + 3)
    plain, stored, points = write(samples)
    gz = GzipMembers(io.BytesIO(stored), "shard")
    assert sample_spans(gz, "shard") == sample_spans(io.BytesIO(plain), "shard")  # type: ignore[arg-type]
    assert len(points) == 4  # three runs, the end of the archive


def test_bytes_are_reproducible_and_the_header_carries_no_time_or_name() -> None:
    samples = make_samples(40)
    assert write(samples)[:2] == write(samples)[:2]
    member = gzip_member(b"abc" * 100)
    assert member[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert gzip.decompress(member) == b"abc" * 100
    assert write(samples, level=1)[1] != write(samples, level=9)[1]


@settings(max_examples=40, deadline=None)
@given(samples=samples_strategy)
def test_none_writes_the_tar_as_it_is_and_its_runs_hold_their_samples(
    samples: list[Sample],
) -> None:
    plain, stored, points = write(samples, "none")
    assert plain == stored
    sizes = [len(sample_bytes(k, m)) for k, m in samples]
    starts = [sum(sizes[:i]) for i in range(0, len(sizes), SHARD_RUN)]
    assert points == [(u, u) for u in ([*starts, sum(sizes)] if sizes else [0])]
    assert tuple(points) == plain_points(sizes)
    for k, ((a, _), (b, _)) in enumerate(zip(points, points[1:], strict=False)):
        run = list(iter_tar_samples(io.BytesIO(plain[a:b]), "shard"))
        assert run == samples[k * SHARD_RUN : (k + 1) * SHARD_RUN]


@pytest.mark.parametrize(
    ("compression", "level"), [("zstd", 6), ("gzip", 0), ("gzip", 10), ("gzip", True)]
)
def test_bad_options_are_refused(compression: str, level: int) -> None:
    with pytest.raises(ConfigError):
        check_compression(compression, level)
    with pytest.raises(ConfigError):
        RunWriter(io.BytesIO().write, compression, level)


# --- damaged shards ------------------------------------------------------------------------------
def _shard() -> tuple[bytes, bytes, list[tuple[int, int, int, int]]]:
    """A shard of one member, and a second member appended (what a foreign writer may do)."""
    plain, stored, _ = write(make_samples(SHARD_RUN + 5))
    stored += gzip_member(b"\0" * 1024)
    gz = GzipMembers(io.BytesIO(stored), "shard")
    return plain, stored, gz.drain()


def truncated(stored: bytes, members: list[tuple[int, int, int, int]]) -> bytes:
    return stored[: members[0][1] // 2]


def garbage_member(stored: bytes, members: list[tuple[int, int, int, int]]) -> bytes:
    c0, c1, _, _ = members[1]
    return stored[:c0] + b"\x1f\x8b\x08\x00" + bytes(range(200)) + stored[c1:]


def flipped_crc(stored: bytes, members: list[tuple[int, int, int, int]]) -> bytes:
    c1 = members[0][1]
    return stored[: c1 - 6] + bytes([stored[c1 - 6] ^ 0xFF]) + stored[c1 - 5 :]


def trailing_garbage(stored: bytes, members: list[tuple[int, int, int, int]]) -> bytes:
    return stored + b"not gzip at all"


def not_gzip(stored: bytes, members: list[tuple[int, int, int, int]]) -> bytes:
    return b"\0" * 2048


BAD = {
    "truncated-member": (truncated, "is cut short"),
    "garbage-member": (garbage_member, "does not decompress"),
    "crc-mismatch": (flipped_crc, "does not decompress"),
    "trailing-garbage": (trailing_garbage, "does not decompress"),
    "not-gzip": (not_gzip, "does not decompress"),
}


@pytest.mark.parametrize(("damage", "what"), BAD.values(), ids=BAD.keys())
def test_damaged_members_are_named(
    damage: Callable[[bytes, list[tuple[int, int, int, int]]], bytes], what: str
) -> None:
    _, stored, members = _shard()
    bad = damage(stored, members)
    with pytest.raises(OutputError, match=f"shard: the gzip member at byte [0-9]+ {what}"):
        GzipMembers(io.BytesIO(bad), "shard").drain()


def test_a_run_that_holds_more_than_its_claim_is_refused_without_inflating_it() -> None:
    bomb = gzip_member(bytes(64 << 20))[10:-8]  # 64 MiB of zeros in ~64 KB, raw deflate
    with pytest.raises(OutputError, match="inflates to more than the 1000 bytes expected"):
        inflate_run(bomb, 1000, "shard")
    d = zlib.decompressobj(-zlib.MAX_WBITS)  # what inflate_run produces at most: expected + 1
    assert len(d.decompress(bomb, 1001)) == 1001


def _runs() -> tuple[bytes, bytes, list[tuple[int, int]]]:
    return write(make_samples(SHARD_RUN * 2 + 1))


@pytest.mark.parametrize(
    ("cut", "what"),
    [
        (lambda s, p: (s[p[1][0] : p[2][0]], p[2][1] - p[1][1] + 5), "not the"),
        (lambda s, p: (s[p[1][0] : p[2][0] - 7], p[2][1] - p[1][1]), "not the"),
        (lambda s, p: (s[p[1][0] + 3 : p[2][0]], p[2][1] - p[1][1]), "does not inflate|not the"),
        (lambda s, p: (b"garbage!" * 10, 100), "does not inflate"),
    ],
    ids=["fewer-bytes", "cut-short", "not-a-flush-point", "garbage"],
)
def test_a_ranged_read_that_is_not_its_run_is_refused(
    cut: Callable[[bytes, list[tuple[int, int]]], tuple[bytes, int]], what: str
) -> None:
    _, stored, points = _runs()
    data, expected = cut(stored, points)
    with pytest.raises(OutputError, match=what):
        inflate_run(data, expected, "shard", 0)


def test_a_tar_header_that_claims_more_than_the_stream_holds_is_named() -> None:
    stream = gzip_member(member_header("k/000000.bin", 10 << 20) + b"x" * 512)
    gz = GzipMembers(io.BytesIO(stream), "shard")
    with pytest.raises(OutputError, match="ends at byte 1024"):
        sample_spans(gz, "shard")  # type: ignore[arg-type]
