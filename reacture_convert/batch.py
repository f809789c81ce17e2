"""Run a batch: discover bundles, convert each as a task, keep the catalog, summarise.

The driver (this module) is the only writer of ``catalog.parquet``; tasks write their own
session's outputs to staging and commit them. The catalog is rewritten after every finished
session, so a killed run loses at most the sessions that were in flight, and a re-run skips what
is done (by source hashes) and redoes the rest.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reacture_convert.bundle import BundleRef
from reacture_convert.catalog import CatalogEntry, merge_entries, read_catalog, write_catalog
from reacture_convert.convert import ConvertOptions, convert_bundle
from reacture_convert.discover import discover
from reacture_convert.findings import Finding, Severity
from reacture_convert.naming import session_name
from reacture_convert.storage import Output, lock_output
from reacture_convert import __version__

__all__ = ["RunSummary", "run_convert", "OK_STATUSES"]

OK_STATUSES = frozenset({"converted", "skipped", "duplicate"})

ProgressFn = Callable[[CatalogEntry, int, int], None]


@dataclass(frozen=True)
class RunSummary:
    """What a run did: one entry per bundle (and per unreadable archive), plus stray findings."""

    out: str
    run_id: str
    entries: tuple[CatalogEntry, ...]
    findings: tuple[Finding, ...] = ()
    seconds: float = 0.0
    frames: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(e.status for e in self.entries))

    @property
    def ok(self) -> bool:
        return all(e.status in OK_STATUSES for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "run_id": self.run_id,
            "ok": self.ok,
            "counts": self.counts,
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "frames_per_second": round(self.frames / self.seconds, 1) if self.seconds else None,
            "sessions": [
                {"session": e.session, "prefix": e.prefix, "source": e.source, "status": e.status,
                 "reason": e.reason, "n_frames": e.n_frames, "n_rows": e.n_rows,
                 "outputs": list(e.outputs), "findings": [f.to_dict() for f in e.findings]}
                for e in self.entries
            ],
            "findings": [f.to_dict() for f in self.findings],
            **dict(self.extra),
        }


def _archive_entries(findings: Sequence[Finding], run_id: str) -> list[CatalogEntry]:
    """Error findings that belong to no bundle (an unreadable archive, a refused member, a
    missing input) become catalog rows of their own, one per archive or path."""
    by_source: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.severity is Severity.ERROR:
            by_source[f.file.split("!", 1)[0]].append(f)
    return [
        CatalogEntry(session=None, source=src, prefix=None, status="rejected",
                     reason=f"{fs[0].code} at {fs[0].location()}", findings=tuple(fs),
                     converter_version=__version__, converted_at=None, run_id=run_id)
        for src, fs in sorted(by_source.items())
    ]


def run_convert(
    paths: Sequence[str],
    out: Output,
    options: ConvertOptions = ConvertOptions(),
    *,
    progress: ProgressFn | None = None,
    wait_for_lock: bool = False,
) -> RunSummary:
    """Convert every bundle found under ``paths`` into ``out``; never raises for bad input."""
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    with lock_output(out, wait=wait_for_lock):
        found = discover(list(paths), options.input_options)
        catalog = read_catalog(out)
        done = {e.session: e for e in catalog if e.status in ("converted", "skipped") and e.session}
        out.clear_staging()

        groups: dict[str, list[BundleRef]] = defaultdict(list)
        for b in found.bundles:
            groups[session_name(b.prefix)].append(b)

        entries: list[CatalogEntry] = _archive_entries(found.findings, run_id)
        total = len(found.bundles)

        def record(entry: CatalogEntry) -> None:
            entries.append(entry)
            write_catalog(out, merge_entries(catalog, entries))
            if progress is not None:
                progress(entry, len(entries), total)

        for name, bundles in sorted(groups.items()):
            first, *rest = sorted(bundles, key=lambda b: b.source)
            entry = convert_bundle(first, out, options, done.get(name), run_id)
            record(entry)
            peer = entry if entry.status in ("converted", "skipped") else done.get(name)
            for other in rest:
                record(convert_bundle(other, out, replace(options, force=False), peer, run_id))
        if not groups and entries:
            write_catalog(out, merge_entries(catalog, entries))
    frames = sum(e.n_frames or 0 for e in entries if e.status == "converted")
    return RunSummary(out=out.url, run_id=run_id, entries=tuple(entries), findings=found.findings,
                      seconds=time.perf_counter() - started, frames=frames)
