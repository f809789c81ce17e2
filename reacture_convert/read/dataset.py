"""Read a converted dataset: ``open_dataset(OUT)`` -> its sessions, each read lazily.

``OUT`` is the ``--out`` of a ``reacture-convert convert`` run: a local folder or any fsspec URL.
``catalog.parquet`` is read up front (it says which sessions are complete); everything else is
read on first access and kept:

    ds = open_dataset("data/converted")
    ds.sessions                        # ('reacture_1795637238001', ...): converted, skipped
    s = ds["reacture_1795637238001"]
    s.frames                           # zarr.Array uint8 (N, 128, 128, 3), lazy, bottom-up
    s.frames_dask()                    # the same as a dask array
    s.timestamps                       # float32 (N,): ms since game start, exact
    s.rows, s.alignment                # pyarrow Tables: rows/<s>.parquet, frames/<s>.parquet
    s.metadata, s.attrs, s.orientation # metadata.json, all Zarr group attributes, "bottom-up"
    s.labels                           # FrameLabels: the training labels of every frame

``FrameLabels`` is the one definition of a frame's labels (used by the PyTorch readers and by
``stats``): the periodic row's keys and state, plus the momentary actions logged in the frame's
*interval*: the rows after the previous periodic row up to this one (the WebDataset sample's
``events``). Rows before the first periodic row belong to frame 0; rows after the last one
belong to no frame. ``FrameLabels.from_sample_json`` computes the same from a WebDataset
sample's ``.json`` member.

Nothing here imports torch; every handle is opened in the process that uses it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zarr

from reacture_convert.errors import OutputError
from reacture_convert.output.catalog import CATALOG, LIVE_STATUSES, CatalogEntry, read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset import WdsIndex, read_index

__all__ = [
    "KEYS",
    "MOMENTARY_ACTIONS",
    "ConvertedDataset",
    "FrameLabels",
    "OutLike",
    "SessionData",
    "as_output",
    "open_dataset",
    "open_frames",
]

KEYS: Final = ("W", "A", "S", "D", "inspect", "destroy")
"""The 6 entries of ``keys``, as ReActure's own loader ordered them."""

MOMENTARY_ACTIONS: Final = ("jump", "destroy", "refuel", "rescue")
"""Actions that exist only as rows between two frames (the periodic flags never show them)."""

# What marks a momentary action in a frame's interval: player_action ``action`` names and
# robot_state ``event`` names. A destroy logs both (event destroy_rubble + action destroy_rubble).
_MOMENTARY_MATCH: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "jump": (frozenset({"jump"}), frozenset()),
    "destroy": (frozenset({"destroy_rubble"}), frozenset({"destroy_rubble"})),
    "refuel": (frozenset({"refuel"}), frozenset()),
    "rescue": (frozenset({"rescue_victim"}), frozenset({"rescue"})),
}
_HELD_KEYS: Final = KEYS[:5]  # from the periodic row's key_presses
_VECTORS: Final = {
    "position": ("robot", "position"),
    "velocity": ("robot", "velocity"),
    "accelerometer": ("accelerometer",),
}
_SCALARS: Final = ("battery", "damage", "health")
_LABEL_COLUMNS: Final = ["row_index", "kind", "type", "event", "action", "frame_index",
                         "key_presses", "robot", "accelerometer", *_SCALARS]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


# --- labels ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FrameLabels:
    """The labels of ``n`` frames of one session, row k for ``frame_index[k]``.

    ``keys`` (n, 6) bool: W, A, S, D, inspect from the periodic row's ``key_presses``, destroy
    from the interval's rows (the periodic ``destroy`` flag is always false). ``actions`` (n, 4)
    bool: ``MOMENTARY_ACTIONS`` seen in the interval. ``timestamp_ms`` is the frame's exact time
    from timestamps.npy (float64 holding the float32 value); ``battery``, ``damage``, ``health``
    (n,) and ``position``, ``velocity``, ``accelerometer`` (n, 3) come from the periodic row.
    """

    session: str
    frame_index: I64
    row_index: I64
    timestamp_ms: F64
    keys: Bools
    actions: Bools
    battery: F64
    damage: F64
    health: F64
    position: F64
    velocity: F64
    accelerometer: F64

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @classmethod
    def from_tables(
        cls, session: str, rows: pa.Table, timestamps: npt.NDArray[Any]
    ) -> FrameLabels:
        """Labels of every frame that has a periodic row, from the rows table (vectorised)."""
        periodic = rows.filter(pc.equal(rows["kind"], "periodic"))
        order = np.argsort(_ints(periodic["frame_index"]), kind="stable")
        periodic = periodic.take(pa.array(order))
        frame_index = _ints(periodic["frame_index"])
        row_index = _ints(periodic["row_index"])
        if np.any(np.diff(row_index) <= 0):  # validation promises frames in row order
            raise OutputError(f"rows/{session}.parquet: periodic rows do not name frames in "
                              "file order; convert the session again")
        held = np.stack([_bools(periodic, ("key_presses", k)) for k in _HELD_KEYS], axis=1)
        actions = _interval_actions(rows, row_index)
        destroy = actions[:, MOMENTARY_ACTIONS.index("destroy")]
        ts = np.asarray(timestamps)[frame_index].astype(np.float64)
        return cls(
            session=session, frame_index=frame_index, row_index=row_index, timestamp_ms=ts,
            keys=np.concatenate([held, destroy[:, None]], axis=1), actions=actions,
            **{name: _floats(periodic, (name,)) for name in _SCALARS},
            **{name: np.stack([_floats(periodic, (*path, c)) for c in "xyz"], axis=1)
               for name, path in _VECTORS.items()},
        )

    @classmethod
    def from_sample_json(cls, meta: Mapping[str, Any]) -> FrameLabels:
        """The labels of one WebDataset sample (its ``.json`` member, parsed): the same values
        ``from_tables`` gives for that frame."""
        row, events = meta["row"], meta["events"]
        kp = row["key_presses"]
        actions = np.array([[
            any(_momentary(e, name) for e in events) for name in MOMENTARY_ACTIONS
        ]], dtype=bool)
        held = np.array([[bool(kp[k]) for k in _HELD_KEYS]], dtype=bool)
        destroy = actions[:, MOMENTARY_ACTIONS.index("destroy")]

        def vec(*path: str) -> F64:
            obj: Any = row
            for p in path:
                obj = obj[p]
            return np.array([[float(obj[c]) for c in "xyz"]], dtype=np.float64)

        return cls(
            session=str(meta["session"]),
            frame_index=np.array([meta["frame_index"]], dtype=np.int64),
            row_index=np.array([meta["row_index"]], dtype=np.int64),
            timestamp_ms=np.array([meta["timestamp_ms"]], dtype=np.float64),
            keys=np.concatenate([held, destroy[:, None]], axis=1), actions=actions,
            **{name: np.array([float(row[name])], dtype=np.float64) for name in _SCALARS},
            **{name: vec(*path) for name, path in _VECTORS.items()},
        )


def _momentary(row: Mapping[str, Any], name: str) -> bool:
    actions, events = _MOMENTARY_MATCH[name]
    if row.get("type") == "player_action":
        return row.get("action") in actions
    return row.get("event") in events


def _interval_actions(rows: pa.Table, periodic_rows: I64) -> Bools:
    """(n, len(MOMENTARY_ACTIONS)): which momentary actions each frame's interval holds.

    A non-periodic row belongs to the first periodic row after it (``searchsorted``); rows
    after the last periodic row land in slot n and are dropped."""
    n = periodic_rows.shape[0]
    other = rows.filter(pc.not_equal(rows["kind"], "periodic"))
    slot = np.searchsorted(periodic_rows, _ints(other["row_index"]), side="left")
    is_action = _fill(pc.equal(other["type"], "player_action"))
    out = np.zeros((n, len(MOMENTARY_ACTIONS)), dtype=bool)
    for k, name in enumerate(MOMENTARY_ACTIONS):
        actions, events = _MOMENTARY_MATCH[name]
        hit = (is_action & _isin(other["action"], actions)) | (
            ~is_action & _isin(other["event"], events))
        out[:, k] = np.bincount(slot[hit], minlength=n + 1)[:n] > 0
    return out


def _isin(col: pa.ChunkedArray, values: frozenset[str]) -> Bools:
    if not values:
        return np.zeros(len(col), dtype=bool)
    return _fill(pc.is_in(col, value_set=pa.array(sorted(values), pa.string())))


def _fill(col: pa.ChunkedArray | pa.Array) -> Bools:
    return np.asarray(pc.fill_null(col, False).to_numpy(zero_copy_only=False), dtype=bool)


def _leaf(table: pa.Table, path: Sequence[str]) -> pa.ChunkedArray:
    col = table[path[0]]
    return pc.struct_field(col, list(path[1:])) if len(path) > 1 else col


def _ints(col: pa.ChunkedArray) -> I64:
    return np.asarray(col.to_numpy(), dtype=np.int64)


def _floats(table: pa.Table, path: Sequence[str]) -> F64:
    """A float64 leaf; a null (absent) value becomes NaN."""
    col = pc.cast(_leaf(table, path), pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _bools(table: pa.Table, path: Sequence[str]) -> Bools:
    return _fill(_leaf(table, path))


# --- reading --------------------------------------------------------------------------------------
def open_frames(out: Output, session: str) -> tuple[zarr.Group, zarr.Array[Any], zarr.Array[Any]]:
    """A session's Zarr group with its ``frames`` and ``timestamps`` arrays, read-only.

    Opening reads metadata only. Open it in the process that reads: a store over a network
    filesystem holds sessions that do not survive ``fork``."""
    url = out.url_of("zarr", f"{session}.zarr")
    if out.is_local:
        store: Any = zarr.storage.LocalStore(out.path("zarr", f"{session}.zarr"), read_only=True)
    else:
        store = zarr.storage.FsspecStore.from_url(
            url, storage_options=dict(out.storage_options), read_only=True)
    try:
        group = zarr.open_group(store, mode="r")
    except FileNotFoundError as e:
        raise OutputError(f"{url}: no Zarr group for session {session!r}; convert it with "
                          "--format zarr (a wds-only run writes no Zarr)") from e
    frames, ts = group.get("frames"), group.get("timestamps")
    if not isinstance(frames, zarr.Array) or not isinstance(ts, zarr.Array):
        raise OutputError(f"{url}: 'frames' and 'timestamps' must be arrays; convert it again")
    return group, frames, ts


def _read_parquet(out: Output, rel: str, columns: list[str] | None = None) -> pa.Table:
    path = out.path(rel)
    if not out.fs.exists(path):
        raise OutputError(f"{out.url_of(rel)} is missing; convert the session with --format zarr")
    with out.fs.open(path, "rb") as f:
        table: pa.Table = pq.read_table(f, columns=columns)
    return table


@dataclass(frozen=True)
class SessionData:
    """One converted session. Every property reads on first access and keeps the result."""

    name: str
    entry: CatalogEntry
    out: Output = field(repr=False)

    @functools.cached_property
    def _zarr(self) -> tuple[zarr.Group, zarr.Array[Any], zarr.Array[Any]]:
        return open_frames(self.out, self.name)

    @property
    def frames(self) -> zarr.Array[Any]:
        """uint8 (N, 128, 128, 3), lazy: index it to read (``frames[i]``, ``frames[a:b]``).
        The bytes are stored as frames.npy held them: see ``orientation``."""
        return self._zarr[1]

    def frames_dask(self) -> Any:
        """``frames`` as a dask array, one dask chunk per Zarr chunk (needs dask)."""
        import dask.array as da

        return da.from_zarr(self.frames)  # type: ignore[no-untyped-call]

    @functools.cached_property
    def timestamps(self) -> npt.NDArray[np.float32]:
        """float32 (N,): ms since game start of each frame, the exact values of timestamps.npy."""
        return np.asarray(self._zarr[2][:], dtype=np.float32)

    @functools.cached_property
    def attrs(self) -> dict[str, Any]:
        """Every attribute of the Zarr group (metadata, provenance, frames, ...)."""
        return dict(self._zarr[0].attrs)

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle's metadata.json object (kept in the Zarr attributes)."""
        meta = self.attrs.get("metadata")
        return dict(meta) if isinstance(meta, dict) else {}

    @property
    def orientation(self) -> str:
        """How rows of a frame are stored: ``"bottom-up"`` for every ReActure export (WebGL
        ``readPixels``): ``frame[::-1]`` shows it right way up."""
        frames = self.attrs.get("frames")
        value = frames.get("orientation") if isinstance(frames, dict) else None
        return str(value) if value else "bottom-up"

    @functools.cached_property
    def rows(self) -> pa.Table:
        """``rows/<session>.parquet``: every data.jsonl row, in file order."""
        return _read_parquet(self.out, f"rows/{self.name}.parquet")

    @functools.cached_property
    def alignment(self) -> pa.Table:
        """``frames/<session>.parquet``: one row per frame (timestamp, row_index, sha256)."""
        return _read_parquet(self.out, f"frames/{self.name}.parquet")

    @functools.cached_property
    def labels(self) -> FrameLabels:
        """The labels of every frame that has a periodic row (reads only the needed columns
        unless ``rows`` was read already)."""
        rows = self.__dict__.get("rows")
        if rows is None:
            rows = _read_parquet(self.out, f"rows/{self.name}.parquet", _LABEL_COLUMNS)
        return FrameLabels.from_tables(self.name, rows, self.timestamps)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class ConvertedDataset(Mapping[str, SessionData]):
    """A converted dataset: a mapping from session name to ``SessionData``.

    Its keys are the sessions whose catalog state is ``converted`` or ``skipped`` (their outputs
    are complete) with Zarr + Parquet outputs, sorted by name: a session converted with
    ``--format wds`` only has nothing here to read (its samples are in the shards,
    ``wds_index``). ``catalog`` holds every catalog row, rejected bundles too."""

    out: Output
    catalog: tuple[CatalogEntry, ...]

    @functools.cached_property
    def _sessions(self) -> dict[str, SessionData]:
        live = sorted((e for e in self.catalog
                       if e.status in LIVE_STATUSES and e.session and e.outputs),
                      key=lambda e: e.session or "")
        return {e.session: SessionData(e.session, e, self.out) for e in live if e.session}

    @property
    def sessions(self) -> tuple[str, ...]:
        return tuple(self._sessions)

    def __getitem__(self, session: str) -> SessionData:
        try:
            return self._sessions[session]
        except KeyError:
            raise KeyError(f"{session!r} is not a converted session of {self.out.url} "
                           f"(sessions: {', '.join(self.sessions) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    @functools.cached_property
    def wds_index(self) -> WdsIndex | None:
        """``wds/index.json``, or None when the dataset has no WebDataset shards."""
        return read_index(self.out)


OutLike = str | os.PathLike[str] | Output
"""A converted dataset's location: a folder, an fsspec URL, or an ``Output``."""


def as_output(out: OutLike, storage_options: Mapping[str, Any] | None = None) -> Output:
    """``out`` as an ``Output`` (``storage_options`` apply to a str or path only)."""
    if isinstance(out, Output):
        return out
    return Output(os.fspath(out), dict(storage_options or {}))


def open_dataset(out: OutLike, storage_options: Mapping[str, Any] | None = None
                 ) -> ConvertedDataset:
    """Open the converted dataset at ``out`` (a folder, an fsspec URL, or an ``Output``).

    Reads ``catalog.parquet`` now and nothing else. Raises ``OutputError`` when ``out`` holds no
    catalog (a mistyped path must not look like an empty dataset)."""
    output = as_output(out, storage_options)
    if not output.exists(CATALOG):
        raise OutputError(f"{output.url}: no {CATALOG} here; give the --out folder (or URL) of a "
                          "`reacture-convert convert` run")
    return ConvertedDataset(output, tuple(read_catalog(output)))
