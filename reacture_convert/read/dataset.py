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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reacture_convert.read.batch import unbatch
from reacture_convert.read.options import read_options
from reacture_convert.read.session import (
    OutLike,
    StoredDataset,
    StoredSession,
    as_output,
    read_stored_catalog,
)
from reacture_convert.read.sources.zarr import ZarrSource

__all__ = [
    "ConvertedDataset",
    "OutLike",
    "SessionData",
    "as_output",
    "open_dataset",
]


@dataclass(frozen=True)
class SessionData(StoredSession):
    """One converted session (``read.session.StoredSession``: frames, timestamps, rows,
    alignment, labels, ...) with ReActure's loader API over it."""

    def frames_dask(self) -> Any:
        """``frames`` as a dask array, one dask chunk per Zarr chunk (needs dask)."""
        import dask.array as da

        return da.from_zarr(self.frames)  # type: ignore[no-untyped-call]

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
class ConvertedDataset(StoredDataset[SessionData]):
    """A converted dataset: its sessions by name (``ds[name]``, a ``SessionData``; which
    sessions: ``read.session.StoredDataset``), and ReActure's loader API over all of them
    (``for sample in ds``, ``to_pytorch_dataloader``, ``to_tensorflow_dataset``)."""

    session_type = SessionData

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


def _iter_samples(
    dataset: StoredDataset[Any] | OutLike, sessions: Sequence[str] | None, options: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The samples of ``sessions`` of ``dataset``, in order, one NumPy dict each."""
    source = ZarrSource(dataset, read_options(sessions=sessions, **options), layout="HWC")
    for batch in source.iter_batches(64):
        yield from unbatch(batch)


def open_dataset(
    out: OutLike, storage_options: Mapping[str, Any] | None = None
) -> ConvertedDataset:
    """Open the converted dataset at ``out`` (a folder, an fsspec URL, or an ``Output``).

    Reads ``catalog.parquet`` now and nothing else. Raises ``OutputError`` when ``out`` holds no
    catalog (a mistyped path must not look like an empty dataset)."""
    output = as_output(out, storage_options)
    return ConvertedDataset(output, read_stored_catalog(output))
