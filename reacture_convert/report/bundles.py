"""The sessions of unconverted bundles: found with ``discover``, judged with
``validate_bundle``, and read with the bundle readers of ``ingest`` (timestamps, rows), reading
only the frames a page shows."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import IO, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import InputError, InputNotFoundError
from reacture_convert.findings import Finding, Severity
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, open_file
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.files import FRAME_SHAPE, read_array_header, read_timestamps
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.ingest.npy import NpyHeader
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.naming import session_name
from reacture_convert.report import timeline
from reacture_convert.report.data import NOTED_ERRORS, Facts, Found, FrameReader, Session, page_name

__all__ = ["find", "load", "seek_forward"]

_FRAME_BYTES: Final = math.prod(FRAME_SHAPE)
_SKIP_BLOCK: Final = 1 << 20


def find(target: str, opts: StorageOptions) -> tuple[list[Found], tuple[Finding, ...]]:
    """Validate every bundle found under ``target``: one session each, and the findings not
    tied to a bundle. ``InputError`` (``InputNotFoundError``) when there is no bundle."""
    discovered = discover([target], opts)
    if not discovered.bundles:
        detail = "; ".join(f"{f.code}: {f.file}: {f.message}" for f in discovered.findings)
        missing = any(f.code == "INPUT_NOT_FOUND" for f in discovered.findings)
        cls = InputNotFoundError if missing else InputError
        raise cls(
            f"{target}: no converted dataset (catalog.parquet) and no bundle found"
            + (f" ({detail})" if detail else "")
        )
    used: set[str] = set()
    found: list[Found] = []
    for bundle in discovered.bundles:
        report = validate_bundle(bundle, opts)
        name = session_name(bundle.prefix)
        facts = Facts(
            session=name,
            page=page_name(name, used),
            status="valid (not converted)" if report.ok else "invalid (would be rejected)",
            source=bundle.source,
            prefix=bundle.prefix,
            metadata_session_id=report.metadata_session_id,
            n_frames=report.n_frames,
            n_rows=report.n_rows,
            blank_frames=report.blank_frames,
            metadata=dict(report.metadata or {}),
            findings=report.findings,
        )
        found.append((facts, functools.partial(_loaded, facts, bundle, opts)))
    return found, discovered.findings


@contextlib.contextmanager
def _loaded(facts: Facts, bundle: BundleRef, opts: StorageOptions) -> Iterator[Session]:
    """The session, with a legacy four-file export read through its five-file view (which
    lives as long as the page is being drawn)."""
    with as_five_file(bundle, opts) as (view, _):
        yield load(facts, view or bundle, opts)


def load(facts: Facts, bundle: BundleRef, opts: StorageOptions) -> Session:
    """Read a bundle's timestamps and rows (streaming); frames are read when shown."""
    notes: list[str] = []
    result = Session(facts)
    if "timestamps.npy" in bundle.files:
        try:
            ts = np.asarray(read_timestamps(bundle, opts), dtype=np.float64)
            result = replace(result, timestamps=ts)
        except NOTED_ERRORS as e:
            notes.append(_unread(facts, bundle, "timestamps.npy", e))
    if "frames.npy" in bundle.files:
        try:
            header = read_array_header(bundle, "frames.npy", opts)
            result = replace(
                result, read_frames=_frames_reader(bundle, header, opts), n_stored=header.shape[0]
            )
        except NOTED_ERRORS as e:
            notes.append(_unread(facts, bundle, "frames.npy", e))
    if "data.jsonl" in bundle.files:
        ref = bundle.files["data.jsonl"]
        try:
            with open_file(ref, opts) as f:
                rows = (r for r in iter_jsonl(f, ref.name) if isinstance(r, ParsedRow))
                result = replace(result, timeline=timeline.from_rows(rows))
        except NOTED_ERRORS as e:
            notes.append(_unread(facts, bundle, "data.jsonl", e))
    missing = [r for r in ("frames.npy", "timestamps.npy", "data.jsonl") if r not in bundle.files]
    if missing:
        notes.append(f"missing file(s): {', '.join(missing)}")
    return replace(result, notes=tuple(notes))


def _unread(facts: Facts, bundle: BundleRef, role: str, error: BaseException) -> str:
    """The note for a file that cannot be read: validation's verdict when it found errors in
    that file (listed among the findings), else the error."""
    name = bundle.files[role].name
    if any(f.severity is Severity.ERROR and f.file == name for f in facts.findings):
        return f"{role} cannot be read: validation found errors in {name} (see the findings)"
    return f"{role} cannot be read ({type(error).__name__}: {error})"


def _frames_reader(bundle: BundleRef, header: NpyHeader, opts: StorageOptions) -> FrameReader:
    """Reads only the frames asked for: seeks (or skips forward in an archive member)."""
    ref = bundle.files["frames.npy"]

    def read(indices: Sequence[int]) -> npt.NDArray[np.uint8]:
        out = np.empty((len(indices), *FRAME_SHAPE), dtype=np.uint8)
        order = sorted(range(len(indices)), key=lambda k: indices[k])
        with open_file(ref, opts) as f:
            for k in order:
                i = indices[k]
                if not 0 <= i < header.shape[0]:
                    raise IndexError(
                        f"{ref.label()}: frame {i} out of range (0-{header.shape[0] - 1})"
                    )
                seek_forward(f, header.data_offset + i * _FRAME_BYTES, ref.name)
                data = f.read(_FRAME_BYTES)
                if len(data) != _FRAME_BYTES:
                    raise InputError(
                        f"{ref.label()}: ends inside frame {i}; the file changed "
                        "since it was validated (re-run)"
                    )
                out[k] = np.frombuffer(data, dtype=np.uint8).reshape(FRAME_SHAPE)
        return out

    return read


def seek_forward(f: IO[bytes], offset: int, name: str) -> None:
    """Go to ``offset``: seek when the stream can, else read and drop what lies before it."""
    if f.seekable():
        f.seek(offset)
        return
    pos = f.tell()
    while pos < offset:
        skipped = f.read(min(offset - pos, _SKIP_BLOCK))
        if not skipped:
            raise InputError(f"{name}: ends at byte {pos}, before byte {offset}")
        pos += len(skipped)
