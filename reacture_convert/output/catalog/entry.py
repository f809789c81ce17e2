"""One catalog row: ``CatalogEntry``, its columns (``CATALOG_SCHEMA``) and the conversions
between entries and Arrow tables (docs/output-layout.md, "catalog.parquet")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from reacture_convert import __version__
from reacture_convert.findings import Finding, Severity
from reacture_convert.ingest.bundle import ROLES
from reacture_convert.output.digests import FileDigest
from reacture_convert.output.status import Status

__all__ = [
    "CATALOG_SCHEMA",
    "FILE_TYPE",
    "CatalogEntry",
    "HASH_COLUMNS",
    "entries_table",
    "table_entries",
]

HASH_COLUMNS = {
    **{role: "sha256_" + role.split(".")[0] for role in ROLES},
    "frames.json": "sha256_frames_json",  # legacy four-file exports only (extension)
}

FINDING_TYPE = pa.struct(
    [
        ("severity", pa.string()),
        ("code", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("frame", pa.int64()),
        ("message", pa.string()),
    ]
)

FILE_TYPE = pa.struct([("path", pa.string()), ("bytes", pa.int64()), ("sha256", pa.string())])

CATALOG_SCHEMA = pa.schema(
    [
        ("session", pa.string()),
        ("source", pa.string()),
        ("prefix", pa.string()),
        ("metadata_session_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("n_frames", pa.int64()),
        ("n_rows", pa.int64()),
        ("blank_frames", pa.int64()),
        *[(col, pa.string()) for col in HASH_COLUMNS.values()],
        ("findings", pa.list_(FINDING_TYPE)),
        ("n_errors", pa.int64()),
        ("n_warnings", pa.int64()),
        ("outputs", pa.list_(pa.string())),
        ("converter_version", pa.string()),
        ("converted_at", pa.timestamp("ms", tz="UTC")),
        ("run_id", pa.string()),
        ("files", pa.list_(FILE_TYPE)),
    ]
)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One catalog row. ``hashes`` maps a role (``frames.npy``...) to the file's sha256;
    ``files``, every file of the outputs with its size and sha256, taken when it was written
    (empty: none recorded, as in a catalog written before the column existed)."""

    session: str | None
    source: str
    prefix: str | None
    status: Status
    metadata_session_id: str | None = None
    reason: str | None = None
    n_frames: int | None = None
    n_rows: int | None = None
    blank_frames: int | None = None
    hashes: Mapping[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    outputs: tuple[str, ...] = ()
    converter_version: str = ""
    converted_at: Any = None  # datetime (UTC) of this row's state
    run_id: str | None = None
    files: tuple[FileDigest, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # "converted" is fine too

    @classmethod
    def rejected(
        cls,
        source: str,
        prefix: str | None,
        findings: Iterable[Finding],
        *,
        session: str | None,
        converted_at: Any,
        run_id: str | None,
        **fields: Any,
    ) -> CatalogEntry:
        """A ``rejected`` row of this converter: ``findings`` hold at least one error, and
        the first error is the reason (``CODE at where``)."""
        found = tuple(findings)
        first = next(f for f in found if f.severity == Severity.ERROR)
        return cls(
            session=session,
            source=source,
            prefix=prefix,
            status=Status.REJECTED,
            reason=f"{first.code} at {first.location()}",
            findings=found,
            converter_version=__version__,
            converted_at=converted_at,
            run_id=run_id,
            **fields,
        )

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.source, self.prefix)

    def to_record(self) -> dict[str, Any]:
        """The row as ``CATALOG_SCHEMA`` spells it."""
        return {
            "session": self.session,
            "source": self.source,
            "prefix": self.prefix,
            "metadata_session_id": self.metadata_session_id,
            "status": str(self.status),
            "reason": self.reason,
            "n_frames": self.n_frames,
            "n_rows": self.n_rows,
            "blank_frames": self.blank_frames,
            **{col: self.hashes.get(role) for role, col in HASH_COLUMNS.items()},
            "findings": [f.to_dict() for f in self.findings],
            "n_errors": sum(f.severity is Severity.ERROR for f in self.findings),
            "n_warnings": sum(f.severity is Severity.WARNING for f in self.findings),
            "outputs": list(self.outputs),
            "converter_version": self.converter_version,
            "converted_at": self.converted_at,
            "run_id": self.run_id,
            "files": [f.to_dict() for f in self.files] if self.files else None,
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> CatalogEntry:
        hashes = {role: rec[col] for role, col in HASH_COLUMNS.items() if rec.get(col)}
        findings = tuple(Finding.from_dict(f) for f in rec.get("findings") or [])
        return cls(
            session=rec["session"],
            source=rec["source"],
            prefix=rec["prefix"],
            status=Status(rec["status"]),
            metadata_session_id=rec.get("metadata_session_id"),
            reason=rec.get("reason"),
            n_frames=rec.get("n_frames"),
            n_rows=rec.get("n_rows"),
            blank_frames=rec.get("blank_frames"),
            hashes=hashes,
            findings=findings,
            outputs=tuple(rec.get("outputs") or ()),
            converter_version=rec.get("converter_version") or "",
            converted_at=rec.get("converted_at"),
            run_id=rec.get("run_id"),
            files=tuple(FileDigest.from_dict(f) for f in rec.get("files") or ()),
        )


def entries_table(entries: Iterable[CatalogEntry]) -> pa.Table:
    """``entries`` as one Arrow table of ``CATALOG_SCHEMA``, in their order."""
    return pa.Table.from_pylist([e.to_record() for e in entries], schema=CATALOG_SCHEMA)


def table_entries(table: pa.Table) -> list[CatalogEntry]:
    """The rows of a ``CATALOG_SCHEMA`` table as entries, in table order."""
    return [CatalogEntry.from_record(r) for r in table.to_pylist()]
