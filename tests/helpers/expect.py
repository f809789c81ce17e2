"""What the training readers must hand out, computed straight from the source bundles with plain
loops (independently of the package): which (session, frame) pairs are samples for given
options, and each sample's frames and labels."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sources import Source, expected_labels

Key = tuple[str, int]
VECTORS = ("position", "velocity", "accelerometer")
SCALARS = ("battery", "damage", "health")


@dataclass(frozen=True)
class Want:
    """Options as the tests spell them (the readers' defaults unless given)."""

    skip_blank: bool = True
    history: int = 0
    horizon: int = 0
    max_gap_ms: float | None = 1000.0
    flip: bool = False

    def kwargs(self) -> dict[str, Any]:
        return {
            "skip_blank": self.skip_blank,
            "history": self.history,
            "horizon": self.horizon,
            "max_gap_ms": self.max_gap_ms,
            "flip": self.flip,
        }


DEFAULT = Want()


def is_blank(src: Source, f: int) -> bool:
    return not bool(src.frames[f].any())


def sample_keys(sources: Mapping[str, Source], want: Want = DEFAULT) -> list[Key]:
    """The samples, sessions in name order and frames in order."""
    out: list[Key] = []
    for s in sorted(sources):
        src = sources[s]
        n = len(src.timestamps)
        ts = [float(t) for t in src.timestamps]
        for f in range(n):
            if want.skip_blank and is_blank(src, f):
                continue
            lo, hi = f - want.history, f + want.horizon
            if lo < 0 or hi >= n:
                continue
            if want.max_gap_ms is not None and any(
                ts[j + 1] - ts[j] > want.max_gap_ms for j in range(lo, hi)
            ):
                continue
            if want.skip_blank and any(is_blank(src, j) for j in range(lo, f)):
                continue
            out.append((s, f))
    return out


def frames_of(src: Source, f: int, want: Want, chw: bool) -> np.ndarray:
    """The sample's ``frame`` as uint8: frames f - history .. f stacked (or frame f alone)."""
    picked = [
        src.frames[g][::-1] if want.flip else src.frames[g] for g in range(f - want.history, f + 1)
    ]
    if chw:
        picked = [p.transpose(2, 0, 1) for p in picked]
    stacked = np.stack(picked)
    return stacked if want.history else stacked[0]


class Expected:
    """Each source frame's labels, computed once."""

    def __init__(self, sources: Mapping[str, Source]) -> None:
        self.sources = sources
        self.labels = {s: expected_labels(src) for s, src in sources.items()}

    def check(self, sample: Mapping[str, Any], want: Want, chw: bool) -> Key:
        """One unbatched sample (NumPy values or tensors) against its source; returns its key."""
        s, f = str(sample["session"]), int(sample["frame_index"])
        src = self.sources[s]
        frame = np.asarray(sample["frame"])
        exp = frames_of(src, f, want, chw)
        if frame.dtype == np.float32:
            assert np.array_equal(frame, exp.astype(np.float32) / np.float32(255)), (s, f)
        else:
            assert np.array_equal(frame, exp), (s, f)
        rows = [self.labels[s][g] for g in range(f, f + want.horizon + 1)]

        def labels(name: str) -> np.ndarray:
            got = np.asarray(sample[name])
            return got if want.horizon else got[None]

        assert labels("keys").tolist() == [[float(k) for k in r["keys"]] for r in rows], (s, f)
        assert labels("actions").tolist() == [[float(a) for a in r["actions"]] for r in rows]
        for name in SCALARS:
            assert labels(name).tolist() == [[float(np.float32(r[name]))] for r in rows], name
        for name in VECTORS:
            assert labels(name).tolist() == [np.asarray(r[name], np.float32).tolist() for r in rows]
        for name in ("frame_timestamp_ms", "timestamp_ms"):
            assert float(sample[name]) == rows[0]["timestamp_ms"]
        return s, f


def unbatch(batch: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for j in range(len(batch["session"])):
        yield {k: v[j] for k, v in batch.items()}


def keys_of(samples: Iterable[Mapping[str, Any]]) -> list[Key]:
    return [(str(s["session"]), int(s["frame_index"])) for s in samples]
