"""Whole chunks of a session's frames, the unit the training readers decode.

The converter's default layout (docs/output-layout.md: chunks of 64 frames, the ``bytes`` codec
then ``zstd``, no sharding; ``formats.zarr`` marks which codecs are read so) is read straight
from the store: the chunk's object by its key, one zstd decode. zarr-python reads the same bytes
the same way, but its asynchronous machinery costs about as much again per chunk. Any other
layout (lz4, no compression, the sharding codec, a checksum) is read through zarr-python.

``read_chunks`` reads the chunks a batch needs at once: their objects are requested together
(on an object store, up to ``fetch.FETCH_THREADS`` at a time: a batch drawn from eight chunks waits
for one round trip, not eight) and, with a ``cache.ByteCache``, kept on local disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from reacture_convert.formats.zarr import direct_decoder
from reacture_convert.output.fetch import pool
from reacture_convert.output.layout import zarr_path
from reacture_convert.output.storage import Output
from reacture_convert.read.cache import ByteCache
from reacture_convert.read.session import open_session

__all__ = ["ChunkReader", "read_chunks"]


class ChunkReader:
    """Reads chunk ``c`` of session ``session``'s ``frames``: frames ``c * size`` to
    ``(c + 1) * size`` (fewer in the last chunk), uint8 (n, 128, 128, 3). Open it in the
    process that reads. ``identity`` names the session's content (its catalog row: the
    frames' sha256 and the conversion's time) for the cache's keys."""

    def __init__(self, out: Output, session: str, identity: str = "") -> None:
        frames = open_session(out, session).frames
        self.frames = frames
        self.size = int(frames.chunks[0])
        self.n_frames = int(frames.shape[0])
        meta: Any = frames.metadata
        documents = [codec.to_dict() for codec in meta.codecs]
        self._decoder = None if frames.shards is not None else direct_decoder(documents)
        self.direct = self._decoder is not None
        self._meta = meta
        self.fs = out.fs
        self._folder = out.path(zarr_path(session), "frames")
        layout = json.dumps(meta.to_dict(), sort_keys=True, default=str)
        self._identity = f"zarr-chunk|{identity}|{layout}"

    def read(self, c: int) -> npt.NDArray[np.uint8]:
        return read_chunks([(self, c)])[0]

    def path(self, c: int) -> str:
        return f"{self._folder}/{self._meta.encode_chunk_key((c, 0, 0, 0))}"

    def cache_key(self, c: int) -> str:
        return f"{self._identity}|{c}"

    def decode(self, c: int, raw: bytes | None) -> npt.NDArray[np.uint8]:
        """Chunk ``c`` from its object's bytes (None: never written, the fill value)."""
        start = c * self.size
        stop = min(start + self.size, self.n_frames)
        shape = (self.size, *self.frames.shape[1:])
        if raw is None or self._decoder is None:
            return np.full((stop - start, *shape[1:]), self._meta.fill_value, np.uint8)
        block = np.frombuffer(self._decoder.decode(raw), np.uint8).reshape(shape)
        return block[: stop - start]

    def read_zarr(self, c: int) -> npt.NDArray[np.uint8]:
        """Chunk ``c`` through zarr-python (layouts not read directly)."""
        start = c * self.size
        return np.asarray(self.frames[start : min(start + self.size, self.n_frames)], np.uint8)


def read_chunks(
    wanted: Sequence[tuple[ChunkReader, int]], cache: ByteCache | None = None
) -> list[npt.NDArray[np.uint8]]:
    """The chunks ``wanted`` (``(reader, chunk)`` pairs), fetched and decoded together on this
    process's fetch threads (zstd and the object store's I/O release the GIL)."""

    def load(i: int) -> npt.NDArray[np.uint8]:
        reader, c = wanted[i]
        key = reader.cache_key(c)
        raw = cache.get(key) if cache is not None else None
        if raw is None:
            try:
                raw = reader.fs.cat_file(reader.path(c))
            except FileNotFoundError:  # a chunk never written holds the fill value
                return reader.decode(c, None)
            if cache is not None:
                cache.put(key, raw)
        return reader.decode(c, raw)

    direct = [i for i, (reader, _) in enumerate(wanted) if reader.direct]
    if len(direct) > 1:
        got = dict(zip(direct, pool().map(load, direct), strict=True))
    else:
        got = {i: load(i) for i in direct}
    return [got[i] if i in got else r.read_zarr(c) for i, (r, c) in enumerate(wanted)]
