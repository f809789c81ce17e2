"""Train / validation / test splits decided per session by a hash of its name.

A session's split depends on nothing but its name, the seed and the fractions: adding or
removing sessions never moves another session to another split, and every reader (Zarr or
shards, any framework, any process) agrees. Whole sessions go to one split, so no window and no
near-duplicate neighbouring frame leaks between splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from reacture_convert.errors import ConfigError
from reacture_convert.read.options import SPLITS, ReadOptions

__all__ = ["select_sessions", "split_of"]


def split_of(session: str, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for ``session``: a uniform number in [0, 1) from
    sha256 of ``"<seed>/<session>"``, placed on the cumulative ``fractions``."""
    digest = hashlib.sha256(f"{seed}/{session}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        edge += fraction
        if u < edge:
            return name
    return next(n for n, f in zip(reversed(SPLITS), reversed(fractions), strict=True) if f > 0)


def select_sessions(available: Sequence[str], options: ReadOptions, where: str) -> tuple[str, ...]:
    """The sessions a reader reads: ``options.sessions`` (each must be ``available``; default
    all, in the order given) and then those of ``options.split``. ``where`` names the dataset
    in messages. Raises ConfigError for an unknown name or an empty split."""
    names = tuple(available) if options.sessions is None else options.sessions
    unknown = [n for n in names if n not in set(available)]
    if unknown:
        raise ConfigError(
            f"{', '.join(map(repr, unknown))} is not a session of {where} "
            f"(sessions: {', '.join(available) or 'none'})"
        )
    if options.split is None:
        return names
    kept = tuple(
        n
        for n in names
        if split_of(n, options.split_fractions, options.split_seed) == options.split
    )
    if names and not kept:
        raise ConfigError(
            f"split {options.split!r} holds none of the {len(names)} session(s) of {where} "
            f"(split_fractions={options.split_fractions}, split_seed={options.split_seed}): "
            "with few sessions, give other fractions or another split_seed"
        )
    return kept
