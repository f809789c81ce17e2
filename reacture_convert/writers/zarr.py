"""Write one session's frames and timestamps as a Zarr v3 group (``zarr/<session>.zarr``).

``frames`` is uint8 (N, 128, 128, 3) chunked along time; ``timestamps`` float32 (N,). Blocks
arrive chunk-aligned from a streaming reader, so memory is one block whatever N is. With
``shard_frames`` the sharding codec packs many chunks into one object, so a long session is a
handful of objects in a bucket instead of thousands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BloscCodec, ZstdCodec

from reacture_convert.errors import ConfigError

__all__ = ["ZarrOptions", "ZarrSessionWriter", "CODECS", "open_store"]

CODECS = ("zstd", "lz4", "none")
FRAME_SHAPE = (128, 128, 3)


@dataclass(frozen=True, slots=True)
class ZarrOptions:
    """Chunking and compression of ``frames`` (see the README for the measured choice)."""

    chunk_frames: int = 64
    shard_frames: int | None = None
    codec: str = "zstd"
    level: int = 1

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError(
                f"unknown Zarr codec {self.codec!r}; choose one of {', '.join(CODECS)}"
            )
        if self.chunk_frames < 1:
            raise ConfigError("--chunk-frames must be at least 1")
        if self.shard_frames is not None and (
            self.shard_frames < self.chunk_frames or self.shard_frames % self.chunk_frames
        ):
            raise ConfigError("--shard-frames must be a multiple of --chunk-frames")

    @property
    def block_frames(self) -> int:
        """Frames per write: one shard when sharding, else one chunk."""
        return self.shard_frames or self.chunk_frames

    def compressors(self) -> list[BytesBytesCodec]:
        if self.codec == "zstd":
            return [ZstdCodec(level=self.level)]
        if self.codec == "lz4":
            return [BloscCodec(cname="lz4", clevel=self.level, shuffle="noshuffle")]
        return []


def open_store(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """A writable zarr store for a local path or an fsspec URL."""
    if "://" not in url or url.startswith("file://"):
        return zarr.storage.LocalStore(url.removeprefix("file://"))
    return zarr.storage.FsspecStore.from_url(url, storage_options=dict(storage_options or {}))


class ZarrSessionWriter:
    """Create the group, then ``write_frames`` block by block, then ``write_timestamps``."""

    def __init__(
        self,
        url: str,
        n_frames: int,
        attributes: Mapping[str, Any],
        options: ZarrOptions = ZarrOptions(),
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.options = options
        self.group = zarr.open_group(
            open_store(url, storage_options), mode="w", zarr_format=3, attributes=dict(attributes)
        )
        chunk = max(1, min(options.chunk_frames, n_frames))
        shards = None
        if options.shard_frames is not None:
            shards = (max(chunk, min(options.shard_frames, n_frames)), *FRAME_SHAPE)
            if shards[0] % chunk:
                shards = (chunk * -(-shards[0] // chunk), *FRAME_SHAPE)
        self.frames = self.group.create_array(
            "frames",
            shape=(n_frames, *FRAME_SHAPE),
            chunks=(chunk, *FRAME_SHAPE),
            shards=shards,
            dtype="uint8",
            compressors=options.compressors(),
            fill_value=0,
            dimension_names=["frame", "y", "x", "channel"],
            # Write every chunk: checking whether a chunk is all fill value (zarr's default)
            # costs more than writing it; an all-black chunk compresses to a few bytes anyway.
            config={"write_empty_chunks": True},
        )
        self.timestamps = self.group.create_array(
            "timestamps",
            shape=(n_frames,),
            chunks=(max(1, min(n_frames, 1 << 16)),),
            dtype="float32",
            compressors=[ZstdCodec(level=3)],
            fill_value=0.0,
            dimension_names=["frame"],
        )

    def write_frames(self, start: int, block: np.ndarray) -> None:
        self.frames[start : start + block.shape[0]] = block

    def write_timestamps(self, timestamps: np.ndarray) -> None:
        if timestamps.size:
            self.timestamps[:] = timestamps.astype("<f4", copy=False)
