"""What one session page shows, whatever it was read from: the session's catalog facts, its
frame times, a reader of its frames, its timeline, and notes on what could not be read.

``converted`` builds these from a converted dataset, ``bundles`` from unconverted bundles; both
find every session as a ``Found`` (its facts, and how to load the rest) and name its page with
``page_name``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from reacture_convert.errors import InputError, ReactureError
from reacture_convert.findings import Finding, Severity
from reacture_convert.output.naming import is_safe_name, session_name
from reacture_convert.report.timeline import Timeline

__all__ = [
    "INDEX",
    "NOTED_ERRORS",
    "Facts",
    "Found",
    "FrameReader",
    "Session",
    "page_name",
    "select",
]

INDEX: Final = "index.html"

NOTED_ERRORS: Final[tuple[type[BaseException], ...]] = (
    ReactureError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    EOFError,
    pa.ArrowException,
)
"""What reading a session's data raises when the data is damaged or missing (a broken output,
a corrupt archive member), not because of a bug: the page shows it as a note instead of
failing."""


@dataclass(frozen=True, slots=True)
class Facts:
    """The catalog facts of one session (or of one unconverted bundle)."""

    session: str
    page: str  # file stem of its page: always a safe name
    status: str
    source: str
    prefix: str | None = None
    metadata_session_id: str | None = None
    n_frames: int | None = None
    n_rows: int | None = None
    blank_frames: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    reason: str | None = None

    def count(self, severity: Severity) -> int:
        return sum(f.severity is severity for f in self.findings)


FrameReader = Callable[[Sequence[int]], npt.NDArray[np.uint8]]
"""Reads the frames at the given indices, as stored, in the order asked."""


@dataclass(frozen=True, slots=True)
class Session:
    """Everything one page shows; ``notes`` say what could not be read, and why."""

    facts: Facts
    timestamps: npt.NDArray[np.float64] | None = None  # frame times, ms
    read_frames: FrameReader | None = None
    n_stored: int = 0  # frames that read_frames can read
    bottom_up: bool = True
    timeline: Timeline | None = None
    notes: tuple[str, ...] = ()


Found = tuple[Facts, Callable[[], AbstractContextManager[Session]]]
"""A session found: its facts, and what loads the rest (held open while its page is drawn)."""


def select(found: list[Found], sessions: Sequence[str] | None) -> list[Found]:
    """The sessions asked for by name or bundle prefix (all when None), in the order found;
    ``InputError`` listing the known sessions when a name is unknown."""
    if sessions is None:
        return found
    known = {f.session for f, _ in found} | {f.prefix for f, _ in found if f.prefix}
    unknown = [s for s in sessions if s not in known]
    if unknown:
        names = ", ".join(sorted({f.session for f, _ in found})) or "none"
        raise InputError(
            f"no session named {', '.join(map(repr, unknown))}; known sessions: {names}"
        )
    wanted = set(sessions)
    return [(f, x) for f, x in found if f.session in wanted or f.prefix in wanted]


def page_name(base: str, used: set[str]) -> str:
    """A safe page name derived from ``base``, not yet in ``used`` (which it joins), never the
    index's."""
    name = base if is_safe_name(base) else session_name(base)
    if name == INDEX.removesuffix(".html"):
        name += "-session"
    stem, k = name, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name
