"""The frame codecs of the Zarr arrays: one table that the writer (``writers.zarr``), the chunk
reader (``read.chunks``) and the command line (``--codec``) look up.

A ``Codec`` is a ``--codec`` choice: the compressor documents it puts in an array's
``zarr.json`` at a level, and whether the chunk reader decodes its chunks itself (the
converter's default layout, docs/output-layout.md) instead of through zarr-python. The numcodecs
codec that encodes and decodes a compressor document is looked up by the document's name
(``numcodec``). numcodecs is imported only when a codec is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CODECS",
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_CODEC",
    "SHARD_INDEX_CODECS",
    "SHARD_NO_CHUNK",
    "Codec",
    "direct_decoder",
    "direct_shard_codecs",
    "numcodec",
]

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Codec:
    """One ``--codec`` choice (see the module doc)."""

    name: str
    compressors: Callable[[int], list[Document]]  # level -> the compressor documents
    direct: bool = False


def _zstd(level: int) -> list[Document]:
    return [{"name": "zstd", "configuration": {"level": level, "checksum": False}}]


def _lz4(level: int) -> list[Document]:
    config = {
        "typesize": 1,
        "cname": "lz4",
        "clevel": level,
        "shuffle": "noshuffle",
        "blocksize": 0,
    }
    return [{"name": "blosc", "configuration": config}]


CODECS: Final[Mapping[str, Codec]] = {
    c.name: c
    for c in (
        Codec("zstd", _zstd, direct=True),
        Codec("lz4", _lz4),
        Codec("none", lambda level: []),
    )
}
"""The codecs, by ``--codec`` name, in the order the command line lists them."""

# The frames' chunking and codec when none is asked for (``writers.zarr.ZarrOptions``, the
# command line's defaults): docs/benchmarks.md has the measurements that chose them.
DEFAULT_CHUNK_FRAMES: Final = 64
DEFAULT_CODEC: Final = "zstd"


def _zstd_codec(config: Mapping[str, Any]) -> Any:
    from numcodecs import Zstd

    return Zstd(level=config["level"], checksum=config["checksum"])


def _blosc_codec(config: Mapping[str, Any]) -> Any:
    from numcodecs import Blosc

    return Blosc(
        cname=config["cname"],
        clevel=config["clevel"],
        shuffle=Blosc.NOSHUFFLE,
        blocksize=config["blocksize"],
        typesize=config["typesize"],
    )


_NUMCODECS: Final[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {
    "zstd": _zstd_codec,
    "blosc": _blosc_codec,
}


def numcodec(document: Mapping[str, Any]) -> Any:
    """The numcodecs codec that zarr's codec pipeline runs for a compressor ``document``."""
    return _NUMCODECS[document["name"]](document["configuration"])


def direct_decoder(codecs: Sequence[Mapping[str, Any]]) -> Any | None:
    """The numcodecs codec that decodes a chunk of an unsharded array straight from the store,
    when its ``codecs`` (metadata documents) are ``bytes`` then the compressor of a ``direct``
    codec, as the converter writes it; else None (read it through zarr-python)."""
    if len(codecs) != 2 or codecs[0].get("name") != "bytes":
        return None
    compressor = dict(codecs[1])
    level = compressor.get("configuration", {}).get("level")
    for codec in CODECS.values():
        if codec.direct and isinstance(level, int) and codec.compressors(level) == [compressor]:
            return numcodec(compressor)
    return None


SHARD_INDEX_CODECS: Final[list[Document]] = [
    {"name": "bytes", "configuration": {"endian": "little"}},
    {"name": "crc32c"},
]
"""The sharding codec's index codecs as the converter writes them (``writers.zarr``): each inner
chunk's (offset, byte count) as little-endian uint64, then their crc32c."""


SHARD_NO_CHUNK: Final = 2**64 - 1
"""The shard index's offset and byte count of a chunk not in the shard."""


def direct_shard_codecs(codecs: Sequence[Mapping[str, Any]]) -> list[Document] | None:
    """The inner chunks' codec documents of a sharded array whose chunks the chunk reader reads
    straight from the store: one ``sharding_indexed`` codec, its index at the end of the shard
    in ``SHARD_INDEX_CODECS`` (as the converter writes it); else None."""
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    config = codecs[0].get("configuration", {})
    if config.get("index_location", "end") != "end":
        return None
    if [dict(c) for c in config.get("index_codecs", ())] != SHARD_INDEX_CODECS:
        return None
    return [dict(c) for c in config.get("codecs", ())]
