"""Whole chunks of a session's frames, the unit the training readers decode.

The converter's default layout (docs/output-layout.md: chunks of 64 frames, the ``bytes`` codec
then ``zstd``, no sharding; ``formats.zarr`` marks which codecs are read so) is read straight
from the store: the chunk's object by its key, one zstd decode. zarr-python reads the same bytes
the same way, but its asynchronous machinery costs about as much again per chunk. Any other
layout (lz4, no compression, the sharding codec, a checksum) is read through zarr-python.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from reacture_convert.formats.zarr import direct_decoder
from reacture_convert.output.layout import zarr_path
from reacture_convert.output.storage import Output
from reacture_convert.read.session import open_session

__all__ = ["ChunkReader"]


class ChunkReader:
    """Reads chunk ``c`` of session ``session``'s ``frames``: frames ``c * size`` to
    ``(c + 1) * size`` (fewer in the last chunk), uint8 (n, 128, 128, 3). Open it in the
    process that reads."""

    def __init__(self, out: Output, session: str) -> None:
        frames = open_session(out, session).frames
        self.frames = frames
        self.size = int(frames.chunks[0])
        self.n_frames = int(frames.shape[0])
        meta: Any = frames.metadata
        documents = [codec.to_dict() for codec in meta.codecs]
        self._decoder = None if frames.shards is not None else direct_decoder(documents)
        self.direct = self._decoder is not None
        self._meta = meta
        self._fs = out.fs
        self._folder = out.path(zarr_path(session), "frames")

    def read(self, c: int) -> npt.NDArray[np.uint8]:
        start = c * self.size
        stop = min(start + self.size, self.n_frames)
        if self._decoder is None:
            return np.asarray(self.frames[start:stop], dtype=np.uint8)
        key = self._meta.encode_chunk_key((c, 0, 0, 0))
        shape = (self.size, *self.frames.shape[1:])
        try:
            raw = self._fs.cat_file(f"{self._folder}/{key}")
        except FileNotFoundError:  # a chunk never written holds the fill value
            return np.full((stop - start, *shape[1:]), self._meta.fill_value, np.uint8)
        block = np.frombuffer(self._decoder.decode(raw), np.uint8).reshape(shape)
        return block[: stop - start]
