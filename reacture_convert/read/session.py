"""Open one converted session's outputs: the one opener used by the dataset, the training
readers, ``verify``, ``stats`` and the report."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from reacture_convert.errors import OutputError
from reacture_convert.output.layout import zarr_path
from reacture_convert.output.storage import Output

__all__ = ["SessionArrays", "open_session", "read_table"]


@dataclass(frozen=True, eq=False)
class SessionArrays:
    """A session's Zarr group, read-only: its ``frames`` (uint8 N x 128 x 128 x 3, lazy) and
    ``timestamps`` (float32 N) arrays and its attributes."""

    group: zarr.Group
    frames: zarr.Array[Any]
    timestamps: zarr.Array[Any]

    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def bottom_up(self) -> bool:
        """Whether row 0 of a stored frame is the bottom of the picture (every ReActure
        export: WebGL ``readPixels`` order)."""
        info = self.attrs.get("frames")
        return not (isinstance(info, dict) and info.get("orientation") == "top-down")


def open_session(out: Output, session: str) -> SessionArrays:
    """Open ``zarr/<session>.zarr`` of ``out`` read-only (reads metadata only).

    Open it in the process that reads: a store over a network filesystem holds sessions that
    do not survive ``fork``. Raises ``OutputError`` when the group or its arrays are missing."""
    rel = zarr_path(session)
    url = out.url_of(rel)
    store = out.zarr_store(rel, read_only=True)
    try:
        group = zarr.open_group(store, mode="r")
    except FileNotFoundError as e:
        raise OutputError(
            f"{url}: no Zarr group for session {session!r}; convert it with "
            "--format zarr (a wds-only run writes no Zarr)"
        ) from e
    frames, ts = group.get("frames"), group.get("timestamps")
    if not isinstance(frames, zarr.Array) or not isinstance(ts, zarr.Array):
        raise OutputError(
            f"{url}: 'frames' and 'timestamps' must be arrays; convert the session again"
        )
    return SessionArrays(group, frames, ts)


def read_table(out: Output, rel: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The Parquet file ``rel`` of ``out`` (only ``columns`` when given); ``OutputError`` when
    it is missing."""
    path = out.path(rel)
    if not out.fs.exists(path):
        raise OutputError(f"{out.url_of(rel)} is missing; convert the session with --format zarr")
    with out.fs.open(path, "rb") as f:
        table: pa.Table = pq.read_table(f, columns=list(columns) if columns else None)
    return table
