"""What a training reader hands out: ``ReadOptions``, shared by every reader (Zarr or shards,
PyTorch, TensorFlow or plain NumPy), so that the same options give the same samples.

- ``flip``: frames right way up (they are stored bottom-up, as WebGL wrote them).
- ``dtype``: ``"uint8"`` frames as stored, or ``"float32"`` in [0, 1] (the value / 255).
- ``skip_blank`` (default True): leave out samples whose frame is all zeros (the exporter's
  known black-frame bug); ``False`` keeps them.
- ``history=k``: each sample's ``frame`` holds the k previous frames of its session and then its
  own (k + 1 frames, oldest first). ``horizon=h``: each label holds the sample's own value and
  then those of the next h frames (h + 1 rows). A window never crosses a session boundary nor a
  pause longer than ``max_gap_ms`` between two consecutive frames, and with ``skip_blank`` its
  history holds no blank frame: a sample whose window does not fit is dropped (and counted).
- ``sessions``: names to read (default all); ``split``: ``"train"``, ``"val"`` or ``"test"``
  keeps the sessions that ``splits.split_of`` puts there (``split_fractions``, ``split_seed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from reacture_convert.errors import ConfigError
from reacture_convert.formats.wds.compression import SHARD_RUN

__all__ = [
    "DEFAULT_FRACTIONS",
    "DTYPES",
    "SPLITS",
    "Dtype",
    "Layout",
    "OPTION_NAMES",
    "SHARD_RUN",
    "SHUFFLE_BUFFER",
    "SHUFFLE_WINDOW",
    "ReadOptions",
    "ShuffleOptions",
    "read_options",
]

DTYPES: Final = ("uint8", "float32")
SPLITS: Final = ("train", "val", "test")
DEFAULT_FRACTIONS: Final = (0.8, 0.1, 0.1)
DEFAULT_MAX_GAP_MS: Final = 1000.0
SHUFFLE_WINDOW: Final = 8
"""Chunks whose samples a shuffled epoch over the Zarr sessions mixes (``plan.epoch_order``)."""
Dtype = Literal["uint8", "float32"]
Layout = Literal["CHW", "HWC"]
"""How a frame's axes are laid out: PyTorch's ``CHW`` or TensorFlow's and NumPy's ``HWC``."""


@dataclass(frozen=True)
class ReadOptions:
    """Which samples a reader hands out and how (see the module doc). Checked when built."""

    flip: bool = False
    dtype: Dtype = "uint8"
    skip_blank: bool = True
    history: int = 0
    horizon: int = 0
    max_gap_ms: float | None = DEFAULT_MAX_GAP_MS
    sessions: tuple[str, ...] | None = None
    split: str | None = None
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"unknown frame dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}"
            )
        for name in ("history", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r}: give a whole number of frames, 0 or more")
        if self.max_gap_ms is not None and not self.max_gap_ms > 0:
            raise ConfigError(
                f"max_gap_ms={self.max_gap_ms!r}: give a positive number of milliseconds "
                "(or None for no limit)"
            )
        if self.split is not None and self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of {', '.join(SPLITS)}")
        fractions = self.split_fractions
        if (
            len(fractions) != len(SPLITS)
            or any(not (f >= 0) for f in fractions)
            or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9)
        ):
            raise ConfigError(
                f"split_fractions={tuple(fractions)!r}: give three fractions (train, val, test), "
                "each 0 or more, that add up to 1"
            )

    @property
    def windowed(self) -> bool:
        return self.history > 0 or self.horizon > 0


OPTION_NAMES: Final = tuple(ReadOptions.__dataclass_fields__)
"""The sample options every reader takes as keyword arguments (``ReadOptions``' fields)."""


def read_options(**given: Any) -> ReadOptions:
    """``ReadOptions`` from the keyword arguments the readers take (``OPTION_NAMES``; sequences
    become tuples; a single session name is refused, it would read as its letters)."""
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown read option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(OPTION_NAMES)}"
        )
    sessions = given.get("sessions")
    if isinstance(sessions, str):
        raise ConfigError(f"sessions={sessions!r}: give a list of session names, not one string")
    if sessions is not None:
        given["sessions"] = tuple(sessions)
    if "split_fractions" in given:
        fractions = tuple(float(f) for f in given["split_fractions"])
        if len(fractions) != len(SPLITS):
            raise ConfigError(
                f"split_fractions={tuple(given['split_fractions'])!r}: give three fractions "
                "(train, val, test)"
            )
        given["split_fractions"] = fractions
    return ReadOptions(**given)


SHUFFLE_BUFFER: Final = 256
"""Samples a shard consumer holds to mix a shuffled epoch (``buffer // run`` runs)."""


@dataclass(frozen=True)
class ShuffleOptions:
    """How a shuffled epoch mixes samples: ``window`` Zarr chunks at a time (``plan``); over
    the shards, runs of ``run`` consecutive samples of a shard, ``buffer // run`` runs at a
    time (``sources.shards``; with windows, a ``buffer``-sample shuffle buffer instead)."""

    window: int = SHUFFLE_WINDOW
    buffer: int = SHUFFLE_BUFFER
    run: int = SHARD_RUN

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"shuffle window of {self.window} chunks: give at least 1")
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 1:
            raise ConfigError("shuffle_buffer must be at least 1 sample")
        if isinstance(self.run, bool) or not isinstance(self.run, int) or self.run < 1:
            raise ConfigError(f"shard run of {self.run} samples: give at least 1")

    @property
    def runs(self) -> int:
        """Shard runs mixed at once."""
        return max(1, self.buffer // self.run)
