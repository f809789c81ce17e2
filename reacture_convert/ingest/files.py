"""Read a bundle's arrays once it is known to be valid: its timestamps, its frame blocks.

``validate`` is the reader that judges the files and reports every problem; the writers, the
report and ``verify --sources`` read a validated bundle again through these functions, which
raise ``InputError`` when a file no longer is what validation saw (changed since)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

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
    bundle: BundleRef, role: str, opts: StorageOptions | None
) -> tuple[NpyHeader | None, list[Finding]]:
    """The header of ``frames.npy`` or ``timestamps.npy`` and every finding about it (the
    header's quirks, then its layout: dtype, shape); the header is None when it is unusable."""
    ref = bundle.files[role]
    dtype, trailing, ndim = _LAYOUTS[role]
    with open_file(ref, opts) as f:
        header, findings = read_npy_header(f, ref.size, ref.name)
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
