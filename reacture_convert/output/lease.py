"""One writer per OUT on S3: conditional writes, and a lease built on them.

S3 has no rename and no lock, but it has conditional writes: ``PutObject`` with
``If-None-Match: *`` creates an object only if the key is free, with ``If-Match: <ETag>`` replaces
it only if it is still the version the writer saw (``DeleteObject`` takes ``If-Match`` too). They
give:

- ``Lease``: ``OUT/.lock`` created only if absent, renewed (``If-Match``) every third of its
  time to live by a thread and, when overdue, before each write; taken over only once expired
  (``If-Match`` on the expired version, so two takers cannot both win), the age measured on the
  store's clock (its ``Date`` header against the lock's ``LastModified``), never ours. A second
  run or watcher on the same OUT gets ``LockedError`` (exit 3) or waits with ``wait``.
- ``put_object``: create-only (``create``) or replace-if-unchanged (``etag``) writes, which the
  catalog uses for its log fragments and its compacted file: a run that lost its lease (paused
  longer than the lease, meanwhile taken over) fails on its next write instead of overwriting.

Other object stores (GCS, ``memory://``) get no lease: one writer at a time is up to the user.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO

from reacture_convert.errors import ConfigError, LockedError, OutputError
from reacture_convert.output.layout import LOCK

__all__ = [
    "LEASE_ENV",
    "LEASE_SECONDS",
    "LOCK",
    "Lease",
    "PreconditionFailed",
    "is_s3",
    "lease_seconds",
    "put_object",
]

LEASE_SECONDS = 60.0  # a lease not renewed for this long may be taken over
LEASE_ENV = "REACTURE_LEASE_SECONDS"  # overrides it: how long a killed writer blocks OUT


def lease_seconds() -> float:
    """The lease's time to live: ``$REACTURE_LEASE_SECONDS``, else ``LEASE_SECONDS``."""
    text = os.environ.get(LEASE_ENV)
    try:
        value = float(text) if text else LEASE_SECONDS
    except ValueError:
        raise ConfigError(f"{LEASE_ENV}={text!r}: give a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{LEASE_ENV}={text!r}: give a number of seconds above 0")
    return value


class PreconditionFailed(OutputError):
    """A conditional write found another version than the one it expected."""


def is_s3(out: Any) -> bool:
    """``out`` (an ``Output``) is on S3 (or an S3-compatible store) through s3fs. (Until
    something made an s3fs filesystem, s3fs is not imported: a local run never imports it.)"""
    s3fs = sys.modules.get("s3fs")
    return s3fs is not None and isinstance(out.fs, s3fs.S3FileSystem)


def _failed_condition(e: BaseException) -> bool:
    if isinstance(e, FileExistsError):  # s3fs's name for a failed If-None-Match
        return True
    response = getattr(e.__cause__, "response", None) or {}
    return response.get("Error", {}).get("Code") in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


def _split(out: Any, rel: str) -> tuple[str, str]:
    bucket, key, _ = out.fs.split_path(out.path(rel))
    return bucket, key


def put_object(
    out: Any,
    rel: str,
    data: bytes | BinaryIO,
    *,
    create: bool = False,
    etag: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """PUT ``data`` (bytes or a file) at ``rel`` under OUT on S3; return the new ETag.
    ``create``: only if the key is free; ``etag``: only if the object is still that version.
    Raises ``PreconditionFailed`` when the condition does not hold."""
    bucket, key = _split(out, rel)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": data}
    if create:
        kwargs["IfNoneMatch"] = "*"
    if etag is not None:
        kwargs["IfMatch"] = etag
    if metadata:
        kwargs["Metadata"] = metadata
    try:
        response = out.fs.call_s3("put_object", **kwargs)
    except OSError as e:
        if _failed_condition(e) or (etag is not None and isinstance(e, FileNotFoundError)):
            raise PreconditionFailed(f"{out.url_of(rel)}: {e}") from e
        raise
    finally:
        out.fs.invalidate_cache(out.path(rel))
    return str(response["ETag"])


@dataclass(frozen=True)
class _Seen:
    """The lock object as the store showed it."""

    etag: str
    owner: str
    ttl: float
    age: float  # seconds since its last write, by the store's clock


def _head(out: Any) -> _Seen | None:
    bucket, key = _split(out, LOCK)
    try:
        r = out.fs.call_s3("head_object", Bucket=bucket, Key=key)
    except FileNotFoundError:
        return None
    meta = {k.lower(): v for k, v in (r.get("Metadata") or {}).items()}
    now = email.utils.parsedate_to_datetime(r["ResponseMetadata"]["HTTPHeaders"]["date"])
    modified: dt.datetime = r["LastModified"]
    return _Seen(
        etag=str(r["ETag"]),
        owner=meta.get("owner", "?"),
        ttl=float(meta.get("ttl", LEASE_SECONDS)),
        # LastModified is truncated to the second: count it as late as it could have been
        age=max(0.0, (now - modified).total_seconds() - 1.0),
    )


class Lease:
    """The writer's lease on an S3 ``OUT`` (see the module doc): ``acquire``, ``check`` before
    writes, ``release``."""

    def __init__(self, out: Any, ttl: float | None = None) -> None:
        self.out = out
        self.ttl = ttl if ttl is not None else lease_seconds()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.etag: str | None = None
        self.renewed = 0.0  # monotonic time of the last successful write of the lock
        self.lost: str | None = None  # why the lease is no longer ours
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, *, create: bool = False, etag: str | None = None) -> None:
        body = json.dumps(
            {
                "owner": self.owner,
                "ttl": self.ttl,
                "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        ).encode()
        started = time.monotonic()
        self.etag = put_object(
            self.out,
            LOCK,
            body,
            create=create,
            etag=etag,
            metadata={"owner": self.owner, "ttl": repr(self.ttl)},
        )
        self.renewed = started

    def acquire(self, wait: bool = False) -> None:
        """Take the lease, or raise ``LockedError`` while another writer holds it (``wait``:
        poll until it is released or expires)."""
        while True:
            try:
                self._write(create=True)
                break
            except PreconditionFailed:
                pass
            seen = _head(self.out)
            if seen is not None and seen.age > seen.ttl:
                try:  # expired: take it over, unless someone else just did
                    self._write(etag=seen.etag)
                    break
                except PreconditionFailed:
                    continue
            if seen is None:
                continue  # released meanwhile
            if not wait:
                raise LockedError(
                    f"{self.out.url}: another reacture-convert run is writing to this output "
                    f"({seen.owner}, lease renewed {seen.age:.0f} s ago, expires after "
                    f"{seen.ttl:.0f} s without renewal); wait for it to finish or pass --wait "
                    "to queue behind it"
                )
            time.sleep(min(2.0, max(0.2, seen.ttl / 4)))
        self._thread = threading.Thread(target=self._renew_loop, name="reacture-lease", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        """Write the lock again (``If-Match`` our version); a failure means it was taken."""
        with self._lock:
            if self.lost is not None:
                raise LockedError(self.lost)
            try:
                self._write(etag=self.etag)
            except PreconditionFailed:
                self.lost = (
                    f"{self.out.url}: this run's lease on the output expired and another run "
                    "took it over; this run stops writing (run it again when the other is done)"
                )
                raise LockedError(self.lost) from None

    def check(self) -> None:
        """Before a write: raise ``LockedError`` if the lease is lost; renew it now if it is
        due (so a run that was paused cannot write on an expired lease unknowingly)."""
        if self.lost is not None:
            raise LockedError(self.lost)
        if time.monotonic() - self.renewed > self.ttl / 2:  # the thread renews every third
            self.renew()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LockedError:
                return
            except OSError:
                continue  # a hiccup: tried again; check() refuses writes once overdue

    def release(self) -> None:
        """Stop renewing and delete the lock (only our version of it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is not None or self.etag is None:
            return
        bucket, key = _split(self.out, LOCK)
        try:
            self.out.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
        except OSError:
            pass  # taken over meanwhile, or gone: either way no longer ours
        finally:
            self.out.fs.invalidate_cache(self.out.path(LOCK))
