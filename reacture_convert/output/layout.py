"""Where each output lives inside ``OUT``: the one place that spells the paths of
docs/output-layout.md. Paths are relative to OUT, with ``/`` separators."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CARD",
    "CARD_ASIDE",
    "CATALOG",
    "DAMAGED",
    "LOCK",
    "LOCKED_WRITES",
    "LOG_DIR",
    "REMOVING",
    "RUN_FILES",
    "SHARD_SUFFIX",
    "SHARD_SUFFIX_GZ",
    "STAGING",
    "INTERRUPTED",
    "STATS",
    "TRASH",
    "WDS_CARD",
    "WDS_CARD_ASIDE",
    "WDS_DIR",
    "WDS_INDEX",
    "WDS_STAGE",
    "fragment_name",
    "is_shard_file",
    "frames_table_path",
    "rows_path",
    "session_parts",
    "staged_session_tar",
    "shard_name",
    "zarr_path",
]

CATALOG: Final = "catalog.parquet"
LOG_DIR: Final = ".catalog"  # the catalog's log: fragments recorded since catalog.parquet
STATS: Final = "stats.json"
CARD: Final = "README.md"
CARD_ASIDE: Final = "DATASET_CARD.md"  # the card, where README.md is the user's own file
WDS_DIR: Final = "wds"
WDS_INDEX: Final = f"{WDS_DIR}/index.json"
WDS_CARD: Final = f"{WDS_DIR}/README.md"
WDS_CARD_ASIDE: Final = f"{WDS_DIR}/{CARD_ASIDE}"
STAGING: Final = ".staging"  # work in progress: OUT/.staging/<run>/<session>/...
TRASH: Final = ".trash"  # replaced copies, on their way out
DAMAGED: Final = ".damaged"  # damaged catalog files set aside: OUT/.damaged/<when>/<path>
LOCK: Final = ".lock"  # the run lock (on S3: the lease object)
INTERRUPTED: Final = ".interrupted"  # an interrupted batch's note: the next run resumes it
REMOVING: Final = ".removing"  # a removal under way: the next holder of the lock settles it
SHARD_SUFFIX: Final = ".tar"  # a WebDataset shard
SHARD_SUFFIX_GZ: Final = ".tar.gz"  # a compressed one (one gzip member, flushed every run)
WDS_STAGE: Final = ".wds"  # the shard merge's folder in staging (session names hold no ".")
# Files only the lock holder writes (atomically): their stray temporaries are cleared.
LOCKED_WRITES: Final = (
    CATALOG,
    WDS_INDEX,
    CARD,
    WDS_CARD,
    CARD_ASIDE,
    WDS_CARD_ASIDE,
    INTERRUPTED,
    REMOVING,
    f"{LOG_DIR}/*",
)
# What a run puts in OUT before its first catalog row (a dataset has CATALOG or LOG_DIR): the
# card (when it is one: ``output.claim``), work in progress, the lock.
RUN_FILES: Final = (CARD, CARD_ASIDE, STAGING, TRASH, LOCK, INTERRUPTED)


def fragment_name(seq: int) -> str:
    """``.catalog/<seq>.arrow``: a fragment of the catalog's log (12 digits)."""
    return f"{LOG_DIR}/{seq:012d}.arrow"


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


def shard_name(name: str, tag: str, number: int, suffix: str = SHARD_SUFFIX) -> str:
    """``<name>-<tag>-NNNNNN.tar`` (or ``.tar.gz``, ``suffix``): a WebDataset shard in
    ``wds/``."""
    return f"{name}-{tag}-{number:06d}{suffix}"


def is_shard_file(name: str) -> bool:
    """``name`` (a file name in ``wds/``) is named as a shard is, compressed or not."""
    return name.endswith((SHARD_SUFFIX, SHARD_SUFFIX_GZ))


def staged_session_tar(run_id: str | None, session: str) -> str:
    """``.staging/<run>/.wds-sessions/<session>.tar``: a session's sample tar waiting for the
    shard merge (inside staging: never visible)."""
    return f"{STAGING}/{run_id or 'direct'}/.wds-sessions/{session}.tar"
