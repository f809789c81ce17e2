"""The state of a bundle in the catalog: one ``Status`` per row (docs/output-layout.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["ANCHORS", "Status", "LIVE", "OK"]


class Status(StrEnum):
    """What became of a bundle. A ``StrEnum``: it is written to Parquet as its plain value."""

    CONVERTED = "converted"
    """Outputs written and committed in this run."""
    SKIPPED = "skipped"
    """Unchanged since an earlier conversion (same source sha256s, outputs present)."""
    REJECTED = "rejected"
    """Failed validation (its findings say why); nothing written."""
    DUPLICATE = "duplicate"
    """The same bytes as a bundle already converted under this name elsewhere; not written."""
    CONFLICT = "conflict"
    """Other bytes under an already converted name; ``--force`` replaces it."""
    FAILED = "failed"
    """A valid bundle whose conversion failed (I/O error, worker died); retried by a re-run."""
    REMOVED = "removed"
    """Taken out of the dataset on purpose (``reacture-convert remove``): its outputs and
    samples are gone, the row keeps the reason, the time and the source sha256s, and a later
    conversion of the same bytes skips it (``--readmit`` brings it back)."""

    @property
    def is_live(self) -> bool:
        """A live row describes outputs that exist: the session's outputs hold its bytes."""
        return self in LIVE

    @property
    def is_ok(self) -> bool:
        """Nothing for a person to look at: converted, skipped, a duplicate or removed."""
        return self in OK

    @property
    def is_anchor(self) -> bool:
        """A state that a later one which wrote nothing (conflict, rejected, failed) is kept
        beside rather than replacing: a live row (the outputs hold its bytes), or a removed one
        (its bytes must stay out)."""
        return self in ANCHORS


LIVE: Final = frozenset({Status.CONVERTED, Status.SKIPPED})
OK: Final = frozenset({Status.CONVERTED, Status.SKIPPED, Status.DUPLICATE, Status.REMOVED})
ANCHORS: Final = LIVE | {Status.REMOVED}
