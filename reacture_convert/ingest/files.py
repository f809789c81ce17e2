"""Read a bundle's files: judge an array header, read a validated bundle's arrays again, hash.

``validate`` is the reader that judges the files and reports every problem (and, through
``HashingReader``, hashes each file in the same read); the writers, the report and ``verify
--sources`` read a validated bundle again through these functions, which raise ``InputError``
when a file no longer is what validation saw (changed since)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import InputError
from reacture_convert.findings import Finding, Severity
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, open_file
from reacture_convert.ingest.npy import (
    NpyHeader,
    check_layout,
    iter_npy_chunks,
    read_npy_header,
    read_npy_small,
)

__all__ = [
    "FRAME_SHAPE",
    "HashingReader",
    "hash_files",
    "iter_frame_blocks",
    "judge_array_header",
    "read_array_header",
    "read_timestamps",
]

FRAME_SHAPE = (128, 128, 3)
HASH_BLOCK = 1 << 20
_LAYOUTS = {
    "frames.npy": ("|u1", FRAME_SHAPE, 4),
    "timestamps.npy": ("<f4", (), 1),
}


def judge_array_header(
    bundle: BundleRef, role: str, opts: StorageOptions | None, stream: IO[bytes] | None = None
) -> tuple[NpyHeader | None, list[Finding]]:
    """The header of ``frames.npy`` or ``timestamps.npy`` and every finding about it (the
    header's quirks, then its layout: dtype, shape); the header is None when it is unusable.
    ``stream``: the file, open at its start (it is left just after the header), else opened."""
    ref = bundle.files[role]
    dtype, trailing, ndim = _LAYOUTS[role]
    if stream is None:
        with open_file(ref, opts) as f:
            header, findings = read_npy_header(f, ref.size, ref.name)
    else:
        header, findings = read_npy_header(stream, ref.size, ref.name)
    if header is None:
        return None, findings
    layout = check_layout(header, ref.name, dtype=dtype, trailing_shape=trailing, ndim=ndim)
    return (None if layout else header), [*findings, *layout]


def read_array_header(bundle: BundleRef, role: str, opts: StorageOptions | None) -> NpyHeader:
    """The header of ``frames.npy`` or ``timestamps.npy`` of a validated bundle; ``InputError``
    when it is not usable any more."""
    header, findings = judge_array_header(bundle, role, opts)
    bad = [f.message for f in findings if f.severity is Severity.ERROR]
    if header is None or bad:
        ref = bundle.files[role]
        raise InputError(
            f"{ref.label()}: {'; '.join(bad) or 'unreadable header'}; the file "
            "changed since it was validated (re-run)"
        )
    return header


def read_timestamps(bundle: BundleRef, opts: StorageOptions | None) -> npt.NDArray[np.float32]:
    """timestamps.npy as float32 (N,), exact."""
    header = read_array_header(bundle, "timestamps.npy", opts)
    ref = bundle.files["timestamps.npy"]
    with open_file(ref, opts) as f:
        return read_npy_small(f, header, file=ref.name)


def iter_frame_blocks(
    bundle: BundleRef, opts: StorageOptions | None, block_frames: int
) -> Iterator[npt.NDArray[np.uint8]]:
    """frames.npy in blocks of ``block_frames`` frames (the last may be shorter), streamed."""
    header = read_array_header(bundle, "frames.npy", opts)
    ref = bundle.files["frames.npy"]
    with open_file(ref, opts) as f:
        yield from iter_npy_chunks(f, header, block_frames, file=ref.name)


def hash_files(bundle: BundleRef, storage_options: StorageOptions | None = None) -> dict[str, str]:
    """sha256 of each present file of the bundle, streamed."""
    out: dict[str, str] = {}
    for role, ref in sorted(bundle.files.items()):
        h = hashlib.sha256()
        with open_file(ref, storage_options) as f:
            while block := f.read(HASH_BLOCK):
                h.update(block)
        out[role] = h.hexdigest()
    return out


class HashingReader(io.RawIOBase):
    """A binary stream that hashes (sha256) what is read through it, from its first byte on.

    Reads may skip back (``seek``) and forth: only bytes beyond those already hashed are added,
    so a file read from start to end once is hashed once, in the same pass. ``finish`` reads
    what is left (up to ``drain`` bytes) and gives the digest when the whole file went through,
    else None (the caller hashes it apart). A raw stream: ``io.BufferedReader`` may wrap it.
    ``count`` and ``hexdigest()``: the bytes hashed so far (a prefix of the file) and their
    sha256."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._hash = hashlib.sha256()
        self._pos = 0  # position of the stream
        self._done = 0  # bytes hashed: always a prefix of the file
        self._gap = False  # a read started beyond the hashed prefix

    @property
    def count(self) -> int:
        return self._done

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def _seen(self, data: Any, n: int) -> None:
        end = self._pos + n
        if self._pos > self._done:
            self._gap = True
        elif end > self._done:
            self._hash.update(memoryview(data)[self._done - self._pos : n])
            self._done = end
        self._pos = end

    def read(self, n: int | None = -1) -> bytes:
        data = self._stream.read(-1 if n is None else n)
        self._seen(data, len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:
            data = self._stream.read(len(memoryview(buffer)))
            n = len(data)
            memoryview(buffer).cast("B")[:n] = data
        else:
            n = readinto(buffer)
        self._seen(memoryview(buffer).cast("B"), n)
        return n

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._stream.seek(offset, whence)
        return self._pos

    def seekable(self) -> bool:
        return bool(self._stream.seekable())

    def readable(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return str(getattr(self._stream, "name", ""))

    def finish(self, drain: int = HASH_BLOCK) -> str | None:
        """The file's sha256 when every byte of it has been read (reading up to ``drain`` more
        bytes to reach its end), else None."""
        if self._gap or self._pos != self._done:
            return None
        while drain > 0:
            data = self.read(min(drain, HASH_BLOCK))
            if not data:
                return self._hash.hexdigest()
            drain -= len(data)
        return None
