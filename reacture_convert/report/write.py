"""``write_report``: find the sessions of a dataset or of bundles, and write each one's pictures
and page, then the index."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reacture_convert.errors import InputError, UnknownNameError
from reacture_convert.findings import Finding
from reacture_convert.ingest.bundle import StorageOptions
from reacture_convert.output.storage import Output
from reacture_convert.report import bundles, converted
from reacture_convert.report.data import INDEX, Found, Session, select
from reacture_convert.report.html import index_html, session_html
from reacture_convert.report.plots import write_cadence, write_thumbnails, write_timeline

__all__ = ["ReportResult", "SessionPage", "write_report"]


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One session's page and the pictures it shows (thumbnails first, then plots)."""

    session: str  # the session name as recorded (untrusted text, shown escaped)
    html: Path
    thumbnails: tuple[Path, ...] = ()
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What ``write_report`` wrote: the index, one page per session, every file."""

    report_dir: Path
    index: Path
    pages: tuple[SessionPage, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written: the index, then each page and its pictures."""
        out = [self.index]
        for p in self.pages:
            out += [p.html, *p.thumbnails, *p.plots]
        return tuple(out)


def write_report(
    target: str | Path,
    report_dir: str | Path,
    sessions: Sequence[str] | None = None,
    storage_options: StorageOptions | None = None,
) -> ReportResult:
    """Write the HTML report of ``target`` into the local folder ``report_dir``.

    ``target`` is a converted dataset (a folder or URL holding ``catalog.parquet``) or anything
    ``discover`` accepts (bundle folder, archive, glob, URL). ``sessions`` restricts the report
    to these session names (or bundle prefixes); an unknown name raises ``UnknownNameError``
    listing the known ones, before anything is written. A session whose data cannot be read
    still gets a page that says why. Overwrites the pages and ``<session>_files/`` folders it
    writes; leaves other files alone.
    """
    target = str(target)
    opts = dict(storage_options or {})
    out = Output(target, opts)
    found: list[Found]
    loose: tuple[Finding, ...] = ()
    if converted.is_dataset(out):
        kind, found = "converted dataset", converted.find(out)
    else:
        kind = "unconverted bundle(s)"
        found, loose = bundles.find(target, opts)
    try:
        chosen = select(found, sessions)
    except InputError as e:  # a name that is not there: nothing is written
        raise UnknownNameError(str(e)) from None
    root = Path(report_dir)
    root.mkdir(parents=True, exist_ok=True)
    pages, shown = [], []
    for _, loaded in chosen:
        with loaded() as session:
            pages.append(_write_session(root, session))
        shown.append(session.facts)
    index = root / INDEX
    index.write_text(index_html(target, kind, shown, loose), encoding="utf-8")
    return ReportResult(root, index, tuple(pages))


def _write_session(root: Path, session: Session) -> SessionPage:
    """Write a session's pictures into ``<page>_files/`` and then its page."""
    facts = session.facts
    folder = root / f"{facts.page}_files"
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir()
    notes = list(session.notes)
    thumbs = write_thumbnails(session, folder, notes)
    plots: list[Path] = []
    if session.timestamps is not None and session.timestamps.size > 1:
        plots.append(folder / "cadence.png")
        write_cadence(session, plots[-1])
    if session.timeline is not None:
        plots.append(folder / "timeline.png")
        write_timeline(session, plots[-1])
    page = root / f"{facts.page}.html"
    page.write_text(
        session_html(replace(session, notes=tuple(notes)), root, thumbs, plots), encoding="utf-8"
    )
    return SessionPage(facts.session, page, tuple(t.path for t in thumbs), tuple(plots))
