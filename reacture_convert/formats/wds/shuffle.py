"""The bounded shuffle buffer: the last step of a shuffled shard set's sample order (the index
records its size) and the reader's own per-epoch shuffle."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["shuffle_buffer"]

T = TypeVar("T")


def shuffle_buffer(samples: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """A bounded shuffle: keep ``size`` samples, emit a random one as each new one arrives."""
    buf: list[T] = []
    for s in samples:
        if len(buf) < size:
            buf.append(s)
            continue
        k = rng.randrange(size)
        buf[k], s = s, buf[k]
        yield s
    rng.shuffle(buf)
    yield from buf
