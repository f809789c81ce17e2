"""The shard set's format beyond the tar bytes: the index file, the shuffle buffer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds import WdsIndex, shuffle_buffer


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), size=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_shuffle_buffer_is_a_permutation(n: int, size: int, seed: int) -> None:
    got = list(shuffle_buffer(iter(range(n)), size, random.Random(seed)))
    assert sorted(got) == list(range(n))


def test_an_index_of_another_format_is_refused() -> None:
    with pytest.raises(OutputError, match="not a reacture-wds version 2 index") as info:
        WdsIndex.from_dict({"format": "other", "version": 1})
    assert "convert again with the wds format" in str(info.value)
