"""``repair``: rebuild OUT's catalog from what is committed under OUT (docs/output-layout.md,
"When the catalog is damaged").

The catalog is rebuilt from two things. What of it still reads (``catalog.parquet`` if it
decodes, each log fragment that decodes, replayed in order with the catalog's rules) gives every
row it can, with the columns no output holds (findings, times, run ids, rejected bundles). Then
every committed Zarr group is a converted session whose row can be re-derived: its attributes
hold the session, prefix, source, the source files' sha256 and the converter's version, its
arrays the frame count, ``rows/<session>.parquet`` the row count; a session whose outputs do not
verify (a commit cut short) gets no row, and the next ``convert`` converts it again; nor does
one that a removal cut short was taking out (its ``removed`` row, or the note ``.removing``,
names it: the next ``remove`` or ``convert`` deletes what is left of it). A session's
readable live row is kept when it describes those outputs (same source hashes); otherwise the
re-derived row replaces it, with no findings, ``converted_at`` or ``run_id`` (said).

Written under OUT's lock: the old catalog (``catalog.parquet``, copied, so that OUT always has
one, and every log fragment, moved) is set aside into ``.damaged/<when>/``, never deleted, then
the new ``catalog.parquet`` is written atomically. ``dry_run`` reads and says, and writes
nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import pyarrow.parquet as pq

from reacture_convert import __version__
from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.index import read_index
from reacture_convert.output.catalog import CATALOG, LOG_DIR, Catalog, CatalogEntry, write_catalog
from reacture_convert.output.catalog.log import list_log, remove_log_dir, salvage, set_aside
from reacture_convert.output.layout import fragment_name, rows_path, session_parts, zarr_path
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.read.session import open_session
from reacture_convert.read.verify import output_digests, verify_session
from reacture_convert.run.removal import pending_removal

__all__ = ["RepairResult", "repair_catalog"]

DERIVED = "re-derived by `reacture-convert repair` from the committed outputs"


@dataclass(frozen=True)
class RepairResult:
    """What ``repair_catalog`` found and did (or, ``dry_run``, would do)."""

    out: str
    dry_run: bool
    damage: tuple[str, ...] = ()  # what is wrong with the catalog as stored, file by file
    set_aside: tuple[str, ...] = ()  # the old catalog's files, in .damaged/<when>/
    derived: tuple[str, ...] = ()  # sessions whose row was re-derived from their outputs
    kept: int = 0  # rows read back from the old catalog
    rows: int = 0  # rows of the rebuilt catalog
    notes: tuple[str, ...] = ()  # what could not be re-derived

    @property
    def changed(self) -> bool:
        """The catalog needed (``dry_run``: needs) rebuilding."""
        return bool(self.damage or self.derived)


def _zarr_sessions(out: Output) -> list[str]:
    names = out.list_names(out.path("zarr"))
    return sorted(n.removesuffix(".zarr") for n in names if n.endswith(".zarr"))


def _derive(out: Output, session: str) -> CatalogEntry:
    """The ``converted`` row that ``session``'s committed outputs describe."""
    arrays = open_session(out, session)
    attrs = arrays.attrs
    provenance = attrs.get("provenance") or {}
    with out.fs.open(out.path(rows_path(session)), "rb") as f:
        n_rows = pq.ParquetFile(f).metadata.num_rows
    frames_attrs = attrs.get("frames") or {}
    return CatalogEntry(
        session=session,
        source=str(provenance.get("source") or ""),
        prefix=attrs.get("prefix"),
        status=Status.CONVERTED,
        metadata_session_id=attrs.get("metadata_session_id"),
        reason=DERIVED,
        n_frames=int(arrays.frames.shape[0]),
        n_rows=int(n_rows),
        blank_frames=frames_attrs.get("blank_frames"),
        hashes=dict(provenance.get("sha256") or {}),
        outputs=tuple(session_parts(session)),
        converter_version=str(provenance.get("converter_version") or __version__),
    )


Rebuilt = tuple[Catalog, list[tuple[str, str]], list[str], int]


def _rebuild(out: Output, notes: list[str]) -> Rebuilt:
    """The rebuilt catalog (in memory), the damage found, the sessions re-derived, and how many
    rows were read back."""
    found = salvage(out)
    catalog = Catalog.read(out, found.compacted, found.fragments)
    removing = set(pending_removal(out) or ())  # a removal cut short: its sessions stay out
    kept = len(catalog.rows())
    derived: list[str] = []
    for session in _zarr_sessions(out):
        try:
            entry = _derive(out, session)
        except (OSError, ValueError, KeyError, TypeError) as e:
            notes.append(
                f"{zarr_path(session)}: cannot be read ({type(e).__name__}: {e}); no row "
                "re-derived (the next convert converts its bundle again)"
            )
            continue
        live = catalog.live(session)
        if live is not None and dict(live.hashes) == dict(entry.hashes) and live.outputs:
            continue  # the readable row describes these outputs
        gone = catalog.removed(session, entry.key)
        same = gone is not None and dict(gone.hashes) == dict(entry.hashes)
        if live is None and (same or session in removing):
            notes.append(
                f"{zarr_path(session)}: left by a removal that was cut short: not re-derived "
                "(the next remove or convert deletes it)"
            )
            continue
        if not entry.source or not entry.prefix:
            notes.append(f"{zarr_path(session)}: its attributes name no source or prefix")
            continue
        problems = verify_session(out, entry)
        if problems:
            notes.append(
                f"{zarr_path(session)}: outputs do not verify ({problems[0].what}); no row "
                "re-derived (the next convert converts its bundle again)"
            )
            continue
        catalog.put(replace(entry, files=output_digests(out, session)))  # of verified files
        derived.append(session)
    if derived:
        notes.append(
            f"{len(derived)} row(s) re-derived from outputs: their findings, converted_at and "
            "run_id are not kept in the outputs and are left empty"
        )
    if found.damage and not found.compacted.exists:
        notes.append(
            "rows that catalog.parquet alone held and no output describes (rejected, failed, "
            "conflicting bundles) are gone: the next convert records them again"
        )
    index = read_index(out) if out.exists("wds", "index.json") else None
    for s in index.sessions if index is not None else ():
        if catalog.live(s.session) is None:
            notes.append(
                f"wds: session {s.session} is in the shards but has no Zarr outputs and no "
                "readable row: its row cannot be re-derived (convert its bundle again)"
            )
    return catalog, found.damage, derived, kept


def repair_catalog(out: Output, *, dry_run: bool = False) -> RepairResult:
    """Rebuild the catalog of ``out`` (see the module doc); ``dry_run``: only say what would be
    done. Raises ``OutputError`` when ``out`` is no converted dataset, ``LockedError`` when a
    run holds it."""
    if not any(out.exists(p) for p in (CATALOG, LOG_DIR, "zarr")):
        raise OutputError(
            f"{out.url}: no {CATALOG}, catalog log or zarr/ here: not a converted dataset, "
            "nothing to repair; give the --out folder (or URL) of a `reacture-convert convert` run"
        )
    notes: list[str] = []
    if dry_run:
        catalog, damage, derived, kept = _rebuild(out, notes)
        return _result(out, True, damage, (), derived, kept, len(catalog.rows()), notes)
    with lock_output(out) as held:
        catalog, damage, derived, kept = _rebuild(out, notes)
        rows = catalog.rows()
        if not damage and not derived:
            return _result(out, False, damage, (), derived, kept, len(rows), notes)
        held.check()
        try:
            old = [CATALOG] if out.exists(CATALOG) else []
            moved = set_aside(out, [*old, *(fragment_name(s) for s in list_log(out))], _now())
            held.check()
            write_catalog(out, rows)
        except OutputError:
            raise
        except OSError as e:
            raise OutputError(
                f"{out.url}: cannot write the rebuilt catalog ({type(e).__name__}: {e}); make "
                "OUT writable and run `reacture-convert repair` again"
            ) from e
        remove_log_dir(out)
    return _result(out, False, damage, moved, derived, kept, len(rows), notes)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _result(
    out: Output,
    dry_run: bool,
    damage: list[tuple[str, str]],
    moved: tuple[str, ...] | list[str],
    derived: list[str],
    kept: int,
    rows: int,
    notes: list[str],
) -> RepairResult:
    return RepairResult(
        out=out.url,
        dry_run=dry_run,
        damage=tuple(f"{rel}: {what}" for rel, what in damage),
        set_aside=tuple(moved),
        derived=tuple(derived),
        kept=kept,
        rows=rows,
        notes=tuple(notes),
    )
