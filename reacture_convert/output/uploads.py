"""Writes to an object store that overlap: objects put in the background, bounded in memory.

On an asynchronous fsspec filesystem (s3fs, gcsfs...) a write does not wait for the store: its
request starts on fsspec's I/O loop and the writer goes on (encoding the next chunk, reading the
next frames). What is in flight is bounded, process-wide, by ``UPLOAD_BYTES`` of bodies and
``UPLOAD_REQUESTS`` requests; a writer past either waits for a slot. A file written forward (a
shard tar, a Parquet file: ``Upload``) goes to S3 as a multipart upload of ``PART_BYTES`` parts,
each sent as soon as it is full, so it needs at most a part (plus those in flight) of memory
and its last part and completion are all that is left when it is closed. Small files are one PUT.

A write's failure is raised by the next write of the same writer (``check``) or, at the
latest, by ``settle``: ``Output`` settles a path before it reads, moves or commits it (a staged
session before its task returns), so nothing is taken as written before it is. ``quiesce`` waits
without raising (before a staging folder is deleted). Synchronous filesystems are written
in the caller's thread, as before.

Tuning: ``REACTURE_UPLOAD_MB`` (bytes in flight, default 64 MiB) and
``REACTURE_UPLOAD_REQUESTS`` (requests in flight, default 32), read once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

import fsspec

__all__ = [
    "PART_BYTES",
    "UPLOAD_BYTES",
    "UPLOAD_REQUESTS",
    "Upload",
    "check",
    "copy_files",
    "put",
    "quiesce",
    "settle",
]


def _setting(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


UPLOAD_BYTES = _setting("REACTURE_UPLOAD_MB", 64) << 20
UPLOAD_REQUESTS = _setting("REACTURE_UPLOAD_REQUESTS", 32)
PART_BYTES = 8 << 20  # a multipart upload's parts (S3: at least 5 MiB but the last)


class _Budget:
    """Bytes and requests in flight, process-wide: ``take`` waits for room (one request of
    any size gets through alone), ``give`` returns it."""

    def __init__(self, nbytes: int, requests: int) -> None:
        self.limit, self.max_requests = nbytes, requests
        self.bytes = self.requests = 0
        self.cond = threading.Condition()

    def take(self, n: int) -> None:
        with self.cond:
            while self.requests and (
                self.requests >= self.max_requests or self.bytes + n > self.limit
            ):
                self.cond.wait()
            self.bytes += n
            self.requests += 1

    def give(self, n: int) -> None:
        with self.cond:
            self.bytes -= n
            self.requests -= 1
            self.cond.notify_all()


_BUDGET = _Budget(UPLOAD_BYTES, UPLOAD_REQUESTS)
_LOCK = threading.Lock()
_PENDING: dict[int, tuple[str, Future[Any]]] = {}  # in flight, or failed and not yet raised
_IDS = itertools.count()


def _forked() -> None:
    """A forked child has none of its parent's requests (nor their budget)."""
    global _BUDGET, _LOCK
    _BUDGET, _LOCK = _Budget(UPLOAD_BYTES, UPLOAD_REQUESTS), threading.Lock()
    _PENDING.clear()


os.register_at_fork(after_in_child=_forked)


def is_async(fs: fsspec.AbstractFileSystem) -> bool:
    return bool(getattr(fs, "async_impl", False)) and hasattr(fs, "_pipe_file")


def _start(
    fs: fsspec.AbstractFileSystem,
    path: str,
    nbytes: int,
    make: Callable[[], Coroutine[Any, Any, Any]],
) -> Future[Any]:
    """Run the coroutine ``make()`` writing ``path`` on ``fs``'s loop, within the budget."""
    _BUDGET.take(nbytes)
    try:
        future = asyncio.run_coroutine_threadsafe(make(), fs.loop)
    except BaseException:
        _BUDGET.give(nbytes)
        raise
    key = next(_IDS)
    with _LOCK:
        _PENDING[key] = (path, future)

    def done(f: Future[Any]) -> None:
        _BUDGET.give(nbytes)
        if f.cancelled() or f.exception() is None:
            with _LOCK:
                _PENDING.pop(key, None)

    future.add_done_callback(done)
    return future


def _under(path: str, prefix: str, stem: bool = False) -> bool:
    """``path`` is ``prefix`` or in the folder ``prefix``; with ``stem``, starts with it."""
    if stem:
        return path.startswith(prefix)
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def _raise(path: str, error: BaseException) -> None:
    if isinstance(error, OSError) and error.filename is None:
        error.filename = path
    raise error


def check(prefix: str, stem: bool = False) -> None:
    """Raise the error of a finished write under ``prefix`` that failed, if any (it stays
    recorded: every later ``check`` or ``settle`` of it raises it too, until ``quiesce``)."""
    with _LOCK:
        failed = [
            (p, f)
            for p, f in _PENDING.values()
            if f.done() and not f.cancelled() and f.exception() is not None
            if _under(p, prefix, stem)
        ]
    if failed:
        path, future = failed[0]
        error = future.exception()
        assert error is not None
        _raise(path, error)


def _wait(prefix: str, raising: bool, stem: bool = False) -> None:
    with _LOCK:
        mine = [(k, p, f) for k, (p, f) in _PENDING.items() if _under(p, prefix, stem)]
    first: tuple[str, BaseException] | None = None
    for key, path, future in mine:
        try:
            future.result()
        except BaseException as e:  # noqa: BLE001 - raised below (the first one)
            first = first or (path, e)
            if raising:
                continue  # (recorded until quiesced)
        with _LOCK:
            _PENDING.pop(key, None)
    if first is not None and raising:
        _raise(*first)


def settle(prefix: str, stem: bool = False) -> None:
    """Wait for every write under ``prefix`` (a file or a folder; with ``stem``, every path
    that starts with it); raise the first that failed."""
    _wait(prefix, True, stem)


def quiesce(prefix: str) -> None:
    """Wait for every write under ``prefix``, whatever became of them."""
    _wait(prefix, False)


def put(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Start writing the object ``path`` (one PUT; multipart when very large)."""
    if not is_async(fs):
        fs.pipe_file(path, data)
        return
    pipe: Callable[..., Coroutine[Any, Any, Any]] = fs._pipe_file
    _start(fs, path, len(data), lambda: pipe(path, data))


def copy_files(fs: fsspec.AbstractFileSystem, pairs: list[tuple[str, str]]) -> None:
    """Copy each ``(src, dst)`` object on the store (server-side), many at once; return when
    all are copied (raising the first failure)."""
    if not is_async(fs):
        for src, dst in pairs:
            fs.copy(src, dst)
        return
    basic: Callable[..., Coroutine[Any, Any, Any]] = getattr(fs, "_copy_basic", fs._cp_file)
    managed: Callable[..., Coroutine[Any, Any, Any]] = fs._cp_file

    def copying(src: str, dst: str) -> Callable[[], Coroutine[Any, Any, Any]]:
        async def copy() -> None:
            try:  # one CopyObject (up to 5 GB): far cheaper than a multipart copy
                await basic(src, dst)
            except (PermissionError, FileNotFoundError):
                raise
            except OSError:  # (too large for one: copied in parts)
                await managed(src, dst)
            fs.invalidate_cache(dst)

        return copy

    futures = [(dst, _start(fs, dst, 0, copying(src, dst))) for src, dst in pairs]
    for dst, _ in futures:
        settle(dst)


class Upload:
    """A new object at ``path`` on S3, written forward (a writable file object): a multipart
    upload whose parts are sent as they fill, or one PUT when it is small. ``close`` starts the
    last request and returns (``settle`` waits for it); ``abort`` drops it all."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path
        self.bucket, self.key, _ = fs.split_path(path)
        self._buf = bytearray()
        self._count = 0
        self._mpu: str | None = None
        self._parts: list[Future[Any]] = []
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        check(self.path)
        self._buf += view
        self._count += len(view)
        if len(self._buf) >= PART_BYTES:
            self._send_part()
        return len(view)

    def _send_part(self) -> None:
        if self._mpu is None:
            started = self.fs.call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key)
            self._mpu = str(started["UploadId"])
        body = bytes(self._buf)
        self._buf = bytearray()
        number = len(self._parts) + 1
        call = self.fs._call_s3
        args = {"Bucket": self.bucket, "Key": self.key, "UploadId": self._mpu}

        async def part() -> dict[str, Any]:
            out = await call("upload_part", PartNumber=number, Body=body, **args)
            return {"PartNumber": number, "ETag": out["ETag"]}

        self._parts.append(_start(self.fs, self.path, len(body), part))

    def tell(self) -> int:
        return self._count

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._mpu is None:
            put(self.fs, self.path, bytes(self._buf))
            self._buf = bytearray()
            return
        if self._buf:
            self._send_part()
        parts, call, fs, path = list(self._parts), self.fs._call_s3, self.fs, self.path
        args = {"Bucket": self.bucket, "Key": self.key, "UploadId": self._mpu}

        async def complete() -> None:
            try:
                done = await asyncio.gather(*(asyncio.wrap_future(p) for p in parts))
            except BaseException:
                with contextlib.suppress(Exception):  # (the part's failure is the one to say)
                    await call("abort_multipart_upload", **args)
                raise
            await call("complete_multipart_upload", MultipartUpload={"Parts": done}, **args)
            fs.invalidate_cache(path)

        _start(self.fs, self.path, 0, complete)

    def abort(self) -> None:
        """Send nothing more; drop the parts sent (the object never appears)."""
        if self.closed:
            return
        self.closed = True
        self._buf = bytearray()
        if self._mpu is not None:
            quiesce(self.path)
            self.fs.call_s3(
                "abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self._mpu
            )
