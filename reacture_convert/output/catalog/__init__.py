"""``OUT/catalog.parquet`` and its log: one row per bundle seen, its latest state
(docs/output-layout.md). ``core`` keeps the catalog a run holds and its merge rules; ``entry``
one row and its columns; ``store`` the rows kept compactly in memory; ``slots`` which rows are
live; ``log`` the catalog on disk (the log of fragments and its compaction)."""

from reacture_convert.output.catalog.core import (
    CATALOG,
    CATALOG_SCHEMA,
    HASH_COLUMNS,
    LOG_DIR,
    Catalog,
    CatalogDamagedError,
    CatalogEntry,
    EntryView,
    merge_entries,
    read_catalog,
    write_catalog,
)

__all__ = [
    "CATALOG",
    "CATALOG_SCHEMA",
    "HASH_COLUMNS",
    "LOG_DIR",
    "Catalog",
    "CatalogDamagedError",
    "CatalogEntry",
    "EntryView",
    "merge_entries",
    "read_catalog",
    "write_catalog",
]
