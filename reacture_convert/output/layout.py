"""Where each output lives inside ``OUT``: the one place that spells the paths of
docs/output-layout.md. Paths are relative to OUT, with ``/`` separators."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CATALOG",
    "STATS",
    "WDS_DIR",
    "WDS_INDEX",
    "frames_table_path",
    "rows_path",
    "session_parts",
    "zarr_path",
]

CATALOG: Final = "catalog.parquet"
STATS: Final = "stats.json"
WDS_DIR: Final = "wds"
WDS_INDEX: Final = "wds/index.json"


def zarr_path(session: str) -> str:
    """``zarr/<session>.zarr``: the session's Zarr v3 group (frames, timestamps)."""
    return f"zarr/{session}.zarr"


def rows_path(session: str) -> str:
    """``rows/<session>.parquet``: every data.jsonl row."""
    return f"rows/{session}.parquet"


def frames_table_path(session: str) -> str:
    """``frames/<session>.parquet``: the alignment table, one row per frame."""
    return f"frames/{session}.parquet"


def session_parts(session: str) -> list[str]:
    """The per-session outputs of the ``zarr`` format, in the order they are committed."""
    return [zarr_path(session), rows_path(session), frames_table_path(session)]
