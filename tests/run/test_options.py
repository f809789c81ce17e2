"""The option parsers the CLI and job files share, and the one ConvertOptions builder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reacture_convert.errors import ConfigError
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.options import (
    OPTION_KEYS,
    convert_options,
    parse_formats,
    parse_size,
    parse_storage_options,
)
from reacture_convert.writers.webdataset import WdsOptions
from reacture_convert.writers.zarr import ZarrOptions


@pytest.mark.parametrize(
    "text, size",
    [
        ("256MiB", 256 * 2**20),
        ("500MB", 500 * 10**6),
        ("1000000", 10**6),
        ("1.5 GB", 15 * 10**8),
        ("64kib", 65536),
        (4096, 4096),
        ("1", 1),
        ("1b", 1),
    ],
    ids=["MiB", "MB", "plain", "fraction-space", "lower", "int", "one", "one-byte"],
)
def test_sizes_parse(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@given(
    st.integers(min_value=1, max_value=2**40),
    st.sampled_from(["", "b", "kb", "MB", "gb", "KiB", "mib", "GiB"]),
)
def test_every_written_size_reads_back(n: int, unit: str) -> None:
    factor = {
        "": 1,
        "b": 1,
        "kb": 10**3,
        "mb": 10**6,
        "gb": 10**9,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
    }[unit.lower()]
    assert parse_size(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    "value",
    [0, -1, True, 1.5, None, [1]],
    ids=["zero", "negative", "bool", "float", "none", "list"],
)
def test_sizes_of_the_wrong_kind_are_config_errors(value: Any) -> None:
    with pytest.raises(ConfigError, match="at least 1 byte|is not a size"):
        parse_size(value)


@pytest.mark.parametrize(
    "value, formats",
    [
        ("zarr", ("zarr",)),
        ("zarr,wds", ("zarr", "wds")),
        (" wds , zarr ,", ("wds", "zarr")),
        (["wds"], ("wds",)),
        (("zarr", "wds"), ("zarr", "wds")),
    ],
    ids=["one", "two", "spaces-and-trailing-comma", "list", "tuple"],
)
def test_formats_parse(value: Any, formats: tuple[str, ...]) -> None:
    assert parse_formats(value) == formats


@pytest.mark.parametrize(
    "value, message",
    [
        ("hdf5", "unknown output format 'hdf5'; choose one or more of zarr (Zarr"),
        (["zarr", "tar"], "unknown output format 'tar'"),
        ("", "no output format; choose one or more of zarr"),
        ([], "no output format"),
        (3, 'formats must be names like "zarr,wds"'),
        ([1], "formats must be names"),
    ],
    ids=["unknown", "one-unknown", "empty-string", "empty-list", "number", "not-strings"],
)
def test_bad_formats_say_what_to_choose(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_formats(value)
    assert message in str(info.value)


def test_storage_options_nest_by_dots_and_are_typed() -> None:
    assert parse_storage_options(
        [
            "anon=true",
            "client_kwargs.endpoint_url=http://127.0.0.1:9000",
            "client_kwargs.region_name=eu",
            "config_kwargs.retries.max_attempts=3",
            "key=a=b",
            "use_ssl=FALSE",
        ]
    ) == {
        "anon": True,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu"},
        "config_kwargs": {"retries": {"max_attempts": 3}},
        "key": "a=b",
        "use_ssl": False,
    }


@pytest.mark.parametrize(
    ("value", "local", "bucket"),
    [(None, None, 1024), ("auto", None, 1024), (0, None, None), (128, 128, 128)],
)
def test_shard_frames_auto_shards_on_an_object_store_only(
    value: Any, local: int | None, bucket: int | None
) -> None:
    zarr = convert_options({"shard_frames": value}).zarr
    assert zarr.for_output(local=True).shard_frames == local
    assert zarr.for_output(local=False).shard_frames == bucket


@pytest.mark.parametrize(("chunk", "shard"), [(64, 1024), (50, 1000), (16, 1024), (600, None)])
def test_auto_shards_are_a_multiple_of_the_chunk(chunk: int, shard: int | None) -> None:
    """(a chunk of more than half the shard: no sharding, one chunk per object already)"""
    options = ZarrOptions(chunk_frames=chunk).for_output(local=False)
    assert options.shard_frames == shard


@pytest.mark.parametrize(
    "values, message",
    [
        (["anon"], "'anon': expected KEY=VALUE"),
        (["=1"], "expected KEY=VALUE"),
        (["a..b=1"], "expected KEY=VALUE"),
        (["anon=true", "anon.x=1"], "anon is already a value"),
    ],
    ids=["no-equals", "no-key", "empty-part", "value-then-table"],
)
def test_bad_storage_options_say_what_is_expected(values: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_storage_options(values)
    assert message in str(info.value)


def test_no_values_are_the_defaults() -> None:
    assert convert_options({}) == ConvertOptions()
    assert (
        convert_options({key: None for keys in OPTION_KEYS.values() for key in keys})
        == ConvertOptions()
    )


def test_every_key_reaches_its_field() -> None:
    options = convert_options(
        {
            "formats": "wds,zarr",
            "force": True,
            "chunk_frames": 32,
            "shard_frames": 128,
            "codec": "lz4",
            "level": 5,
            "shard_size": "1MB",
            "shard_count": 3,
            "shuffle": 7,
            "encoding": "png",
            "name": "train",
            "shuffle_buffer": 64,
        },
        {"anon": True},
    )
    assert options == ConvertOptions(
        formats=("wds", "zarr"),
        force=True,
        zarr=ZarrOptions(chunk_frames=32, shard_frames=128, codec="lz4", level=5),
        wds=WdsOptions(
            shard_size=10**6,
            shard_count=3,
            shuffle_seed=7,
            encoding="png",
            name="train",
            shuffle_buffer=64,
        ),
        input_options={"anon": True},
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"force": "yes"}, "[job] force: must be true or false, not 'yes'"),
        ({"chunk_frames": "64"}, "[zarr] chunk_frames: must be a whole number, not '64'"),
        ({"chunk_frames": 0}, "[zarr] chunk_frames: must be a whole number >= 1, not 0"),
        ({"level": 1.5}, "[zarr] level: must be a whole number"),
        ({"codec": 3}, "[zarr] codec: must be a string"),
        ({"shard_size": "lots"}, "[wds] shard_size: 'lots' is not a size"),
        ({"shuffle": True}, "[wds] shuffle: must be a whole number"),
        ({"formats": "hdf5"}, "[job] formats: unknown output format 'hdf5'"),
        ({"codec": "gzip"}, "unknown Zarr codec 'gzip'"),
        ({"chunk_frames": 64, "shard_frames": 100}, "multiple of --chunk-frames"),
        ({"shard_frames": -1}, "[zarr] shard_frames: must be a whole number >= 0 (0: no"),
        ({"shard_frames": "lots"}, "[zarr] shard_frames: must be a whole number >= 0"),
        ({"workers": 2}, "unknown option(s) workers"),
    ],
    ids=[
        "force",
        "chunk-string",
        "chunk-zero",
        "level-float",
        "codec-number",
        "size",
        "shuffle",
        "formats",
        "codec",
        "shards",
        "shard-negative",
        "shard-text",
        "unknown",
    ],
)
def test_bad_values_name_their_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        convert_options(values)
    assert message in str(info.value)
