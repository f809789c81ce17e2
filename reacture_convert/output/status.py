"""The state of a bundle in the catalog: one ``Status`` per row (docs/output-layout.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["Status", "LIVE", "OK"]


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

    @property
    def is_live(self) -> bool:
        """A live row describes outputs that exist: the session's outputs hold its bytes."""
        return self in LIVE

    @property
    def is_ok(self) -> bool:
        """Nothing for a person to look at: converted, skipped or a duplicate."""
        return self in OK


LIVE: Final = frozenset({Status.CONVERTED, Status.SKIPPED})
OK: Final = frozenset({Status.CONVERTED, Status.SKIPPED, Status.DUPLICATE})
