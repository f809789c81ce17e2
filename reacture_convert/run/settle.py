"""When an upload is complete: what a watcher has seen under INCOMING, and what is ready.

A file's *stamp* is its URL, size, modification time and ETag (object stores), read from the
poll's one listing (``discover`` with a ``Listing``: no request per file). A bundle's or an
archive's stamps must stay the same for a settle time before the watcher acts on it; the time
counts from the newest modification time the store reports (the upload's own clock), so a
restarted watcher acts on old uploads at once.

``Incoming`` keeps, per bundle (and per archive that cannot be used), its stamps and state
(``Track``), so a poll costs what changed: a settled bundle whose stamps are unchanged is not
looked at again, an archive whose stamp is unchanged is not opened again (its index is reused),
and what was handled stays handled even if one listing misses it (an object store's hiccup).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fsspec.core import url_to_fs

from reacture_convert.findings import Finding, Severity, finding
from reacture_convert.ingest.archives import is_archive
from reacture_convert.ingest.bundle import BundleRef
from reacture_convert.ingest.discover import (
    ArchiveIndex,
    Discovery,
    Listing,
    discover,
    file_stamp,
    mtime_of,
)
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.naming import session_name
from reacture_convert.run.driver import archive_entries
from reacture_convert.run.options import WatchOptions

__all__ = ["Incoming", "Key", "Stamp", "Track", "mtime_of", "quiet_since", "stamp_of"]

Stamp = tuple[str, int, float | None, str | None]  # url, size, mtime, etag
Key = tuple[str, str | None]  # (source, prefix); an archive's own rows have prefix None
EventFn = Callable[..., None]  # emit(kind, **fields)


def stamp_of(url: str, opts: Mapping[str, Any]) -> Stamp:
    """What says a file changed (asked of the store: one request)."""
    fs, path = url_to_fs(url, **dict(opts))
    return (url, *file_stamp(fs.info(path)))


def quiet_since(stamps: Sequence[Stamp], now: float, wall: float) -> float:
    """The monotonic time from which ``stamps`` count as unchanged: now, moved back by the age
    of the newest modification time (never forward: a clock ahead of ours counts as now)."""
    # a whole second may be a truncated time (S3's LastModified): count it as the latest it
    # could have been, so that a settle time is never cut short by the truncation
    times = [t + 1.0 if t.is_integer() else t for t in (s[2] for s in stamps) if t is not None]
    if not times:
        return now
    return now - max(0.0, wall - max(times))


@dataclass
class Track:
    """One bundle (or archive) seen in INCOMING: its stamps and where it stands.

    state: ``waiting`` (settling or incomplete), ``queued``, ``running``, ``handled`` (a result
    for these stamps is recorded), ``reported`` (an incomplete row is recorded)."""

    stamps: tuple[Stamp, ...]
    quiet_since: float
    state: str = "waiting"
    retry_at: float = 0.0  # a failed one waits until then


def _is_archive_url(source: str) -> bool:
    return is_archive(source.rstrip("/").rsplit("/", 1)[-1])


class Incoming:
    """What a watcher has seen under ``paths``: the tracks, and the queue of ready bundles.

    ``emit(kind, **fields)`` says what happens (``incomplete``, ``ready``, ``finding``);
    ``report(entry)`` records a row that needs no conversion (an incomplete upload, an archive's
    refusals); ``drop(key)`` forgets an archive's own rejected row once it reads cleanly."""

    def __init__(
        self,
        paths: Sequence[str],
        opts: Mapping[str, Any],
        watch: WatchOptions,
        run_id: str,
        emit: EventFn,
        report: Callable[[CatalogEntry], None],
        drop: Callable[[Key], None],
    ) -> None:
        self.paths = list(paths)
        self.opts = dict(opts)
        self.watch = watch
        self.run_id = run_id
        self.emit, self.report, self.drop = emit, report, drop
        self.tracks: dict[Key, Track] = {}
        self.bundles: dict[Key, BundleRef] = {}
        self.ready: deque[Key] = deque()
        self.announced: dict[Key, str] = {}  # what was last said about an incomplete one
        # what was recorded for which stamps: survives a bundle missing from one listing (an
        # object store's hiccup), so that it is not hashed again when it reappears unchanged
        self.recorded: dict[Key, tuple[tuple[Stamp, ...], str]] = {}
        self.told: set[tuple[str, str]] = set()  # loose findings already reported
        self.loose_errors: list[Finding] = []  # those findings (a missing input...)
        self.archives: Mapping[str, ArchiveIndex] = {}  # indexes of the last poll, by URL
        self.opened = 0  # archive indexes read by the last poll

    @property
    def waiting(self) -> int:
        return sum(t.state == "waiting" for t in self.tracks.values())

    def observe(self, key: Key, stamps: tuple[Stamp, ...], now: float, wall: float) -> Track:
        track = self.tracks.get(key)
        if track is not None and track.stamps == stamps:
            return track
        if track is not None and track.state == "queued":
            self.ready.remove(key)
        track = Track(stamps, quiet_since(stamps, now, wall))
        before = self.recorded.get(key)
        if before is not None and before[0] == stamps:
            track.state = before[1]
        self.tracks[key] = track
        return track

    def mark(self, key: Key, track: Track, state: str) -> None:
        """``track`` has its result (``handled``) or report (``reported``) recorded."""
        track.state = state
        self.recorded[key] = (track.stamps, state)

    def unqueue(self) -> int:
        """Put every queued bundle back to waiting (no new work is taken); return how many."""
        for key in self.ready:
            self.tracks[key].state = "waiting"
        dropped = len(self.ready)
        self.ready.clear()
        return dropped

    def _stamps(self, urls: set[str], listing: Listing) -> tuple[Stamp, ...] | None:
        try:
            return tuple(
                sorted(
                    (u, *listing.stamps[u]) if u in listing.stamps else stamp_of(u, self.opts)
                    for u in urls
                )
            )
        except (OSError, ValueError):
            return None  # gone between listing and look: the next poll decides

    def poll(self, now: float, wall: float, running: Container[Key]) -> None:
        """List INCOMING once and judge what changed; ``running``: keys in flight."""
        listing = Listing(known=self.archives)
        found = discover(self.paths, self.opts, listing)
        self.archives, self.opened = listing.archives, listing.opened
        seen: set[Key] = set()
        clean_archives: set[str] = set()
        for bundle in found.bundles:
            stamps = self._stamps({ref.url for ref in bundle.files.values()}, listing)
            if stamps is None:
                continue
            key: Key = (bundle.source, bundle.prefix)
            seen.add(key)
            self.bundles[key] = bundle
            clean_archives |= {ref.url for ref in bundle.files.values() if ref.member is not None}
            self.judge_bundle(key, bundle, self.observe(key, stamps, now, wall), now)
        for source, findings in self.archive_findings(found).items():
            stamps = self._stamps({source}, listing)
            if stamps is None:
                continue
            akey: Key = (source, None)
            seen.add(akey)
            clean_archives.discard(source)
            self.judge_archive(akey, findings, self.observe(akey, stamps, now, wall), now)
        for url in clean_archives:
            self.drop((url, None))
        for key in [k for k in self.tracks if k not in seen and k not in running]:
            if self.tracks.pop(key).state == "queued":
                self.ready.remove(key)
            self.bundles.pop(key, None)
            self.announced.pop(key, None)

    def archive_findings(self, found: Discovery) -> dict[str, list[Finding]]:
        """Error findings by the archive they belong to; other loose findings (a missing input,
        an unlistable folder) are said once each."""
        by_archive: dict[str, list[Finding]] = {}
        for f in found.findings:
            if f.severity is not Severity.ERROR:
                continue
            source = f.file.split("!", 1)[0]
            if _is_archive_url(source):
                by_archive.setdefault(source, []).append(f)
            elif (f.code, f.file) not in self.told:
                self.told.add((f.code, f.file))
                self.loose_errors.append(f)
                self.emit("finding", code=f.code, source=f.file, message=f.message)
        return by_archive

    def judge_bundle(self, key: Key, bundle: BundleRef, track: Track, now: float) -> None:
        if track.state != "waiting":
            return
        quiet = now - track.quiet_since
        in_archive = any(ref.member is not None for ref in bundle.files.values())
        if bundle.missing and not in_archive:
            missing = ", ".join(bundle.missing)
            if self.announced.get(key) != missing:
                self.announced[key] = missing
                self.emit(
                    "incomplete",
                    session=session_name(bundle.prefix),
                    source=bundle.source,
                    prefix=bundle.prefix,
                    missing=list(bundle.missing),
                )
            if quiet >= self.watch.incomplete_timeout:
                self.mark(key, track, "reported")
                self.report(self.incomplete_entry(bundle))
            return
        if quiet >= self.watch.settle and now >= track.retry_at:
            track.state = "queued"
            self.ready.append(key)
            self.emit(
                "ready",
                session=session_name(bundle.prefix),
                source=bundle.source,
                prefix=bundle.prefix,
            )

    def judge_archive(self, key: Key, findings: list[Finding], track: Track, now: float) -> None:
        """An archive that cannot be read yet waits like an incomplete bundle; one that reads
        but refuses members gets its rows (as in a batch) once it has settled."""
        if track.state != "waiting":
            return
        quiet = now - track.quiet_since
        unreadable = any(f.code == "ARCHIVE_UNREADABLE" for f in findings)
        if unreadable and self.announced.get(key) != "unreadable":
            self.announced[key] = "unreadable"
            self.emit(
                "incomplete", session=None, source=key[0], prefix=None, reason=findings[0].message
            )
        if quiet >= (self.watch.incomplete_timeout if unreadable else self.watch.settle):
            self.mark(key, track, "reported")
            for entry in archive_entries(findings, self.run_id):
                self.report(replace(entry, converted_at=dt.datetime.now(dt.UTC)))

    def incomplete_entry(self, bundle: BundleRef) -> CatalogEntry:
        findings = tuple(
            finding(
                "BUNDLE_MISSING_FILE",
                f"{bundle.prefix}_{role}",
                f"{role} of bundle {bundle.prefix!r} is missing in {bundle.source} and the "
                "upload stopped changing (incomplete timeout); upload the missing file "
                "(the bundle is then converted) or remove the bundle",
            )
            for role in bundle.missing
        )
        return CatalogEntry.rejected(
            bundle.source,
            bundle.prefix,
            findings,
            session=session_name(bundle.prefix),
            converted_at=dt.datetime.now(dt.UTC),
            run_id=self.run_id,
        )
