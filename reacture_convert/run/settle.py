"""When an upload is complete: the stamps that say a file changed, and how long it has not.

A file's *stamp* is its URL, size, modification time and ETag (object stores). A bundle's or
an archive's stamps must stay the same for a settle time before the watcher acts on it; the
time counts from the newest modification time the store reports (the upload's own clock), so a
restarted watcher acts on old uploads at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

__all__ = ["Stamp", "Track", "mtime_of", "quiet_since", "stamp_of"]

Stamp = tuple[str, int, float | None, str | None]  # url, size, mtime, etag


def mtime_of(info: Mapping[str, Any]) -> float | None:
    """A listing entry's modification time as epoch seconds: ``mtime`` (local), ``LastModified``
    (S3), ``last_modified``/``updated`` (other stores); None when it has none."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        value = info.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return None


def stamp_of(url: str, opts: Mapping[str, Any]) -> Stamp:
    """What says a file changed: size, modification time, ETag (object stores)."""
    fs, path = url_to_fs(url, **dict(opts))
    info = fs.info(path)
    etag = info.get("ETag") or info.get("etag")
    return (url, int(info.get("size") or 0), mtime_of(info), str(etag) if etag else None)


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
