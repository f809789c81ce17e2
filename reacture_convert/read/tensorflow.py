"""TensorFlow reader of a converted dataset (needs the ``tf`` extra: ``pip install .[tf]``): a
``tf.data.Dataset`` of whole batches from the same core as the PyTorch readers.

``to_tensorflow_dataset(OUT, batch_size, shuffle, ...)`` reads the Zarr sessions
(``sources.ZarrSource``, chunk-aware shuffling) or the shards (``sources.ShardSource``), built
from the ``sources.SOURCES`` registry, and hands out
the batches ``batch`` describes, with TensorFlow's conventions: ``frame`` is HWC, (B, 128, 128,
3), or (B, k + 1, 128, 128, 3) with ``history=k``; ``session`` is a ``tf.string`` vector. The
keys, values and options are the PyTorch readers': the same options give the same batches, in
the same order as a PyTorch DataLoader with ``num_workers=0`` (frames transposed).

Each pass over the dataset is one epoch: a shuffled dataset is reshuffled, seeded by ``seed``
and the number of the pass (0, 1, ...), as ``set_epoch`` does for PyTorch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from reacture_convert.read.batch import Batch, batch_spec
from reacture_convert.read.options import SHUFFLE_WINDOW, ReadOptions, ShuffleOptions, read_options
from reacture_convert.read.session import OutLike
from reacture_convert.read.sources import refuse_empty, source_class

__all__ = ["to_tensorflow_dataset"]


def to_tensorflow_dataset(
    out: OutLike,
    batch_size: int = 32,
    shuffle: bool = False,
    source: str = "zarr",
    *,
    seed: int = 0,
    drop_remainder: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    shuffle_window: int = SHUFFLE_WINDOW,
    shuffle_buffer: int = 256,
    prefetch: int = 2,
    **read: Any,
) -> Any:
    """A ``tf.data.Dataset`` of the batches of ``out`` (module doc).

    ``source``: ``"zarr"`` or ``"wds"``; ``shuffle``, ``seed``, ``shuffle_window`` (Zarr) and
    ``shuffle_buffer`` (shards) as for ``to_pytorch_dataloader``; ``drop_remainder`` drops a
    last short batch; ``prefetch`` batches are read ahead. Sample options (``ReadOptions``):
    ``flip``, ``dtype``, ``skip_blank`` (default True), ``history``, ``horizon``,
    ``max_gap_ms``, ``sessions``, ``split``, ``split_fractions``, ``split_seed``."""
    import tensorflow as tf

    options = read_options(**read)
    reader = source_class(source)(
        out,
        options,
        storage_options=storage_options,
        layout="HWC",
        shuffling=ShuffleOptions(shuffle_window, shuffle_buffer),
    )
    refuse_empty(reader, out)
    epochs = itertools.count()

    def batches() -> Iterator[Batch]:
        return reader.iter_batches(
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=next(epochs),
            drop_last=drop_remainder,
        )

    def generate() -> Iterator[dict[str, Any]]:
        for batch in batches():
            names = np.array([s.encode() for s in batch["session"]], dtype=object)
            yield {**batch, "session": names}

    dataset = tf.data.Dataset.from_generator(generate, output_signature=_signature(tf, options))
    return dataset.prefetch(prefetch) if prefetch else dataset


def _signature(tf: Any, options: ReadOptions) -> dict[str, Any]:
    """The ``tf.TensorSpec`` of each key of a batch (any batch size)."""
    spec = {
        key: tf.TensorSpec((None, *shape[1:]), tf.as_dtype(dtype))
        for key, (shape, dtype) in batch_spec(1, options, "HWC").items()
    }
    spec["session"] = tf.TensorSpec((None,), tf.string)
    return spec
