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
    s.labels                           # FrameLabels (read.labels): every frame's labels

ReActure's own loader API works on the whole dataset and on one session:

    for sample in ds:                  # or: for sample in s
        sample["frame"]                # NumPy (128, 128, 3) HWC uint8, as stored (bottom-up)
        sample["frame_timestamp_ms"], sample["battery"], sample["keys"], ...
    ds.to_pytorch_dataloader(batch_size=32, shuffle=True)      # read.torch (torch extra)
    ds.to_tensorflow_dataset(batch_size=32)                    # read.tensorflow (tf extra)

Samples and batches have the same keys (``read.batch``); blank frames are skipped by default
(``iter_samples(skip_blank=False)`` keeps them). Nothing here imports torch or TensorFlow; every
handle is opened in the process that uses it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.index import WdsIndex, read_index
from reacture_convert.output.catalog import CATALOG, CatalogEntry, read_catalog
from reacture_convert.output.layout import frames_table_path, rows_path
from reacture_convert.output.storage import Output
from reacture_convert.read.labels import LABEL_COLUMNS, FrameLabels
from reacture_convert.read.session import SessionArrays, open_session, read_table

__all__ = [
    "ConvertedDataset",
    "OutLike",
    "SessionData",
    "as_output",
    "open_dataset",
]


@dataclass(frozen=True)
class SessionData:
    """One converted session. Every property reads on first access and keeps the result."""

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

    def frames_dask(self) -> Any:
        """``frames`` as a dask array, one dask chunk per Zarr chunk (needs dask)."""
        import dask.array as da

        return da.from_zarr(self.frames)  # type: ignore[no-untyped-call]

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
        """How rows of a frame are stored: ``"bottom-up"`` for every ReActure export (WebGL
        ``readPixels``): ``frame[::-1]`` shows it right way up."""
        frames = self.attrs.get("frames")
        value = frames.get("orientation") if isinstance(frames, dict) else None
        return str(value) if value else "bottom-up"

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

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """This session's samples in frame order (see ``ConvertedDataset.__iter__``)."""
        return self.iter_samples()

    def iter_samples(self, **options: Any) -> Iterator[dict[str, Any]]:
        """This session's samples with ``ReadOptions`` (``skip_blank``, ``flip``, ...)."""
        return _iter_samples(self.out, [self.name], options)

    def to_pytorch_dataloader(
        self, batch_size: int = 32, shuffle: bool = False, **kwargs: Any
    ) -> Any:
        """``read.torch.to_pytorch_dataloader`` over this session."""
        from reacture_convert.read.torch import to_pytorch_dataloader

        return to_pytorch_dataloader(self.out, batch_size, shuffle, sessions=[self.name], **kwargs)

    def to_tensorflow_dataset(
        self, batch_size: int = 32, shuffle: bool = False, **kwargs: Any
    ) -> Any:
        """``read.tensorflow.to_tensorflow_dataset`` over this session."""
        from reacture_convert.read.tensorflow import to_tensorflow_dataset

        return to_tensorflow_dataset(self.out, batch_size, shuffle, sessions=[self.name], **kwargs)


@dataclass(frozen=True)
class ConvertedDataset:
    """A converted dataset: its sessions by name (``ds[name]``, a ``SessionData``), and
    ReActure's loader API over all of them (``for sample in ds``, ``to_pytorch_dataloader``,
    ``to_tensorflow_dataset``).

    ``sessions`` are the sessions whose catalog state is ``converted`` or ``skipped`` (their
    outputs are complete) with Zarr + Parquet outputs, sorted by name: a session converted with
    ``--format wds`` only has nothing here to read (its samples are in the shards,
    ``wds_index``). ``catalog`` holds every catalog row, rejected bundles too."""

    out: Output
    catalog: tuple[CatalogEntry, ...]

    @functools.cached_property
    def _sessions(self) -> dict[str, SessionData]:
        live = sorted(
            (e for e in self.catalog if e.status.is_live and e.session and e.outputs),
            key=lambda e: e.session or "",
        )
        return {e.session: SessionData(e.session, e, self.out) for e in live if e.session}

    @property
    def sessions(self) -> tuple[str, ...]:
        return tuple(self._sessions)

    def __getitem__(self, session: str) -> SessionData:
        try:
            return self._sessions[session]
        except KeyError:
            raise KeyError(
                f"{session!r} is not a converted session of {self.out.url} "
                f"(sessions: {', '.join(self.sessions) or 'none'})"
            ) from None

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every session's samples (sessions in name order, frames in order) as ReActure's
        loader gave them: dicts with ``frame`` (NumPy (128, 128, 3) HWC uint8, as stored),
        ``frame_timestamp_ms``, ``battery``, ``keys``, ... (the keys of a batch, ``read.batch``).
        Blank frames are skipped; ``iter_samples(skip_blank=False)`` keeps them."""
        return self.iter_samples()

    def iter_samples(self, **options: Any) -> Iterator[dict[str, Any]]:
        """The samples with ``ReadOptions`` (``skip_blank``, ``flip``, ``sessions``, ...)."""
        return _iter_samples(self, options.pop("sessions", None), options)

    def to_pytorch_dataloader(
        self, batch_size: int = 32, shuffle: bool = False, **kwargs: Any
    ) -> Any:
        """``read.torch.to_pytorch_dataloader`` over this dataset (needs torch)."""
        from reacture_convert.read.torch import to_pytorch_dataloader

        return to_pytorch_dataloader(self.out, batch_size, shuffle, **kwargs)

    def to_tensorflow_dataset(
        self, batch_size: int = 32, shuffle: bool = False, **kwargs: Any
    ) -> Any:
        """``read.tensorflow.to_tensorflow_dataset`` over this dataset (needs tensorflow)."""
        from reacture_convert.read.tensorflow import to_tensorflow_dataset

        return to_tensorflow_dataset(self.out, batch_size, shuffle, **kwargs)

    @functools.cached_property
    def wds_index(self) -> WdsIndex | None:
        """``wds/index.json``, or None when the dataset has no WebDataset shards."""
        return read_index(self.out)


def _iter_samples(
    dataset: ConvertedDataset | Output, sessions: Sequence[str] | None, options: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The samples of ``sessions`` of ``dataset``, in order, one NumPy dict each."""
    from reacture_convert.read.batch import unbatch
    from reacture_convert.read.core import FrameSource
    from reacture_convert.read.options import read_options

    source = FrameSource(dataset, read_options(sessions=sessions, **options), layout="HWC")
    for batch in source.iter_batches(64):
        yield from unbatch(batch)


OutLike = str | os.PathLike[str] | Output
"""A converted dataset's location: a folder, an fsspec URL, or an ``Output``."""


def as_output(out: OutLike, storage_options: Mapping[str, Any] | None = None) -> Output:
    """``out`` as an ``Output`` (``storage_options`` apply to a str or path only)."""
    if isinstance(out, Output):
        return out
    return Output(os.fspath(out), dict(storage_options or {}))


def open_dataset(
    out: OutLike, storage_options: Mapping[str, Any] | None = None
) -> ConvertedDataset:
    """Open the converted dataset at ``out`` (a folder, an fsspec URL, or an ``Output``).

    Reads ``catalog.parquet`` now and nothing else. Raises ``OutputError`` when ``out`` holds no
    catalog (a mistyped path must not look like an empty dataset)."""
    output = as_output(out, storage_options)
    if not output.exists(CATALOG):
        raise OutputError(
            f"{output.url}: no {CATALOG} here; give the --out folder (or URL) of a "
            "`reacture-convert convert` run"
        )
    return ConvertedDataset(output, tuple(read_catalog(output)))
