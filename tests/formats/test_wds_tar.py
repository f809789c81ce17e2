"""The shard tar bytes: headers as tarfile writes them, sizes known up front, and the one
reader that groups members into samples (long names, damage, unsafe names), and each sample's
bytes found from the headers alone (``sample_spans``: a shard's table of sample offsets)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.tar import (
    iter_tar_members,
    iter_tar_samples,
    member_header,
    sample_spans,
    tar_size,
)

NPY = b"x"


def _tar(members: Sequence[tuple[str, bytes]]) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return sink.getvalue()


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), max_size=12))
def test_tar_size_predicts_tarfile(sizes: list[int]) -> None:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT) as tf:
        for k, n in enumerate(sizes):
            info = tarfile.TarInfo(f"s/{k:06d}.npy")
            info.size = n
            tf.addfile(info, io.BytesIO(bytes(n)))
    assert len(sink.getvalue()) == tar_size(sum(512 + -(-n // 512) * 512 for n in sizes))


def test_tar_samples_group_members_by_key() -> None:
    """The one reader of a tar's samples (merge and ShardDataset): consecutive members with one
    key make a sample, extensions in member order; directories are skipped."""
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        folder = tarfile.TarInfo("s")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
        for name, data in [("s/0.json", b"j0"), ("s/0.npy", b"n0"), ("s/1.json", b"j1")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    got = list(iter_tar_samples(io.BytesIO(sink.getvalue()), "t.tar"))
    assert got == [("s/0", {"json": b"j0", "npy": b"n0"}), ("s/1", {"json": b"j1"})]
    assert [list(m) for _, m in got] == [["json", "npy"], ["json"]]


@settings(max_examples=60, deadline=None)
@given(
    # names up to 100 bytes fill the name field alone; longer ones (a session name over 88
    # characters: up to 128 are allowed) go through the USTAR prefix field and its checksum
    session=st.one_of(
        st.from_regex(r"[A-Za-z0-9_-]{1,88}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9_-]{89,128}", fullmatch=True),
    ),
    frame=st.integers(0, 10**7),
    size=st.integers(0, 8**11 - 1),
)
def test_member_header_is_what_tarfile_writes(session: str, frame: int, size: int) -> None:
    name = f"{session}/{frame:06d}.json"
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    info.uname = info.gname = ""
    assert member_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _gnu_pax_tar() -> bytes:
    sink = io.BytesIO()
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        with tarfile.open(fileobj=sink, mode="w", format=fmt) as tf:
            for name, data in [(f"{'x' * 120}/{'y' * 90}/0.json", b"j"), ("d/0.npy", b"n")]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        if fmt == tarfile.GNU_FORMAT:
            gnu = sink.getvalue()
            sink = io.BytesIO()
    return gnu + b"|" + sink.getvalue()


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_tar_reader_takes_long_names(fmt: str) -> None:
    gnu, pax = _gnu_pax_tar().split(b"|", 1)
    got = list(iter_tar_members(io.BytesIO(gnu if fmt == "gnu" else pax), "t.tar"))
    assert got == [(f"{'x' * 120}/{'y' * 90}/0.json", b"j"), ("d/0.npy", b"n")]


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "checksum"),
        (lambda b: b[:700], "truncated"),
        (lambda b: b[:300], "ends inside a tar header"),
    ],
    ids=["header-byte", "data-cut", "header-cut"],
)
def test_tar_reader_names_damage(damage: Callable[[bytes], bytes], match: str) -> None:
    data = _tar([("s/000000.json", b"{}" * 300), ("s/000000.npy", NPY)])
    with pytest.raises(OutputError, match=match):
        list(iter_tar_samples(io.BytesIO(damage(data)), "t.tar"))


@pytest.mark.parametrize("name", ["/etc/passwd.json", "s/../../x.json"])
def test_tar_reader_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(OutputError, match="climbs out"):
        list(iter_tar_samples(io.BytesIO(_tar([(name, b"{}")])), "t.tar"))


class _Forward(io.RawIOBase):
    """A stream that reads forward only (an object store's read-ahead)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def _spans(data: bytes, seekable: bool) -> list[tuple[str, int, int]]:
    stream: Any = io.BytesIO(data) if seekable else io.BufferedReader(_Forward(data))
    return sample_spans(stream, "t.tar")


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(
        st.tuples(
            st.sampled_from(["a", "bb"]),
            st.lists(st.sampled_from(["json", "npy", "png"]), min_size=1, max_size=3, unique=True),
            st.integers(0, 1500),
        ),
        max_size=8,
    ),
    seekable=st.booleans(),
)
def test_each_samples_span_holds_that_sample_alone(
    samples: list[tuple[str, list[str], int]], seekable: bool
) -> None:
    members = [
        (f"{s}/{k:06d}.{ext}", bytes([k]) * size)
        for k, (s, exts, size) in enumerate(samples)
        for ext in exts
    ]
    data = _tar(members)
    spans = _spans(data, seekable)
    whole = list(iter_tar_samples(io.BytesIO(data), "t.tar"))
    assert [key for key, _, _ in spans] == [key for key, _ in whole]
    for (_, start, end), sample in zip(spans, whole, strict=True):
        assert list(iter_tar_samples(io.BytesIO(data[start:end]), "t.tar")) == [sample]


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_a_span_takes_the_long_name_records_before_its_member(fmt: str) -> None:
    gnu, pax = _gnu_pax_tar().split(b"|", 1)
    data = gnu if fmt == "gnu" else pax
    spans = _spans(data, True)
    assert [key for key, _, _ in spans] == [f"{'x' * 120}/{'y' * 90}/0", "d/0"]
    (_, start, end) = spans[0]
    got = list(iter_tar_members(io.BytesIO(data[start:end]), "t.tar"))
    assert got == [(f"{'x' * 120}/{'y' * 90}/0.json", b"j")]


@pytest.mark.parametrize("seekable", [True, False])
def test_spans_name_damage_and_unsafe_names(seekable: bool) -> None:
    data = _tar([("s/000000.json", b"{}" * 300), ("s/000000.npy", NPY)])
    with pytest.raises(OutputError, match="checksum"):
        _spans(data[:100] + bytes([data[100] ^ 1]) + data[101:], seekable)
    with pytest.raises(OutputError, match="climbs out"):
        _spans(_tar([("s/../../x.json", b"{}")]), seekable)
