"""A converted dataset as stored: ``open_stored(OUT)`` -> ``StoredDataset`` of ``StoredSession``s,
and the one opener of a session's Zarr group and Parquet tables.

This is the bottom of ``read/``: the sample sources (``read.sources``), ``verify``, ``stats`` and
the report read through it, and the public facade (``read.dataset``) adds ReActure's loader API
on top of these classes. Nothing here reads samples or imports a framework.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from reacture_convert.errors import OutputError, storage_errors
from reacture_convert.formats.wds.index import WdsIndex, read_index
from reacture_convert.output.catalog import CATALOG, CatalogEntry, read_catalog
from reacture_convert.output.layout import frames_table_path, rows_path, zarr_path
from reacture_convert.output.storage import Output
from reacture_convert.read.labels import LABEL_COLUMNS, FrameLabels

__all__ = [
    "OutLike",
    "SessionArrays",
    "StoredDataset",
    "StoredSession",
    "as_output",
    "open_session",
    "open_stored",
    "orientation_of",
    "read_stored_catalog",
    "read_table",
]

OutLike = str | os.PathLike[str] | Output
"""A converted dataset's location: a folder, an fsspec URL, or an ``Output``."""


def as_output(out: OutLike, storage_options: Mapping[str, Any] | None = None) -> Output:
    """``out`` as an ``Output`` (``storage_options`` apply to a str or path only)."""
    if isinstance(out, Output):
        return out
    return Output(os.fspath(out), dict(storage_options or {}))


def orientation_of(attrs: Mapping[str, Any]) -> str:
    """How a session's frames are stored, from its Zarr attributes: ``"top-down"`` only when
    they say so, else ``"bottom-up"`` (every ReActure export: WebGL ``readPixels`` order)."""
    info = attrs.get("frames")
    value = info.get("orientation") if isinstance(info, dict) else None
    return "top-down" if value == "top-down" else "bottom-up"


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
        return orientation_of(self.attrs) == "bottom-up"


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


@dataclass(frozen=True)
class StoredSession:
    """One converted session as stored. Every property reads on first access and keeps it."""

    name: str
    entry: CatalogEntry
    out: Output = field(repr=False)

    @functools.cached_property
    def _zarr(self) -> SessionArrays:
        return open_session(self.out, self.name)

    @property
    def frames(self) -> Any:
        """uint8 (N, 128, 128, 3), lazy: index it to read (``frames[i]``, ``frames[a:b]``).
        The bytes are stored as frames.npy held them: see ``orientation``."""
        return self._zarr.frames

    @functools.cached_property
    def timestamps(self) -> npt.NDArray[np.float32]:
        """float32 (N,): ms since game start of each frame, the exact values of timestamps.npy."""
        return np.asarray(self._zarr.timestamps[:], dtype=np.float32)

    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        """Every attribute of the Zarr group (metadata, provenance, frames, ...)."""
        return dict(self._zarr.attrs)

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle's metadata.json object (kept in the Zarr attributes)."""
        meta = self.attrs.get("metadata")
        return dict(meta) if isinstance(meta, dict) else {}

    @property
    def orientation(self) -> str:
        """How rows of a frame are stored (``orientation_of``): ``"bottom-up"`` for every
        ReActure export (WebGL ``readPixels``): ``frame[::-1]`` shows it right way up."""
        return orientation_of(self.attrs)

    @functools.cached_property
    def rows(self) -> pa.Table:
        """``rows/<session>.parquet``: every data.jsonl row, in file order."""
        return read_table(self.out, rows_path(self.name))

    @functools.cached_property
    def alignment(self) -> pa.Table:
        """``frames/<session>.parquet``: one row per frame (timestamp, row_index, sha256)."""
        return read_table(self.out, frames_table_path(self.name))

    @functools.cached_property
    def labels(self) -> FrameLabels:
        """The labels of every frame that has a periodic row (reads only the needed columns
        unless ``rows`` was read already)."""
        rows = self.__dict__.get("rows")
        if rows is None:
            rows = read_table(self.out, rows_path(self.name), LABEL_COLUMNS)
        return FrameLabels.from_tables(self.name, rows, self.timestamps)

    @functools.cached_property
    def blank(self) -> npt.NDArray[np.bool_]:
        """Whether each frame is blank (all zeros): the alignment table's ``blank`` column, by
        frame index (reads only that column unless ``alignment`` was read already)."""
        table = self.__dict__.get("alignment")
        if table is None:
            table = read_table(self.out, frames_table_path(self.name), ["frame_index", "blank"])
        blank = np.zeros(self.n_frames, dtype=bool)
        index = np.asarray(table["frame_index"].to_numpy(), dtype=np.int64)
        blank[index] = np.asarray(table["blank"].to_numpy(zero_copy_only=False), dtype=bool)
        return blank

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


S = TypeVar("S", bound=StoredSession)


@dataclass(frozen=True)
class StoredDataset(Generic[S]):
    """A converted dataset as stored: its sessions by name (``ds[name]``).

    ``sessions`` are the sessions whose catalog state is ``converted`` or ``skipped`` (their
    outputs are complete) with Zarr + Parquet outputs, sorted by name: a session converted with
    ``--format wds`` only has nothing here (its samples are in the shards, ``wds_index``).
    ``catalog`` holds every catalog row, rejected bundles too."""

    session_type: ClassVar[type[StoredSession]] = StoredSession

    out: Output
    catalog: tuple[CatalogEntry, ...]

    @functools.cached_property
    def _sessions(self) -> dict[str, S]:
        live = sorted(
            (e for e in self.catalog if e.status.is_live and e.session and e.outputs),
            key=lambda e: e.session or "",
        )
        make: Any = self.session_type
        return {e.session: make(e.session, e, self.out) for e in live if e.session}

    @property
    def sessions(self) -> tuple[str, ...]:
        return tuple(self._sessions)

    def __getitem__(self, session: str) -> S:
        try:
            return self._sessions[session]
        except KeyError:
            raise KeyError(
                f"{session!r} is not a converted session of {self.out.url} "
                f"(sessions: {', '.join(self.sessions) or 'none'})"
            ) from None

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    @functools.cached_property
    def wds_index(self) -> WdsIndex | None:
        """``wds/index.json``, or None when the dataset has no WebDataset shards."""
        return read_index(self.out)


def read_stored_catalog(output: Output) -> tuple[CatalogEntry, ...]:
    """The catalog of ``output``; ``OutputError`` when it holds none (a mistyped path must
    not look like an empty dataset), a ``StorageError`` that says what to do when the store
    cannot be reached (credentials, endpoint, bucket: ``errors.storage_error``)."""
    with storage_errors(output.url):
        if not output.exists(CATALOG):
            raise OutputError(
                f"{output.url}: no {CATALOG} here; give the --out folder (or URL) of a "
                "`reacture-convert convert` run"
            )
        return tuple(read_catalog(output))


def open_stored(
    out: OutLike | StoredDataset[Any], storage_options: Mapping[str, Any] | None = None
) -> StoredDataset[StoredSession]:
    """The converted dataset at ``out`` as stored (reads ``catalog.parquet`` now, nothing
    else); an opened dataset is returned as it is."""
    if isinstance(out, StoredDataset):
        return out
    output = as_output(out, storage_options)
    return StoredDataset(output, read_stored_catalog(output))
