"""The one definition of a batch: its keys, shapes and dtypes, and how it is filled.

Every reader builds its batches here, as NumPy arrays written once into buffers that the caller
makes for the batch's ``batch_spec`` (``MakeBuffers``: the PyTorch adapter hands out views of one
shared-memory block, so a DataLoader worker's batch reaches the training process as one block,
without another copy). A batch of B samples:

==================== ================================ ===========================================
key                  shape, dtype                     what
==================== ================================ ===========================================
frame                (B, [k+1,] 3, 128, 128) CHW or   uint8 as stored, or float32 in [0, 1]
                     (B, [k+1,] 128, 128, 3) HWC      (the value / 255); with ``history=k`` the
                                                      k previous frames come first
keys                 (B, [h+1,] 6) float32            W, A, S, D, inspect, destroy (0. or 1.)
actions              (B, [h+1,] 4) float32            jump, destroy, refuel, rescue in the interval
battery, damage,     (B, [h+1,] 1) float32
health
position, velocity,  (B, [h+1,] 3) float32
accelerometer
frame_timestamp_ms   (B,) float64                     the frame's exact time (timestamps.npy)
timestamp_ms         (B,) float64                     the same value (the name of earlier versions)
frame_index          (B,) int64                       the frame's index in its session
session              list of B str
==================== ================================ ===========================================

With ``horizon=h`` every label holds the sample's own row and then those of the next h frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.read.labels import FrameLabels
from reacture_convert.read.options import Layout, ReadOptions

__all__ = [
    "FRAME_SHAPE",
    "LABEL_WIDTHS",
    "Batch",
    "Buffers",
    "LabelTable",
    "MakeBuffers",
    "Spec",
    "batch_spec",
    "gather_labels",
    "label_table",
    "numpy_buffers",
    "put_frame",
    "unbatch",
]

FRAME_SHAPE: Final = (128, 128, 3)
LABEL_WIDTHS: Final = {
    "keys": 6,
    "actions": 4,
    "battery": 1,
    "damage": 1,
    "health": 1,
    "position": 3,
    "velocity": 3,
    "accelerometer": 3,
}
"""The float32 labels and the width of each (the last axis of its array)."""

Batch = dict[str, Any]
LabelTable = dict[str, npt.NDArray[Any]]
Spec = dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
"""Each array key of a batch, in order, with its shape and dtype (``session`` is a list)."""
Buffers = Callable[[str], npt.NDArray[Any]]
"""The arrays of one batch to fill, by key (made for a ``Spec`` by a ``MakeBuffers``)."""
MakeBuffers = Callable[[Spec], Buffers]


def batch_spec(batch_size: int, options: ReadOptions, layout: Layout) -> Spec:
    """The arrays of a batch of ``batch_size`` samples read with ``options`` (module doc)."""
    b, h = batch_size, options.horizon
    rows, cols, channels = FRAME_SHAPE
    one = (channels, rows, cols) if layout == "CHW" else FRAME_SHAPE
    window = (options.history + 1,) if options.history else ()
    spec: Spec = {"frame": ((b, *window, *one), np.dtype(options.dtype))}
    for name, width in LABEL_WIDTHS.items():
        spec[name] = ((b, h + 1, width) if h else (b, width), np.dtype(np.float32))
    spec["frame_timestamp_ms"] = ((b,), np.dtype(np.float64))
    spec["timestamp_ms"] = ((b,), np.dtype(np.float64))
    spec["frame_index"] = ((b,), np.dtype(np.int64))
    return spec


def numpy_buffers(spec: Spec) -> Buffers:
    """Plain NumPy arrays for ``spec``."""
    arrays = {key: np.empty(shape, dtype) for key, (shape, dtype) in spec.items()}
    return arrays.__getitem__


def label_table(labels: FrameLabels) -> LabelTable:
    """``labels`` as the arrays batches are gathered from: each ``LABEL_WIDTHS`` key as float32
    (n, width), ``timestamp_ms`` float64 and ``frame_index`` int64 (n,)."""
    n = len(labels)
    table: LabelTable = {
        name: np.ascontiguousarray(
            np.asarray(getattr(labels, name), dtype=np.float32).reshape(n, width)
        )
        for name, width in LABEL_WIDTHS.items()
    }
    table["timestamp_ms"] = np.asarray(labels.timestamp_ms, dtype=np.float64)
    table["frame_index"] = np.asarray(labels.frame_index, dtype=np.int64)
    return table


def gather_labels(
    table: LabelTable,
    rows: npt.NDArray[np.int64],
    horizon: int,
    sessions: Sequence[str],
    buffers: Buffers,
) -> Batch:
    """The label keys of a batch whose samples are rows ``rows`` of ``table`` (with
    ``horizon``, rows ``rows + 0..h``, which the caller guarantees are the same session's next
    frames), written into ``buffers``; ``sessions``: each sample's session name."""
    index = rows if horizon == 0 else rows[:, None] + np.arange(horizon + 1)
    out: Batch = {}
    # mode="clip": the rows are ours and in range; the default "raise" buffers before writing
    for name in LABEL_WIDTHS:
        out[name] = np.take(table[name], index, axis=0, out=buffers(name), mode="clip")
    for name, column in (
        ("frame_timestamp_ms", "timestamp_ms"),
        ("timestamp_ms", "timestamp_ms"),
        ("frame_index", "frame_index"),
    ):
        out[name] = np.take(table[column], rows, out=buffers(name), mode="clip")
    out["session"] = list(sessions)
    return out


def put_frame(
    dst: npt.NDArray[Any], src: npt.NDArray[np.uint8], flip: bool, layout: Layout
) -> None:
    """Write the stored HWC frame ``src`` into ``dst`` (one frame of a batch's ``frame``):
    turned right way up with ``flip``, as CHW or HWC, as uint8 or scaled to float32 (a single
    pass)."""
    view = src[::-1] if flip else src
    if layout == "CHW":
        view = view.transpose(2, 0, 1)
    if dst.dtype == np.float32:
        np.divide(view, np.float32(255), out=dst, dtype=np.float32)
    else:
        dst[...] = view


def unbatch(batch: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The samples of a batch, in order: each key's ``[j]`` (views into the batch's arrays)."""
    for j in range(len(batch["session"])):
        yield {key: value[j] for key, value in batch.items()}
