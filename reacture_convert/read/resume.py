"""Where a loader is in its epoch: ``ResumeState``, what ``state_dict()`` returns and
``load_state_dict()`` takes, and how the remaining batches of an interrupted epoch are found.

A state is taken on one rank after it handed out ``batches`` batches of epoch ``epoch``. It holds
the reading's shape (source, seed, batch size, the number of samples, workers, rank, world size)
so that resuming refuses another dataset or another batching with a message instead of training
on the wrong samples, and, for the shard source, how many of those batches each worker made
(a shard stream is per worker, so that is where it resumes).

**The Zarr source** resumes exactly from any state: the epoch's batches are a function of the
seed, the epoch and the reading's shape, so the batches not yet handed out are those of the
state's shape after its first ``batches`` (``remaining_batches``). With the same workers and
ranks they come in the order the uninterrupted epoch would have used; with others, every
remaining sample still comes exactly once (the remaining batches of every old rank, dealt to
the new ranks in turn).

**The shard source** resumes every old worker's stream after the batches it made: with the
same workers, each continues one old stream, the one whose turn was next first (a DataLoader
takes batches from its workers in turn), so the batches come in the uninterrupted order as long
as no worker had run out before the state was taken; with fewer or
more workers, new worker ``j`` continues the streams of the old workers ``w`` with
``w % workers == j``, one after another (every remaining sample exactly once). The number of
ranks must stay the same (a rank knows only its own workers' progress).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError

__all__ = ["VERSION", "ResumeState", "old_streams", "remaining_batches"]

VERSION: Final = 1
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ResumeState:
    """A loader's place in an epoch (module doc). ``worker_batches``: the shard source's
    batches per worker of this rank (empty for the Zarr source). ``resumed``: the state this
    reading itself resumed from (an epoch interrupted more than once), else None."""

    source: str
    epoch: int
    batches: int
    seed: int
    shuffle: bool
    batch_size: int
    drop_last: bool
    samples: int
    workers: int
    rank: int
    world_size: int
    worker_batches: tuple[int, ...] = ()
    resumed: ResumeState | None = None
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (``torch.save`` and JSON alike)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["worker_batches"] = list(self.worker_batches)
        d["resumed"] = None if self.resumed is None else self.resumed.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResumeState:
        """The state of ``d`` (what ``to_dict`` gave); ConfigError for anything else."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a loader state is a dict (state_dict()), not {type(d).__name__}")
        if d.get("version") != VERSION:
            raise ConfigError(
                f"loader state version {d.get('version')!r}: this reacture-convert reads "
                f"version {VERSION} (take the state with the same version)"
            )
        names = {f.name for f in fields(cls)}
        missing, extra = names - set(d), set(d) - names
        if missing or extra:
            raise ConfigError(
                f"not a loader state: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        values = dict(d)
        if not isinstance(values["worker_batches"], list | tuple):
            raise ConfigError(f"loader state: worker_batches={values['worker_batches']!r}")
        values["worker_batches"] = tuple(values["worker_batches"])
        if values["resumed"] is not None:
            values["resumed"] = cls.from_dict(values["resumed"])
        if not isinstance(values["source"], str) or not all(
            isinstance(values[k], bool) for k in ("shuffle", "drop_last")
        ):
            raise ConfigError("loader state: source is a name, shuffle and drop_last booleans")
        for name in names - {"source", "shuffle", "drop_last", "resumed"}:
            items = values[name] if name == "worker_batches" else (values[name],)
            if not all(isinstance(v, int) and v >= 0 for v in items):
                raise ConfigError(f"loader state: {name}={values[name]!r} is not a count")
        return cls(**values)

    def check_reading(self, now: ResumeState) -> None:
        """Refuse to resume ``now``'s reading from this state when they read differently."""
        same = ("source", "seed", "shuffle", "batch_size", "drop_last", "samples")
        differ = [
            f"{k}: state {getattr(self, k)!r}, loader {getattr(now, k)!r}"
            for k in same
            if getattr(self, k) != getattr(now, k)
        ]
        if differ:
            raise ConfigError(
                "this loader state was taken from another reading ("
                + "; ".join(differ)
                + "): resume with the dataset and loader arguments the state was taken with"
            )
        if self.source == "wds" and self.world_size != now.world_size:
            raise ConfigError(
                f"a shard epoch taken on {self.world_size} rank(s) resumes on as many (now "
                f"{now.world_size}): a rank knows only its own workers' progress; the Zarr "
                "source (source='zarr') resumes on any number of ranks"
            )


def remaining_batches(
    plan: Callable[[int, int, int], list[I64]],
    state: ResumeState,
    rank: int,
    world_size: int,
    workers: int,
    deal: Callable[[Sequence[I64], int], list[I64]],
) -> list[I64]:
    """This rank's batches of the Zarr epoch ``state`` interrupted (module doc).
    ``plan(rank, world_size, workers)`` gives a rank's batches of the epoch; ``deal`` orders
    batches for workers."""
    if (state.rank, state.world_size, state.workers) == (rank, world_size, workers):
        return plan(rank, world_size, workers)[state.batches :]
    old = range(state.world_size)
    left = [plan(r, state.world_size, state.workers)[state.batches :] for r in old]
    depth = max((len(part) for part in left), default=0)
    pool = [part[d] for d in range(depth) for part in left if d < len(part)]
    mine = pool[rank::world_size]
    return deal(mine, workers) if state.shuffle else mine


def old_streams(state: ResumeState, worker: int, workers: int) -> list[tuple[int, int]]:
    """The shard streams new worker ``worker`` of ``workers`` continues: ``(old worker, batches
    it made)`` for each old worker ``w`` of this rank with ``w % workers == worker``."""
    made = state.worker_batches or (0,) * state.workers
    if workers == state.workers:
        # a DataLoader starts each epoch at worker 0: the old worker whose turn was next
        # continues there, so the batches come in the uninterrupted order
        w = (worker + state.batches) % workers
        return [(w, made[w])]
    return [(w, made[w]) for w in range(state.workers) if w % workers == worker]
