"""The sample sources: one module per stored form a reader can read, each behind
``base.SampleSource``, and the registry the framework adapters build them from.

Adding a source is one module here plus one line in ``SOURCES`` (``docs/architecture.md``)."""

from __future__ import annotations

from typing import Final

from reacture_convert.errors import ConfigError
from reacture_convert.read.sources.base import (
    SampleSource,
    log_skips,
    no_samples_error,
    refuse_empty,
)
from reacture_convert.read.sources.shards import ShardSource
from reacture_convert.read.sources.zarr import ZarrSource

__all__ = [
    "SOURCES",
    "SampleSource",
    "ShardSource",
    "ZarrSource",
    "log_skips",
    "no_samples_error",
    "refuse_empty",
    "source_class",
]

SOURCES: Final[dict[str, type[ZarrSource] | type[ShardSource]]] = {
    "zarr": ZarrSource,  # zarr/<session>.zarr + the Parquet tables: random access, chunk-aware
    "wds": ShardSource,  # wds/*.tar: streamed shard by shard
}
"""``source=`` name -> the class that reads it."""


def source_class(name: str) -> type[ZarrSource] | type[ShardSource]:
    """The source registered as ``name``; ``ConfigError`` naming the choices otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}") from None
