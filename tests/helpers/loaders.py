"""What a training loader hands out, in a form tests compare."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def loader_samples(loader: Iterable[dict[str, Any]]) -> list[tuple[str, int, bytes]]:
    """Every sample of one pass over ``loader`` (PyTorch batches): session, frame index and the
    frame's bytes, in the order handed out."""
    return [
        (s, int(f), frame.numpy().tobytes())
        for b in loader
        for s, f, frame in zip(b["session"], b["frame_index"], b["frame"], strict=True)
    ]
