"""The format registry: one home for the format names, and an unknown name is refused with
the names there are."""

from __future__ import annotations

import pytest

from reacture_convert.errors import ConfigError
from reacture_convert.output.layout import session_parts
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers import FORMATS, WRITERS, session_writers, writer_specs


def test_formats_are_the_registry_names() -> None:
    assert FORMATS == tuple(WRITERS) == ("zarr", "wds")
    assert WRITERS["zarr"].session_outputs("s") == session_parts("s")
    assert WRITERS["wds"].session_outputs("s") == [] and WRITERS["wds"].merged


def test_specs_come_in_the_order_given_and_once() -> None:
    assert [s.name for s in writer_specs(["wds", "zarr", "wds"])] == ["wds", "zarr"]


def test_writers_open_in_registry_order_whatever_the_order_asked() -> None:
    # the first writer sizes the read's frame blocks: the Zarr writer's, by its chunks
    assert [s.name for s in session_writers(["wds", "zarr"])] == ["zarr", "wds"]


def test_every_format_has_its_options_in_convert_options() -> None:
    options = ConvertOptions(formats=FORMATS)
    for name in FORMATS:
        assert options.writer_options(name) is getattr(options, name)


@pytest.mark.parametrize(
    "formats, named",
    [
        (["zarr", "hdf5"], "'hdf5'"),
        ([], "no output format"),
    ],
    ids=["unknown", "none"],
)
def test_bad_formats_are_refused_naming_the_valid_ones(formats: list[str], named: str) -> None:
    for make in (writer_specs, lambda f: ConvertOptions(formats=tuple(f))):
        with pytest.raises(ConfigError) as info:
            make(formats)
        message = str(info.value)
        assert named in message and all(name in message for name in FORMATS)
