"""Write one session's frames and timestamps as a Zarr v3 group (``zarr/<session>.zarr``).

``frames`` is uint8 (N, 128, 128, 3) chunked along time; ``timestamps`` float32 (N,). Blocks
arrive chunk-aligned from a streaming reader, so memory is one block whatever N is. With
``shard_frames`` the sharding codec packs many chunks into one object, so a long session is a
handful of objects in a bucket instead of thousands; blocks are still one chunk, and a shard's
object is made once its last chunk is encoded (it holds its encoded chunks, ~1 MB, not its
frames, 50 MB for 1,024).

The bytes are zarr-python's (3.x), written without it: the metadata documents as its
``json.dumps(..., indent=2)`` writes them, each chunk padded with the fill value to the full
chunk shape and encoded by the same numcodecs codecs, shards as the sharding codec lays them out
(inner chunks in order, those wholly past the end left out, then the index of little-endian
(offset, length) pairs and its crc32c). Tests compare every file with what zarr itself writes.
Encoding a block (``encode_block``) holds a lock only to file a shard's encoded chunk: blocks
can be encoded and stored on several threads at once (zstd, blosc and the writes release the
GIL).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import numpy as np

from reacture_convert.errors import ConfigError
from reacture_convert.formats.zarr import (
    CODECS,
    DEFAULT_CHUNK_FRAMES,
    DEFAULT_CODEC,
    SHARD_INDEX_CODECS,
    SHARD_NO_CHUNK,
    numcodec,
)
from reacture_convert.output.storage import Keys

__all__ = ["BUCKET_SHARD_FRAMES", "FRAME_SHAPE", "ZarrOptions", "ZarrSessionWriter"]

FRAME_SHAPE = (128, 128, 3)
_DIMENSIONS = ["frame", "y", "x", "channel"]
_TIMESTAMP_CHUNK = 1 << 16
_TIMESTAMP_CODEC = CODECS["zstd"].compressors(3)  # timestamps: zstd at level 3


def _shard_object(chunks: Mapping[int, bytes], per_shard: int) -> bytes:
    """A shard's bytes: its encoded ``chunks`` (by their number in the shard) one after another,
    then the index (offset, size per chunk; ``SHARD_NO_CHUNK`` for none) and the index's crc32c."""
    import google_crc32c

    index = np.full((per_shard, 2), SHARD_NO_CHUNK, dtype="<u8")
    offset = 0
    for i in sorted(chunks):
        index[i] = (offset, len(chunks[i]))
        offset += len(chunks[i])
    raw = index.tobytes()
    crc = np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()
    return b"".join([*(chunks[i] for i in sorted(chunks)), raw, crc])


BUCKET_SHARD_FRAMES: Final = 1024
"""Frames per shard on an object store when none are asked for (docs/benchmarks.md, rows 8f and
9: a bucket takes the few big objects faster, and the reader reads them faster)."""


@dataclass(frozen=True, slots=True)
class ZarrOptions:
    """Chunking and compression of ``frames`` (see the README for the measured choice).

    ``shard_frames``: frames per object (the sharding codec), None for one object per chunk, or
    ``"auto"``: ``BUCKET_SHARD_FRAMES`` (a multiple of the chunk) on an object store and none
    on local disk, which ``run.convert.convert_session`` settles for its OUT (``for_output``; a
    writer given ``"auto"`` writes as on local disk)."""

    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    shard_frames: int | None | Literal["auto"] = "auto"
    codec: str = DEFAULT_CODEC
    level: int = 1

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError(
                f"unknown Zarr codec {self.codec!r}; choose one of {', '.join(CODECS)}"
            )
        if self.chunk_frames < 1:
            raise ConfigError("--chunk-frames must be at least 1")
        if isinstance(self.shard_frames, int) and (
            self.shard_frames < self.chunk_frames or self.shard_frames % self.chunk_frames
        ):
            raise ConfigError("--shard-frames must be a multiple of --chunk-frames")

    def for_output(self, local: bool) -> ZarrOptions:
        """These options with ``shard_frames="auto"`` settled for an OUT on local disk
        (``local``: no sharding) or on an object store."""
        if self.shard_frames != "auto":
            return self
        per_shard = BUCKET_SHARD_FRAMES // self.chunk_frames
        shard = None if local or per_shard < 2 else per_shard * self.chunk_frames
        return replace(self, shard_frames=shard)

    @property
    def block_frames(self) -> int:
        """Frames per object: a shard's when sharding (settled as on local disk), else a
        chunk's (how zarr-python is given them whole; ``ZarrSessionWriter`` takes chunks)."""
        shard = self.for_output(local=True).shard_frames
        return shard if isinstance(shard, int) else self.chunk_frames

    def compressors(self) -> list[dict[str, Any]]:
        """The compressor codecs of ``frames``, as its metadata names them."""
        return CODECS[self.codec].compressors(self.level)


def _encoder(codecs: list[dict[str, Any]]) -> Any:
    """The numcodecs codec that zarr's codec pipeline runs for ``codecs`` (None: no compressor)."""
    return numcodec(codecs[0]) if codecs else None


def _array_document(
    shape: list[int],
    dtype: str,
    chunk_shape: list[int],
    fill_value: Any,
    codecs: list[dict[str, Any]],
    dimensions: list[str],
) -> dict[str, Any]:
    return {
        "shape": shape,
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value,
        "codecs": codecs,
        "attributes": {},
        "dimension_names": dimensions,
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, indent=2, allow_nan=True).encode()


class ZarrSessionWriter:
    """Create the group in ``store`` (``Output.keys``: the group's folder), then
    ``write_frames`` block by block (or ``encode_block`` and ``put`` on helper threads),
    ``write_timestamps``, and ``write_attributes`` last."""

    def __init__(
        self,
        store: Keys,
        n_frames: int,
        attributes: Mapping[str, Any],
        options: ZarrOptions = ZarrOptions(),
    ) -> None:
        self.options = options
        self.n_frames = n_frames
        self.store = store
        self.chunk = max(1, min(options.chunk_frames, n_frames))
        self.shard: int | None = None
        self._shards: dict[int, dict[int, bytes]] = {}  # shard -> its chunks encoded so far
        self._lock = threading.Lock()  # blocks are encoded on several threads
        shard_frames = options.for_output(local=True).shard_frames
        if isinstance(shard_frames, int):
            shard = max(self.chunk, min(shard_frames, n_frames))
            self.shard = self.chunk * -(-shard // self.chunk)
        compressors = options.compressors()
        self._codec = _encoder(compressors)
        inner = [{"name": "bytes"}, *compressors]
        codecs: list[dict[str, Any]] = inner
        if self.shard is not None:
            codecs = [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [self.chunk, *FRAME_SHAPE],
                        "codecs": inner,
                        "index_codecs": SHARD_INDEX_CODECS,
                        "index_location": "end",
                    },
                }
            ]
        frames = _array_document(
            [n_frames, *FRAME_SHAPE],
            "uint8",
            [self.shard or self.chunk, *FRAME_SHAPE],
            0,
            codecs,
            _DIMENSIONS,
        )
        self.ts_chunk = max(1, min(n_frames, _TIMESTAMP_CHUNK))
        timestamps = _array_document(
            [n_frames],
            "float32",
            [self.ts_chunk],
            0.0,
            [{"name": "bytes", "configuration": {"endian": "little"}}, *_TIMESTAMP_CODEC],
            ["frame"],
        )
        self.write_attributes(attributes)
        self.store.put("frames/zarr.json", _json(frames))
        self.store.put("timestamps/zarr.json", _json(timestamps))

    @property
    def block_frames(self) -> int:
        """Frames per block handed to ``encode_block``: one chunk (the last one may be
        shorter), sharded or not."""
        return self.chunk

    def _encode_chunk(self, frames: np.ndarray) -> bytes:
        """One chunk, padded with zeros (the fill value) to the full chunk shape, encoded."""
        if frames.shape[0] < self.chunk:
            padded = np.zeros((self.chunk, *FRAME_SHAPE), dtype=np.uint8)
            padded[: frames.shape[0]] = frames
            frames = padded
        frames = np.ascontiguousarray(frames)
        return frames.tobytes() if self._codec is None else bytes(self._codec.encode(frames))

    def encode_block(self, start: int, block: np.ndarray) -> list[tuple[str, bytes]]:
        """The objects (key, bytes) that frames ``start`` .. ``start + len(block)``, one chunk
        (or what is left of the array at its end), complete: the chunk's object or, sharded,
        its shard's once every chunk of the shard is encoded (none before). Blocks may come in
        any order and from several threads; a shard holds its encoded chunks until then, not
        its frames."""
        k = block.shape[0]
        size = self.chunk
        if start % size or (k != size and start + k != self.n_frames) or k > size:
            raise ValueError(
                f"frames {start}..{start + k} are not one block of {size} frames of the array"
            )
        c = start // size
        data = self._encode_chunk(block)
        if self.shard is None:
            return [(f"frames/c/{c}/0/0/0", data)]
        per_shard = self.shard // self.chunk
        s, i = divmod(c, per_shard)
        chunks = min(per_shard, -(-self.n_frames // self.chunk) - s * per_shard)
        with self._lock:
            parts = self._shards.setdefault(s, {})
            if i in parts:
                raise ValueError(f"frames {start}..{start + k} were written already")
            parts[i] = data
            if len(parts) < chunks:
                return []
            del self._shards[s]
        return [(f"frames/c/{s}/0/0/0", _shard_object(parts, per_shard))]

    def put(self, objects: list[tuple[str, bytes]]) -> None:
        for key, data in objects:
            self.store.put(key, data)

    def write_frames(self, start: int, block: np.ndarray) -> None:
        self.put(self.encode_block(start, block))

    def write_timestamps(self, timestamps: np.ndarray) -> None:
        values = np.ascontiguousarray(timestamps, dtype="<f4")
        codec = _encoder(_TIMESTAMP_CODEC)
        for i, a in enumerate(range(0, values.size, self.ts_chunk)):
            chunk = values[a : a + self.ts_chunk]
            if chunk.size < self.ts_chunk:
                chunk = np.concatenate([chunk, np.zeros(self.ts_chunk - chunk.size, "<f4")])
            if chunk.view(np.uint32).any():  # zarr leaves out chunks that are all +0.0 (fill)
                self.store.put(f"timestamps/c/{i}", bytes(codec.encode(chunk)))

    def write_attributes(self, attributes: Mapping[str, Any]) -> None:
        """The group's attributes (its ``zarr.json`` is written again)."""
        document = {"attributes": dict(attributes), "zarr_format": 3, "node_type": "group"}
        self.store.put("zarr.json", _json(document))
