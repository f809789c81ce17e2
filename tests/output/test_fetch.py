"""ReadAhead: a file read forward in ranged blocks, several in flight, gives exactly the file's
bytes whatever the block, the read-ahead and the reads' sizes, on local disk and over a real
S3-compatible server (moto over HTTP)."""

from __future__ import annotations

import io
import os

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.output.fetch import ReadAhead
from tests.helpers.s3 import S3

DATA = os.urandom(100_003)


@settings(max_examples=40, deadline=None)
@given(
    block=st.integers(4096, 40_000),
    ahead=st.integers(1, 6),
    reads=st.lists(st.integers(1, 30_000), min_size=1, max_size=30),
)
def test_read_ahead_gives_the_files_bytes(block: int, ahead: int, reads: list[int]) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/read-ahead.bin", DATA)
    got = bytearray()
    with io.BufferedReader(ReadAhead(fs, "/read-ahead.bin", len(DATA), block, ahead)) as f:
        for n in reads:
            got += f.read(n)
        got += f.read()
    assert bytes(got) == DATA


def test_read_ahead_over_s3(moto_s3: S3) -> None:
    moto_s3.fs.pipe("datasets/read-ahead.bin", DATA)
    raw = ReadAhead(moto_s3.fs, "datasets/read-ahead.bin", len(DATA), block=7_000, ahead=4)
    with io.BufferedReader(raw, 4096) as f:
        assert f.read() == DATA


@pytest.mark.parametrize("size", [0, 1])
def test_read_ahead_of_tiny_files(size: int) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/tiny-{size}.bin", DATA[:size])
    with io.BufferedReader(ReadAhead(fs, f"/tiny-{size}.bin", size)) as f:
        assert f.read() == DATA[:size]
