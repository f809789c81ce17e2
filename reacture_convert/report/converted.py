"""The sessions of a converted dataset: one per catalog row, read through ``read.session``
(the Zarr frames and timestamps, the rows Parquet) when its outputs are live."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from reacture_convert.ingest.files import FRAME_SHAPE
from reacture_convert.output.catalog import CatalogEntry, read_catalog
from reacture_convert.output.layout import CATALOG, rows_path, zarr_path
from reacture_convert.output.naming import is_safe_name
from reacture_convert.output.storage import Output
from reacture_convert.read.session import open_session, read_table
from reacture_convert.report import timeline
from reacture_convert.report.data import NOTED_ERRORS, Facts, Found, FrameReader, Session, page_name

__all__ = ["find", "is_dataset", "load"]


def is_dataset(out: Output) -> bool:
    """True when ``out`` is a converted dataset (holds catalog.parquet)."""
    with contextlib.suppress(OSError, ValueError, ImportError):
        return out.exists(CATALOG)
    return False


def find(out: Output) -> list[Found]:
    """One session per catalog row; converted (live) rows first, under their own name."""
    entries = sorted(
        read_catalog(out), key=lambda e: (not e.status.is_live, e.session or "", e.source)
    )
    used: set[str] = set()
    found: list[Found] = []
    for e in entries:
        name = e.session or e.prefix or "bundle"
        page = page_name(name if e.status.is_live else f"{name}-{e.status}", used)
        facts = Facts(
            session=name,
            page=page,
            status=e.status,
            source=e.source,
            prefix=e.prefix,
            metadata_session_id=e.metadata_session_id,
            n_frames=e.n_frames,
            n_rows=e.n_rows,
            blank_frames=e.blank_frames,
            findings=e.findings,
            reason=e.reason,
        )
        found.append((facts, functools.partial(_loaded, facts, e, out)))
    return found


@contextlib.contextmanager
def _loaded(facts: Facts, entry: CatalogEntry, out: Output) -> Iterator[Session]:
    yield load(facts, entry, out)


def load(facts: Facts, entry: CatalogEntry, out: Output) -> Session:
    """Read a converted session's Zarr group and rows (only when its outputs are live)."""
    if not entry.status.is_live:
        return Session(
            facts,
            notes=(
                f"not converted (status {entry.status}): no outputs to "
                "show" + (f"; {entry.reason}" if entry.reason else ""),
            ),
        )
    session = entry.session or ""
    if not is_safe_name(session):
        return Session(
            facts,
            notes=(
                f"the catalog names this session {session!r}, which is "
                "not a safe name: its outputs are not read",
            ),
        )
    notes: list[str] = []
    result = Session(facts)
    try:
        arrays = open_session(out, session)
        metadata = arrays.attrs.get("metadata")
        if isinstance(metadata, Mapping):
            result = replace(result, facts=replace(facts, metadata=metadata))
        frames = arrays.frames
        result = replace(
            result,
            timestamps=np.asarray(arrays.timestamps[:], dtype=np.float64),
            bottom_up=arrays.bottom_up,
        )
        if tuple(frames.shape[1:]) == FRAME_SHAPE and str(frames.dtype) == "uint8":
            result = replace(
                result, read_frames=_frames_reader(frames), n_stored=int(frames.shape[0])
            )
        else:
            notes.append(
                f"zarr frames have shape {frames.shape} {frames.dtype}, not "
                "(N, 128, 128, 3) uint8: no thumbnails"
            )
    except NOTED_ERRORS as e:
        notes.append(f"{zarr_path(session)} cannot be read ({type(e).__name__}: {e})")
    try:
        table = read_table(out, rows_path(session), timeline.ROW_COLUMNS)
        result = replace(result, timeline=timeline.from_table(table))
    except NOTED_ERRORS as e:
        notes.append(f"{rows_path(session)} cannot be read ({type(e).__name__}: {e})")
    return replace(result, notes=tuple(notes))


def _frames_reader(frames: Any) -> FrameReader:
    def read(indices: Sequence[int]) -> npt.NDArray[np.uint8]:
        out = np.empty((len(indices), *FRAME_SHAPE), dtype=np.uint8)
        for k, i in enumerate(indices):
            out[k] = np.asarray(frames[i])
        return out

    return read
