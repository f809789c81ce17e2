"""Where a converted dataset lives, and how a session becomes visible there only when complete.

``OUT`` is a local folder or any fsspec URL. Every session is written under
``OUT/.staging/<run>/<session>/`` first and then *committed*:

- local filesystem: the task that wrote the session fsyncs every staged file and folder
  (``sync_staged``, in the worker, so sessions are made durable in parallel); the driver then
  moves each output into place with ``rename`` (atomic), replacing an older copy via a trash
  folder, and fsyncs the parent folders;
- object stores (no rename): objects are written in the background, many at once within a
  bounded budget (``uploads``), and settled (waited for, failures raised) by the task before it
  returns (``sync_staged``); each is then copied to its final key server-side, many at once, a
  Zarr group's root ``zarr.json`` last (a reader sees no group until it exists); single-object
  Parquet files appear atomically;
- S3 with ``stage_dir`` (a local folder: the sessions run on this machine, see
  ``writers.webdataset.scratch``): staged there as on a local disk, without fsyncs, and the
  commit uploads each file to its final key (the root ``zarr.json`` last), once.

The catalog row is written after the commit, so a session that is in the catalog is complete;
outputs without a catalog row are leftovers that the next run replaces. ``lock_output`` keeps two
runs off one OUT: ``flock`` locally, a lease made of conditional writes on S3 (``lease``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import glob
import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from reacture_convert.errors import (
    AccessDeniedError,
    DiskFullError,
    LockedError,
    OutputError,
    StorageError,
    error_chain,
    storage_error,
    storage_errors,
)
from reacture_convert.output import fork as _fork  # noqa: F401  (registers its at-fork hook)
from reacture_convert.output import uploads
from reacture_convert.output.digests import HashingWriter, hash_local
from reacture_convert.output.fetch import ReadAhead
from reacture_convert.output.layout import LOCKED_WRITES, STAGING, TRASH, staged_session_tar
from reacture_convert.output.lease import LOCK, Lease, is_s3, put_object
from reacture_convert.phases import reached

__all__ = [
    "Output",
    "LOCK",
    "STAGING",
    "TRASH",
    "Held",
    "Keys",
    "NewFile",
    "fsync_dir",
    "fsync_path",
    "lock_holder",
    "lock_output",
]

_FSYNC_THREADS = 8  # fsyncs at once (sync_staged)
# Object-store requests that write: a session task only ever writes OUT (inputs are only read)
_WRITES = frozenset(
    {
        "PutObject",
        "UploadPart",
        "UploadPartCopy",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
        "CopyObject",
        "DeleteObject",
        "DeleteObjects",
    }
)
_QUOTED_PATH = re.compile(r"'(/[^']+)'")  # pyarrow names the file it failed on in its message
_IOV_MAX = 1024  # pieces per writev (Linux's IOV_MAX)


@dataclass(frozen=True)
class Output:
    """An output dataset location: ``url`` as the user gave it, plus fsspec storage options."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    # a local folder that holds this OUT's staging (S3 only; sessions converted on this
    # machine): sessions are written there and uploaded to their final keys by the commit
    stage_dir: str | None = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._resolve()[0]

    @functools.cached_property
    def root(self) -> str:
        """The path of OUT within ``fs`` (decided once, as ``is_local``; ``fs`` itself is
        resolved on each use: a forked process must not share its parent's client)."""
        return self._resolve()[1]

    def _resolve(self) -> tuple[fsspec.AbstractFileSystem, str]:
        options = dict(self.storage_options)
        if self.url.split("://", 1)[0] in ("s3", "s3a"):  # room for the uploads in flight
            config = dict(options.get("config_kwargs") or {})
            config.setdefault("max_pool_connections", uploads.UPLOAD_REQUESTS)
            options["config_kwargs"] = config
        fs, root = fsspec.core.url_to_fs(self.url, **options)
        return fs, root.rstrip("/")

    @functools.cached_property
    def is_local(self) -> bool:
        """OUT is on local disk (decided once: a reader asks it for every batch, and resolving
        the URL costs fsspec a lookup of its instances each time)."""
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        """A URL (or plain local path) that zarr, pyarrow and fsspec accept for ``parts``."""
        return self.url_for(self.path(*parts))

    def url_for(self, path: str) -> str:
        """The URL (or plain local path) of ``path``, a path on ``fs``."""
        return path if self.is_local else str(self.fs.unstrip_protocol(path))

    def fault(self, exc: BaseException, writing: str | None = None) -> StorageError | None:
        """``exc``, raised while a run wrote this output, as the ``StorageError`` that stops the
        run when OUT's storage failed: no space left (or quota), a read-only filesystem,
        permission denied on a path under OUT, the object store refusing a write (or its
        credentials, endpoint, bucket failing one). Its message names OUT and the file and
        says what to do; its ``output`` is this OUT's URL. None when ``exc`` is none of these
        (a bundle that cannot be read, say: that bundle's failure, not the run's). ``writing``:
        the file or folder to name when ``exc`` names none (pyarrow's write errors)."""
        if isinstance(exc, StorageError) and exc.output == self.url:
            return exc
        translated = exc if isinstance(exc, StorageError) else storage_error(exc)
        if translated is None:
            return None
        chain = list(error_chain(exc))
        read_only = any(getattr(e, "errno", None) == errno.EROFS for e in chain)
        written = any(getattr(e, "operation_name", None) in _WRITES for e in chain)
        paths = _paths(chain, translated)
        named = [p for p in paths if self._holds(p)]
        anywhere = isinstance(translated, DiskFullError) or read_only  # (never a read's error)
        if not (anywhere or written or named):
            return None
        # (a full disk elsewhere: say which file)
        named = named or (paths if anywhere else []) or ([writing] if writing else [])
        where = re.sub(r"\.tmp-[0-9a-f]{32}$", "", named[0]) if named else None
        at = f" (writing {where})" if where and where.rstrip("/") != self.root else ""
        again = "then run the same command again: it resumes where this run stopped"
        if isinstance(translated, DiskFullError):
            free = "free some space there (or give another --out)"
            if self.stage_dir is not None and where and where.startswith(self.stage_dir):
                free = "free some space there (or point TMPDIR at a bigger disk)"
            text = f"no space left on the device{at}; {free}, {again}"
        elif isinstance(translated, AccessDeniedError):
            what = "read-only filesystem" if read_only else "permission denied"
            fix = (
                "fix its permissions (or mount)"
                if self.is_local
                else "fix the credentials' access to the bucket"
            )
            text = f"{what}{at}; make it writable ({fix}), {again}"
        else:  # the object store's credentials, endpoint or bucket
            said = str(translated)
            if translated.path and said.startswith(f"{translated.path}: "):
                said = said[len(translated.path) + 2 :]
            text = f"{said}{at}; {again}"
        fault = type(translated)(f"{self.url}: {text}", path=where or self.url)
        fault.output = self.url
        if isinstance(exc, OSError):
            fault.errno = exc.errno
        return fault

    def _holds(self, path: str) -> bool:
        """``path`` (a local path, a path on ``fs`` or a URL) is OUT or under it."""
        root = self.root
        if self.is_local:
            p = os.path.abspath(path)
            return any(p == r or p.startswith(r + "/") for r in {root, os.path.realpath(root)})
        p = path.split("://", 1)[-1]
        return p == root or p.startswith(root + "/")

    # --- files: ``path`` arguments are paths on ``fs`` (``path(...)``) -----------------------

    def open_read(self, path: str, size: int | None = None) -> IO[bytes]:
        """``path`` opened for reading (locally a plain file: page cache, no fsspec layer).
        ``size`` (its bytes, when known): it is read forward, and from an object store with
        several large requests in flight (``fetch.ReadAhead``)."""
        if self.is_local:
            return open(path, "rb")
        uploads.settle(path)
        if size is None:
            opened: IO[bytes] = self.fs.open(path, "rb")
            return opened
        return io.BufferedReader(ReadAhead(self.fs, path, size), 1 << 20)

    def read_bytes(self, path: str) -> bytes:
        """The whole file ``path`` (``FileNotFoundError`` when it is not there): from S3 one
        GET (s3fs's ``open`` and ``cat_file`` ask for the size first, a HEAD: one round trip
        more, and two when there is no such object)."""
        return self.read_versioned(path)[0]

    def read_versioned(self, path: str) -> tuple[bytes, str | None]:
        """``path``'s bytes and its version (ETag, as ``version``; None locally), on S3 from
        the one GET that read them."""
        if self.is_local:
            with open(path, "rb") as f:
                return f.read(), None
        uploads.settle(path)
        if is_s3(self):
            got: tuple[bytes, str | None] = _on_loop(self.fs, _s3_get, path)
            return got
        etag = self.version(path)
        with self.fs.open(path, "rb") as f:
            data: bytes = f.read()
        return data, etag

    def is_object(self, path: str) -> bool:
        """``path`` is a file (on S3 one HEAD; s3fs's ``isfile`` lists its folder too when
        there is no such object)."""
        if self.is_local:
            return os.path.isfile(path)
        if is_s3(self):
            return bool(_on_loop(self.fs, _s3_head, path))
        return bool(self.fs.isfile(path))

    def create(self, path: str) -> NewFile:
        """A new file at ``path``, written forward in pieces (see ``NewFile``)."""
        return NewFile(path, None if self.is_local else self._writer(path))

    def _writer(self, path: str) -> IO[bytes]:
        """A new object at ``path`` written forward: on S3 a background multipart upload
        (``uploads.Upload``), elsewhere fsspec's file."""
        if is_s3(self):
            return uploads.Upload(self.fs, path)  # type: ignore[return-value]
        opened: IO[bytes] = self.fs.open(path, "wb")
        return opened

    def parquet_sink(self, path: str) -> tuple[IO[bytes] | None, str | IO[bytes]]:
        """Where a Parquet writer writes ``path``: ``(file to close after, destination)``;
        locally the path itself (pyarrow writes it from C++), elsewhere an open file that
        hashes what goes through it (``written_digest``)."""
        if self.is_local:
            return None, path
        f: Any = HashingWriter(self._writer(path))
        return f, f

    def written_digest(self, path: str, file: IO[bytes] | None) -> tuple[int, str]:
        """(bytes, sha256) of the file a ``parquet_sink`` of ``path`` wrote, once closed:
        hashed on its way out to an object store, else read back from the local disk."""
        if isinstance(file, HashingWriter):
            return file.digest()
        return hash_local(path)

    def makedirs(self, path: str) -> None:
        """Make the folder ``path`` (and its parents). Nothing on S3, which has no folders
        (s3fs would look the bucket up, and create it when it is not there)."""
        if not is_s3(self):
            self.fs.makedirs(path, exist_ok=True)

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (replacing it); on object stores a copy and a delete."""
        self.move_all([(src, dst)])

    def move_all(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Rename each ``(src, dst)``, replacing ``dst``; on object stores the copies go out
        together, then the sources are deleted together."""
        if self.is_local:
            for src, dst in pairs:
                os.replace(src, dst)
            return
        for src, _ in pairs:
            uploads.settle(src)
        uploads.copy_files(self.fs, list(pairs))
        self.remove_files([src for src, _ in pairs])

    def fsync(self, path: str, folder: bool = False) -> None:
        """Make a local file (or a folder's entries) durable; nothing on object stores (an
        object is durable once written)."""
        if self.is_local:
            fsync_path(path, folder)
        else:
            uploads.settle(path)

    def version(self, path: str) -> str | None:
        """The version (ETag) of an object, for a conditional replace; None locally.
        Raises ``FileNotFoundError`` when it is not there (object stores)."""
        if self.is_local:
            return None
        etag = self.fs.info(path).get("ETag")
        return str(etag) if etag else None

    def list_names(self, path: str) -> list[str]:
        """The names in folder ``path`` as they are now (no cached listing); [] when there
        is no such folder."""
        try:
            if self.is_local:
                return os.listdir(path)
            if is_s3(self):  # one listing (s3fs lists the parent too when there is none)
                keys, folders = _on_loop(self.fs, _s3_list, path, True)
                return [p.rsplit("/", 1)[-1] for p in [*folders, *keys]]
            self.fs.invalidate_cache(path)
            return [p.rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def file_sizes(self, folder: str) -> dict[str, int]:
        """The files right in ``folder``, by name, with their sizes; {} when there is no such
        folder. One listing (on S3 without s3fs's HEAD and its parent's listing first)."""
        if self.is_local:
            try:
                with os.scandir(folder) as entries:
                    return {e.name: e.stat().st_size for e in entries if e.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                return {}
        if is_s3(self):
            sizes, _ = _on_loop(self.fs, _s3_listing, folder, True)
            return {p.rsplit("/", 1)[-1]: n for p, n in sizes.items()}
        self.fs.invalidate_cache(folder)
        try:
            found = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return {}
        return {
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: int(e["size"])
            for e in found
            if e["type"] == "file"
        }

    def remove_tree(self, path: str) -> None:
        """Delete the folder ``path`` with everything in it, when there is one (on S3: one
        listing, then one request per thousand objects)."""
        if is_s3(self):
            uploads.quiesce(path)
            keys, _ = _on_loop(self.fs, _s3_list, path, False)
            self._remove_objects(keys)
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def remove_files(self, paths: list[str]) -> None:
        """Delete the files ``paths`` (``OSError`` when one cannot be)."""
        if self.is_local:
            for p in paths:
                os.remove(p)
            return
        if not paths:
            return
        for p in paths:
            uploads.quiesce(p)
        self.fs.rm(paths)
        for folder in sorted({p.rsplit("/", 1)[0] for p in paths}):
            self.fs.invalidate_cache(folder)

    def remove_empty_dir(self, path: str) -> None:
        """Remove folder ``path`` if it is there and empty (S3 has no folders; fsspec's
        in-memory filesystem, for one, has)."""
        if self.is_local:
            with contextlib.suppress(OSError):  # not there, or not empty
                os.rmdir(path)
        elif not is_s3(self) and self.fs.exists(path) and not self.fs.ls(path):
            self.fs.rmdir(path)

    def discard(self, rel: str) -> None:
        """Delete the file or folder ``rel`` (relative to OUT) if it is there: locally it is
        first renamed into ``.trash/`` (it leaves its place at once, whole), then deleted; on
        an object store its objects are deleted."""
        path = self.path(rel)
        if not self.is_local:
            uploads.quiesce(path)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
                self.fs.invalidate_cache(path.rsplit("/", 1)[0])
            return
        if not os.path.lexists(path):
            return
        trash = self.path(TRASH)
        os.makedirs(trash, exist_ok=True)
        old = os.path.join(trash, uuid.uuid4().hex)
        os.rename(path, old)
        fsync_dir(os.path.dirname(path))
        if os.path.isdir(old) and not os.path.islink(old):
            import shutil

            shutil.rmtree(old)
        else:
            os.remove(old)

    def keys(self, path: str) -> Keys:
        """The store of a Zarr group being written at ``path``: objects put by key."""
        return Keys(path, None if self.is_local else self.fs)

    def zarr_store(self, rel: str, read_only: bool = True) -> Any:
        """A zarr-python store of the Zarr group ``rel`` (relative to OUT)."""
        import zarr

        if self.is_local:
            return zarr.storage.LocalStore(self.path(rel), read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.url_of(rel), storage_options=dict(self.storage_options), read_only=read_only
        )

    def staging(self, session: str) -> str:
        return self.path(STAGING, session)

    def staging_output(self) -> Output:
        """Where sessions are staged: OUT itself, or the local ``stage_dir`` (an ``Output`` of
        the same kind: a task's fenced writes stay fenced)."""
        if self.stage_dir is None:
            return self
        return dataclasses.replace(self, url=self.stage_dir, storage_options={}, stage_dir=None)

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def clear_staging(self, session: str | None = None) -> None:
        """Drop leftovers of interrupted runs (call only while holding the lock)."""
        if self.stage_dir is not None:
            self.staging_output().clear_staging(session)
            if session is not None:
                return
        target = self.path(STAGING, session) if session else self.path(STAGING)
        if not self.is_local:
            uploads.quiesce(target)  # (a write still in flight would land after the delete)
        if is_s3(self):  # listings only (s3fs's checks were a HEAD and a listing each)
            if session is not None:
                self.remove_tree(target)
            else:
                names = set(self.list_names(self.root))
                for name in (STAGING, TRASH):
                    if name in names:
                        self.remove_tree(self.path(name))
            return
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        if session is None and self.fs.exists(self.path(TRASH)):
            self.fs.rm(self.path(TRASH), recursive=True)
        if session is None and self.is_local:  # temporaries of a run killed in an atomic write
            for name in LOCKED_WRITES:
                folder, base = os.path.split(self.path(name))
                for tmp in glob.glob(os.path.join(glob.escape(folder), base + ".tmp-*")):
                    os.remove(tmp)

    def sync_staged(self, session: str, parts: list[str]) -> None:
        """Make the staged ``parts`` of ``session`` durable (fsync of every file and folder, on
        a local OUT): done by the task that wrote them, before the driver's ``commit``. Staged
        in ``stage_dir``: nothing (a crash loses them anyway; the next run starts over)."""
        if self.stage_dir is not None:
            return
        if self.is_local:
            staged = self.staging(session)
            _fsync_all([p for part in parts for p in _tree(os.path.join(staged, part))])
        else:  # every object written, or the failure that stops the run
            uploads.settle(self.staging(session))
            run, name = session.rsplit("/", 1) if "/" in session else ("", session)
            tar = self.path(staged_session_tar(run or None, name))
            uploads.settle(tar)
            uploads.settle(tar.removesuffix(".tar") + "-", stem=True)  # its parts

    def commit(self, session: str, parts: list[str]) -> None:
        """Make the staged ``parts`` (paths relative to OUT) of ``session`` visible; they were
        made durable by ``sync_staged``."""
        if self.stage_dir is not None:
            self._upload_staged(session, parts)
            return
        staged = self.staging(session)
        if self.is_local:
            for k, part in enumerate(parts):
                if k == 1:  # one output visible, the others not yet
                    reached("renaming", session.rsplit("/", 1)[-1])
                _replace_local(os.path.join(staged, part), self.path(part), self.path(TRASH))
        elif is_s3(self):
            uploads.settle(staged)
            copied = self._copy_remote([(f"{staged}/{part}", self.path(part)) for part in parts])
            self._remove_objects(copied)  # (the listing just made: no second one)
            return
        else:
            uploads.settle(staged)
            self._copy_remote([(f"{staged}/{part}", self.path(part)) for part in parts])
        self.fs.rm(staged, recursive=True)

    def _upload_staged(self, session: str, parts: list[str]) -> None:
        """``commit`` from ``stage_dir`` (S3 only): what was at each part's destination
        deleted, then every staged file uploaded to its final key, many at once (a large one as
        a multipart upload, a part at a time), a Zarr group's root ``zarr.json`` after
        everything else; the local staging removed."""
        staged = self.staging_output().staging(session)
        pairs = []
        for part in parts:
            src = os.path.join(staged, part)
            files = [src] if os.path.isfile(src) else sorted(_tree_files(src))
            pairs += [(f, self.path(part) + f[len(src) :].replace(os.sep, "/")) for f in files]
        found = _on_loop(self.fs, _s3_objects_of, [self.path(p) for p in parts])
        self._remove_objects([o for objects in found.values() for o in objects])
        roots = {os.path.join(staged, part, "zarr.json") for part in parts}
        for last in (False, True):
            for src, dst in pairs:
                if (src in roots) == last:
                    self.send_file(src, dst)
            for part in parts:
                uploads.settle(self.path(part))
        self.staging_output().clear_staging(session)

    def send_file(self, src: str, dst: str) -> None:
        """Start writing the local file ``src`` to ``dst`` on OUT (settled by ``fsync``/
        ``settle``). On S3 in the background within ``uploads``' budget: one PUT, or a
        multipart upload read a part at a time; elsewhere fsspec's ``put_file``."""
        if not is_s3(self):
            self.fs.put_file(src, dst)
            return
        with open(src, "rb") as f:
            if os.fstat(f.fileno()).st_size <= uploads.PART_BYTES:
                uploads.put(self.fs, dst, f.read())
                return
            upload = uploads.Upload(self.fs, dst)
            try:
                while block := f.read(uploads.PART_BYTES):
                    upload.write(block)
            except BaseException:
                upload.abort()
                raise
            upload.close()

    def _remove_objects(self, paths: list[str]) -> None:
        """Delete the objects ``paths`` (S3: one request a thousand)."""
        if paths:
            self.fs.rm(paths)
            for folder in sorted({p.rsplit("/", 1)[0] for p in paths}):
                self.fs.invalidate_cache(folder)

    def _copy_remote(self, parts: list[tuple[str, str]]) -> list[str]:
        """Copy each staged ``(src, dst)`` part (an object, or a folder of them) over its
        destination, server-side and many objects at once; the root ``zarr.json`` of a group
        is copied after everything else (a reader sees no group before it is complete).
        Returns the staged objects copied."""
        fs = self.fs
        if is_s3(self):  # what is at each source and destination: all listed at once
            found = _on_loop(fs, _s3_objects_of, [p for pair in parts for p in pair])
            old = [o for (_, dst) in parts for o in found[dst]]
            self._remove_objects(old)
            pairs = [
                (f, dst if f == src else dst + f[len(src) :])
                for src, dst in parts
                for f in sorted(found[src]) or [src]
            ]
            self._copy_pairs(pairs, {f"{src}/zarr.json" for src, _ in parts})
            return [f for src, _ in parts for f in found[src]]

        def objects(src: str, dst: str) -> list[tuple[str, str]]:
            if fs.exists(dst):
                fs.rm(dst, recursive=True)
                fs.invalidate_cache(dst.rsplit("/", 1)[0])
            files = sorted(fs.find(src))
            if files == [src] or not files:  # one object
                return [(src, dst)]
            return [(f, dst + f[len(src) :]) for f in files]

        with ThreadPoolExecutor(len(parts) or 1, thread_name_prefix="reacture-commit") as pool:
            pairs = [pair for found in pool.map(lambda p: objects(*p), parts) for pair in found]
        self._copy_pairs(pairs, {f"{src}/zarr.json" for src, _ in parts})
        return [s for s, _ in pairs]

    def _copy_pairs(self, pairs: list[tuple[str, str]], roots: set[str]) -> None:
        """Copy ``pairs`` server-side, those from ``roots`` after all others."""
        fs = self.fs
        first = [(s, d) for s, d in pairs if s not in roots]
        last = [(s, d) for s, d in pairs if s in roots]
        uploads.copy_files(fs, first)
        uploads.copy_files(fs, last)

    def write_bytes_atomic(
        self, rel: str, data: bytes, *, create: bool = False, etag: str | None = None
    ) -> str | None:
        """Write a small file so that readers see the old or the new content, never a part
        (see ``write_atomic``)."""
        return self.write_atomic(rel, lambda f: f.write(data), create=create, etag=etag)

    def write_atomic(
        self,
        rel: str,
        fill: Callable[[BinaryIO], object],
        *,
        create: bool = False,
        etag: str | None = None,
    ) -> str | None:
        """Write the file ``fill(f)`` writes so that readers see the old or the new content,
        never a part, and it survives a crash once this returns (locally: a temporary file,
        fsynced, renamed; on object stores: one PUT). On S3 the write can be conditional:
        ``create`` only if absent, ``etag`` only if still that version
        (``lease.PreconditionFailed`` otherwise); the new ETag is returned there (None
        elsewhere). Locally the lock holder is the only writer, so conditions hold by
        construction."""
        final = self.path(rel)
        if self.is_local:
            folder = os.path.dirname(final)
            if not os.path.isdir(folder):
                os.makedirs(folder, exist_ok=True)
                fsync_dir(os.path.dirname(folder))  # the new folder's own entry is durable too
            tmp = f"{final}.tmp-{uuid.uuid4().hex}"
            try:
                with _naming(final), open(tmp, "wb") as f:
                    fill(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:  # (a full disk, say): no temporary left beside the file
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            fsync_dir(os.path.dirname(final))
            return None
        if is_s3(self):
            with tempfile.TemporaryFile() as spool:
                fill(spool)
                spool.seek(0)
                return put_object(self, rel, spool, create=create, etag=etag)
        with self.fs.open(final, "wb") as f:  # one PUT: atomic on object stores
            fill(f)
        return None


def _on_loop(fs: fsspec.AbstractFileSystem, func: Any, *args: Any) -> Any:
    """Run the coroutine ``func(fs, *args)`` on ``fs``'s I/O loop and return its result."""
    return fsspec.asyn.sync(fs.loop, func, fs, *args)


async def _s3_get(fs: Any, path: str) -> tuple[bytes, str | None]:
    """The object ``path`` and its ETag: one GET, no Range (an empty object reads as b"")."""
    bucket, key, _ = fs.split_path(path)
    if not key:
        raise IsADirectoryError(path)
    reply = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    body = reply["Body"]
    try:
        data: bytes = await body.read()
    finally:
        body.close()
    etag = reply.get("ETag")
    return data, str(etag) if etag else None


async def _s3_head(fs: Any, path: str) -> bool:
    """There is an object ``path`` (one HEAD)."""
    bucket, key, _ = fs.split_path(path)
    if not key:
        return False
    try:
        await fs._call_s3("head_object", Bucket=bucket, Key=key)
    except FileNotFoundError:
        return False
    return True


async def _s3_listing(fs: Any, path: str, delimiter: bool) -> tuple[dict[str, int], list[str]]:
    """The objects under folder ``path`` with their sizes (the folder's own marker left out)
    and, with ``delimiter``, only those right in it plus its subfolders: (objects, folders)."""
    bucket, key, _ = fs.split_path(path)
    prefix = f"{key.rstrip('/')}/" if key else ""
    sizes: dict[str, int] = {}
    folders: list[str] = []
    extra: dict[str, Any] = {"Delimiter": "/"} if delimiter else {}
    while True:
        reply = await fs._call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, **extra)
        for o in reply.get("Contents", []):
            if o["Key"] != prefix:
                sizes[f"{bucket}/{o['Key']}"] = int(o["Size"])
        folders += [f"{bucket}/{p['Prefix'].rstrip('/')}" for p in reply.get("CommonPrefixes", [])]
        if not reply.get("IsTruncated"):
            return sizes, folders
        extra["ContinuationToken"] = reply["NextContinuationToken"]


async def _s3_list(fs: Any, path: str, delimiter: bool) -> tuple[list[str], list[str]]:
    """``_s3_listing`` without the sizes: (objects, folders)."""
    sizes, folders = await _s3_listing(fs, path, delimiter)
    return list(sizes), folders


async def _s3_objects(fs: Any, path: str) -> list[str]:
    """The object ``path``, or the objects under it when it is a folder (a HEAD and a listing
    at once); [] when there is nothing."""
    found, (under, _) = await asyncio.gather(_s3_head(fs, path), _s3_list(fs, path, False))
    return [path] if found else under


async def _s3_objects_of(fs: Any, paths: list[str]) -> dict[str, list[str]]:
    """``_s3_objects`` of each of ``paths``, all at once."""
    found = await asyncio.gather(*(_s3_objects(fs, p) for p in paths))
    return dict(zip(paths, found, strict=True))


class Keys:
    """Objects put by key under ``root``: a local folder (plain file writes) or a path on the
    object store ``fs``. Keys can be put from several threads at once. Each object's size and
    sha256 are taken from the bytes put (``digests``: the last put of a key counts)."""

    def __init__(self, root: str, fs: fsspec.AbstractFileSystem | None) -> None:
        self.root, self.fs = root, fs
        self._digests: dict[str, tuple[int, str]] = {}

    def digests(self) -> dict[str, tuple[int, str]]:
        """Key -> (bytes, sha256) of every object put."""
        return dict(self._digests)

    def put(self, key: str, data: bytes) -> None:
        """Write ``key``; on an object store it is sent in the background (``uploads``: a
        failure is raised by a later put, or when the staged session is settled)."""
        self._digests[key] = (len(data), hashlib.sha256(data).hexdigest())
        path = f"{self.root}/{key}"
        with _naming(path):
            if self.fs is None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            else:
                uploads.check(self.root)
                uploads.put(self.fs, path, data)


class NewFile:
    """A new file written forward in pieces: locally with ``os.writev`` on an unbuffered file
    (the kernel's copy is the only one), elsewhere through ``remote`` (an fsspec file)."""

    def __init__(self, path: str, remote: IO[bytes] | None) -> None:
        self.path = path
        self.remote = remote
        self.file: IO[bytes] = open(path, "wb", buffering=0) if remote is None else remote

    def write_pieces(self, pieces: list[memoryview]) -> None:
        """Write ``pieces`` (non-empty byte views) in order."""
        with _naming(self.path):
            self._write(pieces)

    def _write(self, pieces: list[memoryview]) -> None:
        if self.remote is not None:
            for piece in pieces:
                self.remote.write(piece)
            return
        fd, pieces, i = self.file.fileno(), list(pieces), 0
        while i < len(pieces):  # however the kernel splits the writes
            done = os.writev(fd, pieces[i : i + _IOV_MAX])
            while done:
                if done >= len(pieces[i]):
                    done -= len(pieces[i])
                    i += 1
                else:
                    pieces[i] = pieces[i][done:]
                    done = 0

    def sync(self) -> None:
        """Make a local file durable (an object is, once closed)."""
        if self.remote is None:
            with _naming(self.path):
                os.fsync(self.file.fileno())

    def close(self) -> None:
        with _naming(self.path):
            self.file.close()

    def abort(self) -> None:
        """Give up on the file: closed, and on S3 nothing of it is sent (its parts dropped)."""
        if isinstance(self.remote, uploads.Upload):
            self.remote.abort()
        else:
            self.close()


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """An ``OSError`` that names no file (``writev``, ``fsync``, an object store's upload)
    names ``path``, the file being written."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = path
        raise


def _paths(chain: list[BaseException], translated: StorageError) -> list[str]:
    """The paths an error names: its files, its ``path``, a quoted absolute path in its text."""
    found: list[str] = []
    for e in chain:
        found += [
            str(f) for f in (getattr(e, "filename", None), getattr(e, "filename2", None)) if f
        ]
        found += _QUOTED_PATH.findall(str(e))
    if translated.path:
        found.append(translated.path)
    return list(dict.fromkeys(found))


def fsync_path(path: str, folder: bool = False) -> None:
    """fsync a local file, or a folder (its entries: renames and new names in it)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    fsync_path(path, folder=True)


def _tree_files(root: str) -> Iterator[str]:
    """Every file under the local folder ``root``."""
    for folder, _, names in os.walk(root):
        for name in names:
            yield os.path.join(folder, name)


def _tree(path: str) -> list[tuple[str, bool]]:
    """``(path, is a folder)`` of every file and folder under ``path``, ``path`` itself and the
    folder that holds it."""
    found = [(path, os.path.isdir(path))]
    if found[0][1]:
        for dirpath, folders, files in os.walk(path):
            found += [(os.path.join(dirpath, name), False) for name in files]
            found += [(os.path.join(dirpath, name), True) for name in folders]
    return [*found, (os.path.dirname(path), True)]


def _fsync_all(paths: list[tuple[str, bool]]) -> None:
    """fsync each ``(path, is a folder)``, several at once (a Zarr group is hundreds of
    files and folders: their waits for the disk overlap)."""

    with ThreadPoolExecutor(_FSYNC_THREADS, thread_name_prefix="reacture-fsync") as pool:
        for _ in pool.map(lambda item: fsync_path(*item), dict.fromkeys(paths)):
            pass


def _replace_local(src: str, dst: str, trash: str) -> None:
    parent = os.path.dirname(dst)
    if not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
        fsync_dir(os.path.dirname(parent))  # the new folder's own entry is durable too
    if os.path.isdir(dst) and not os.path.islink(dst):
        os.makedirs(trash, exist_ok=True)
        old = os.path.join(trash, uuid.uuid4().hex)
        os.rename(dst, old)
        os.rename(src, dst)
        fsync_dir(parent)
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
        fsync_dir(parent)


@dataclass(frozen=True)
class Held:
    """What ``lock_output`` yields: ``check()`` before a write raises ``LockedError`` when the
    lock is no longer ours (an S3 lease that expired and was taken over; never locally)."""

    lease: Lease | None = None

    def check(self) -> None:
        if self.lease is not None:
            self.lease.check()


@contextlib.contextmanager
def lock_output(out: Output, wait: bool = False) -> Iterator[Held]:
    """Hold an exclusive lock on OUT for the whole run: ``flock`` on a local OUT, a lease on S3
    (``lease.Lease``), nothing on other object stores.

    Raises ``LockedError`` when another run holds it (unless ``wait``), ``OutputError`` when OUT
    cannot be created or written; a storage failure, there or in the run (no credentials, no
    bucket, permission denied, disk full...), becomes the ``StorageError`` that says so."""
    if not out.is_local:
        if not is_s3(out):
            with storage_errors():
                yield Held()
            return
        lease = Lease(out)
        with storage_errors(out.url):
            lease.acquire(wait)
        try:
            with storage_errors():  # the run's: about its inputs or OUT, whichever failed
                yield Held(lease)
        finally:
            lease.release()
        return
    import fcntl

    path = out.path(LOCK)
    try:
        os.makedirs(out.root, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # a file in the way, no permission, read-only filesystem...
        raise OutputError(
            f"{out.url}: cannot write the output here ({e.strerror or e}); give a folder that "
            "you can write to, or a new path"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise LockedError(
                    f"{out.url}: another reacture-convert run is writing to this output; "
                    "wait for it to finish or pass --wait to queue behind it"
                ) from None
            raise OutputError(f"{path}: cannot lock the output: {e}") from e
        with storage_errors():
            yield Held()
    finally:
        os.close(fd)


def _flock_holder(path: str) -> str | None:
    """``host:pid`` of the process holding the ``flock`` of ``path`` (Linux's /proc/locks),
    or None. The lock file itself stays untouched (a run that changes nothing writes nothing)."""
    import socket

    st = os.stat(path)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if "FLOCK" in fields and where in fields:
                pid = fields[fields.index(where) - 1]
                return f"{socket.gethostname()}:{pid}"
    return None


def lock_holder(out: Output) -> str | None:
    """Who holds OUT's lock, or None when unknown: the process (``host:pid``) on a local disk,
    the lease's owner (``host:pid:token``) and when it was written on S3."""
    try:
        if out.is_local:
            return _flock_holder(out.path(LOCK))
        record = json.loads(out.read_bytes(out.path(LOCK)) or b"{}")
    except (OSError, ValueError):
        return None
    owner = record.get("owner") if isinstance(record, dict) else None
    if not owner:
        return None
    written = record.get("written")
    return f"{owner} (since {written})" if written else str(owner)
