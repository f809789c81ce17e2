"""``OUT/catalog.parquet``: one row per bundle seen, its latest state (docs/output-layout.md).

A bundle is identified by where it was found and its prefix (``source``, ``prefix``); a re-run
replaces that bundle's row. The catalog is the run's memory: a row with status ``converted`` (or
``skipped``) means every output of that session is complete, because rows are only written after
the session's commit. ``merge_entries`` keeps that memory truthful: exactly one *live* row
(converted or skipped) describes what a session's outputs hold, and a later state that wrote
nothing (conflict, rejected, failed) is kept beside it rather than erasing it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.bundle import ROLES
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output

__all__ = [
    "CATALOG",
    "CATALOG_SCHEMA",
    "CatalogEntry",
    "Status",
    "read_catalog",
    "write_catalog",
    "merge_entries",
    "Catalog",
]

CATALOG = "catalog.parquet"


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
    ]
)


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog row. ``hashes`` maps a role (``frames.npy``...) to the file's sha256."""

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # "converted" is fine too

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.source, self.prefix)

    def to_record(self) -> dict[str, Any]:
        rec = {k: v for k, v in asdict(self).items() if k not in ("hashes", "findings", "outputs")}
        for role, col in HASH_COLUMNS.items():
            rec[col] = self.hashes.get(role)
        rec["findings"] = [f.to_dict() for f in self.findings]
        rec["n_errors"] = sum(f.severity is Severity.ERROR for f in self.findings)
        rec["n_warnings"] = sum(f.severity is Severity.WARNING for f in self.findings)
        rec["outputs"] = list(self.outputs)
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> CatalogEntry:
        hashes = {role: rec[col] for role, col in HASH_COLUMNS.items() if rec.get(col)}
        findings = tuple(
            Finding(
                Severity(f["severity"]),
                f["code"],
                f["file"],
                f["message"],
                line=f["line"],
                frame=f["frame"],
            )
            for f in rec.get("findings") or []
        )
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
        )


def read_catalog(out: Output) -> list[CatalogEntry]:
    """The catalog's rows, or [] when OUT has none yet."""
    path = out.path(CATALOG)
    if not out.fs.exists(path):
        return []
    with out.fs.open(path, "rb") as f:
        table = pq.read_table(f)
    return [CatalogEntry.from_record(r) for r in table.to_pylist()]


def merge_entries(old: Iterable[CatalogEntry], new: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """``old`` with every bundle of ``new`` replaced by its new state; sorted for stable output.

    Two rules keep the catalog true to the outputs (the next run's ``done`` set comes from it):

    - a new state that wrote nothing (conflict, rejected, failed) never erases the live row of
      the same bundle: the session's outputs still hold those bytes, so that row stays and the
      new state is kept beside it (otherwise the next run forgets the session and converts the
      changed bundle without ``--force``); a later live state replaces both;
    - a new live row for a session demotes every other bundle's converted, skipped or duplicate
      row of that session whose bytes differ (``--force`` from another place replaced the
      outputs): such a row becomes ``conflict`` with no outputs (or gives way to the newer
      state kept beside it), so the live rows of a session all describe the bytes it holds.
    """
    rows: dict[tuple[str, str | None, bool], CatalogEntry] = {}
    # live rows first, so that an old row kept beside one goes back beside it
    for e in sorted(old, key=lambda e: not e.status.is_live):
        _put(rows, e)
    for e in new:
        _put(rows, e)
    return sorted(
        rows.values(), key=lambda e: (e.session or "", e.source, e.prefix or "", e.status)
    )


def _put(rows: dict[tuple[str, str | None, bool], CatalogEntry], e: CatalogEntry) -> None:
    """Record ``e`` in ``rows`` (slots: (source, prefix, beside-the-live-row))."""
    main, beside = (*e.key, False), (*e.key, True)
    if not e.status.is_live:
        current = rows.get(main)
        if current is not None and current.status.is_live:
            rows[beside] = e
        else:
            rows[main] = e
            rows.pop(beside, None)
        return
    rows[main] = e
    rows.pop(beside, None)
    if not e.session:
        return
    for slot, other in list(rows.items()):
        if (
            not slot[2]
            and other.session == e.session
            and other.key != e.key
            and (other.status.is_live or other.status is Status.DUPLICATE)
            and dict(other.hashes) != dict(e.hashes)
        ):
            # that bundle's newer state, if one was kept beside, is now its only state
            newer = rows.pop((*other.key, True), None)
            rows[slot] = newer if newer is not None else _superseded(other, e)


def _superseded(row: CatalogEntry, by: CatalogEntry) -> CatalogEntry:
    msg = (
        f"session {row.session!r} now holds the bundle from {by.source}, whose files differ "
        "from this one; this bundle is no longer converted (pass --force to convert it back)"
    )
    return replace(
        row,
        status=Status.CONFLICT,
        reason=msg,
        outputs=(),
        findings=(finding("CONFLICT", row.prefix or row.source, msg),),
        converted_at=by.converted_at,
        run_id=by.run_id,
    )


def write_catalog(out: Output, entries: Sequence[CatalogEntry]) -> None:
    """Replace the catalog atomically (write-then-rename locally, one PUT on object stores)."""
    table = pa.Table.from_pylist([e.to_record() for e in entries], schema=CATALOG_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    out.write_bytes_atomic(CATALOG, buf.getvalue())


def _same_row(a: CatalogEntry, b: CatalogEntry) -> bool:
    """Equal but for when and by which run: writing ``b`` over ``a`` would change nothing."""
    return replace(a, converted_at=None, run_id=None) == replace(b, converted_at=None, run_id=None)


class Catalog:
    """The catalog a driver keeps while it runs: its rows in memory, merged as results come in
    (``merge_entries``' rules) and written atomically by ``flush``. Only the lock holder keeps
    one: it is the only writer of ``catalog.parquet``."""

    def __init__(self, out: Output, rows: Sequence[CatalogEntry] = ()) -> None:
        self.out = out
        self.rows: list[CatalogEntry] = list(rows)
        self.dirty = False  # rows not yet written

    @classmethod
    def load(cls, out: Output) -> Catalog:
        return cls(out, read_catalog(out))

    def live(self) -> dict[str, CatalogEntry]:
        """The live (converted or skipped) row of each session: what its outputs hold."""
        return {e.session: e for e in self.rows if e.session and e.status.is_live}

    def record(self, entry: CatalogEntry, *, keep_skipped: bool = True) -> None:
        """Merge ``entry`` into the rows. ``keep_skipped=False`` leaves the rows as they are
        for a ``skipped`` result and for a row they already hold but for its time and run id
        (a long-running watcher does not churn the catalog with them)."""
        if not keep_skipped and (
            entry.status is Status.SKIPPED
            or any(e.key == entry.key and _same_row(e, entry) for e in self.rows)
        ):
            return
        self.rows = merge_entries(self.rows, [entry])
        self.dirty = True

    def drop(self, key: tuple[str, str | None], status: Status) -> None:
        """Forget the row of bundle ``key`` with ``status`` (an archive that reads again)."""
        kept = [e for e in self.rows if not (e.key == key and e.status is status)]
        if len(kept) != len(self.rows):
            self.rows = kept
            self.dirty = True

    def flush(self) -> None:
        """Write the rows when they changed (raises ``OSError`` when the store refuses)."""
        if self.dirty:
            write_catalog(self.out, self.rows)
            self.dirty = False
