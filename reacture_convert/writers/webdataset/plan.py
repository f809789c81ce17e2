"""Which sample goes into which shard, decided from the sessions' sample sizes alone.

Order. Without a shuffle seed samples come in session-name order, then frame order. With a seed,
the sessions' streams are interleaved pseudo-randomly (the next sample comes from a session
picked with a probability proportional to its remaining samples, at most ``shuffle_streams``
sessions open at a time, in a seeded order) and then pass a shuffle buffer of
``shuffle_buffer`` samples. No session comes in a long run, and memory stays bounded.

Rollover. A shard closes before the sample that would take it past ``shard_size`` (so a shard
is larger only when a single sample is), or the samples are split into exactly
``shard_count`` shards as evenly as possible (the larger ones first).

The plan names, for every shard, the byte ranges of the session parts it is made of, merged
where consecutive; a shard that is exactly one whole part is marked so (it is moved into place,
not copied).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

from reacture_convert.errors import ConfigError
from reacture_convert.formats.wds.shuffle import shuffle_buffer
from reacture_convert.formats.wds.tar import tar_size
from reacture_convert.writers.webdataset.options import WdsOptions
from reacture_convert.writers.webdataset.samples import SessionPart, SessionTar

__all__ = ["PlannedShard", "Range", "count_plan", "plan_shards"]


@dataclass(frozen=True, slots=True)
class Range:
    """``length`` bytes of ``part`` from ``offset`` on."""

    part: SessionPart
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class PlannedShard:
    ranges: tuple[Range, ...]
    samples: int
    content: int  # bytes of its members (the shard is tar_size(content) bytes)
    sessions: tuple[str, ...]
    sizes: tuple[int, ...] = ()  # the tar bytes of each sample, in order

    @property
    def whole_part(self) -> SessionPart | None:
        """The part this shard is, byte for byte, or None."""
        if len(self.ranges) != 1:
            return None
        r = self.ranges[0]
        whole = r.offset == 0 and r.part.bytes == tar_size(r.length)
        return r.part if whole and r.part.samples == self.samples else None


@dataclass(frozen=True, slots=True)
class _Sample:
    session: str
    part: SessionPart
    offset: int
    size: int


def _session_samples(st: SessionTar) -> list[_Sample]:
    """Where each sample of a session lies: its part and offset there."""
    found: list[_Sample] = []
    for part in st.parts:
        sizes = st.sizes[part.first : part.first + part.samples]
        starts = accumulate(sizes, initial=0)
        found += [_Sample(st.session, part, o, n) for o, n in zip(starts, sizes, strict=False)]
    return found


def _interleave(tars: Sequence[SessionTar], rng: random.Random, streams: int) -> Iterator[_Sample]:
    """Seeded interleave: at most ``streams`` sessions open (joining in a seeded order); each
    sample comes from an open session picked with probability proportional to its remaining
    samples, so every session spreads over the whole stretch it is open for."""
    waiting = [st for st in tars if st.samples > 0]
    rng.shuffle(waiting)
    waiting.reverse()  # pop() from the end takes them in the shuffled order
    active: list[Iterator[_Sample]] = []
    remaining: list[int] = []
    while waiting or active:
        while waiting and len(active) < streams:
            st = waiting.pop()
            active.append(iter(_session_samples(st)))
            remaining.append(st.samples)
        pick = rng.randrange(sum(remaining))
        k = 0
        while pick >= remaining[k]:
            pick -= remaining[k]
            k += 1
        yield next(active[k])
        remaining[k] -= 1
        if remaining[k] == 0:
            del active[k], remaining[k]


def _ordered(tars: Sequence[SessionTar], options: WdsOptions) -> Iterator[_Sample]:
    if options.shuffle_seed is None:
        return (s for st in tars for s in _session_samples(st))
    rng = random.Random(options.shuffle_seed)
    mixed = _interleave(tars, rng, options.shuffle_streams)
    return shuffle_buffer(mixed, options.shuffle_buffer, rng)


def count_plan(total: int, count: int) -> list[int]:
    """Samples per shard for ``count`` shards: as even as possible, the larger ones first."""
    if count > total:
        raise ConfigError(
            f"shard count {count} (--shard-count, [wds] shard_count) asks for more shards than "
            f"there are samples ({total}); ask for at most that many shards"
        )
    base, extra = divmod(total, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


class _Builder:
    def __init__(self) -> None:
        self.ranges: list[Range] = []
        self.sizes: list[int] = []
        self.samples = self.content = 0
        self.sessions: set[str] = set()

    def add(self, s: _Sample) -> None:
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last.part is s.part and last.offset + last.length == s.offset:
            self.ranges[-1] = Range(s.part, last.offset, last.length + s.size)
        else:
            self.ranges.append(Range(s.part, s.offset, s.size))
        self.samples += 1
        self.sizes.append(s.size)
        self.content += s.size
        self.sessions.add(s.session)

    def shard(self) -> PlannedShard:
        return PlannedShard(
            tuple(self.ranges),
            self.samples,
            self.content,
            tuple(sorted(self.sessions)),
            tuple(self.sizes),
        )


def plan_shards(tars: Sequence[SessionTar], options: WdsOptions) -> list[PlannedShard]:
    """The shards of these sessions (in the order given) under ``options``."""
    total = sum(st.samples for st in tars)
    plan = count_plan(total, options.shard_count) if options.shard_count is not None else None
    shards: list[PlannedShard] = []
    current: _Builder | None = None
    for s in _ordered(tars, options):
        if current is not None:
            full = (
                current.samples >= plan[len(shards)]
                if plan is not None
                else tar_size(current.content + s.size) > options.shard_size
            )
            if full:
                shards.append(current.shard())
                current = None
        if current is None:
            current = _Builder()
        current.add(s)
    if current is not None:
        shards.append(current.shard())
    return shards
