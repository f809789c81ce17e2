"""Find bundles in whatever a user points at: folders, files, archives, globs and fsspec URLs.

``discover`` turns a list of paths into ``BundleRef`` values without reading any file's
content: it lists folders (at any depth), expands globs, opens archive indexes (one level deep,
see ``archives``), and groups files named ``<prefix>_<role>`` by (folder, prefix). Everything
it cannot use becomes a ``Finding`` instead of an exception: a missing input, an unreadable
archive, a refused archive member, a stray file. Local paths and URLs share one code path
(fsspec); a local file keeps its plain absolute path, a URL keeps its protocol, so people
recognise what is reported.

What is never done: following a symbolic link inside a given folder, descending into hidden
folders (``.git``, our own ``.staging``), into an output dataset (a folder holding
``catalog.parquet`` or its log ``.catalog/``) or a Zarr store, opening an archive found inside
an archive, or writing anything to disk.

A watcher polls with a ``Listing``: ``discover`` fills in every file's stamp (size, modification
time, ETag) from the listing it makes anyway, and does not open an archive again whose stamp
is the one it had when it was last opened (its index is reused).
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.archives import (
    Member,
    is_archive,
    list_members,
    normalize_member_name,
)
from reacture_convert.ingest.bundle import ALL_ROLES, BundleRef, FileRef

__all__ = [
    "ArchiveIndex",
    "Discovery",
    "FileStamp",
    "Listing",
    "discover",
    "file_stamp",
    "mtime_of",
    "split_role",
    "OUTPUT_MARKERS",
]

# A folder holding one of these is a converted dataset (docs/output-layout.md): never read as input.
OUTPUT_MARKERS = frozenset({"catalog.parquet", ".catalog"})
# Folders that hold no bundles and may hold junk named like bundle files (macOS zip resource
# forks are ``__MACOSX/._<name>``); hidden names (``.git``, ``._x``) are skipped as well.
_SKIP_DIRS = frozenset({"__MACOSX"})
_ROLES_LONGEST_FIRST = tuple(sorted(ALL_ROLES, key=len, reverse=True))
_MAGIC = re.compile(r"[*?\[]")


FileStamp = tuple[int, float | None, str | None]  # size, modification time, ETag


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


def file_stamp(info: Mapping[str, Any]) -> FileStamp:
    """What says a file changed, from its listing entry: size, modification time, ETag."""
    etag = info.get("ETag") or info.get("etag")
    return (int(info.get("size") or 0), mtime_of(info), str(etag) if etag else None)


@dataclass(frozen=True, slots=True)
class ArchiveIndex:
    """An archive's members and refusals as listed when it had ``stamp``."""

    stamp: FileStamp
    members: tuple[Member, ...]
    findings: tuple[Finding, ...]


@dataclass
class Listing:
    """A watcher's memory across ``discover`` calls. In: ``known`` archive indexes (reused
    while an archive's stamp is unchanged). Out: ``stamps`` of every file listed, and
    ``archives``: the index of every archive seen by this call."""

    known: Mapping[str, ArchiveIndex] = field(default_factory=dict)
    stamps: dict[str, FileStamp] = field(default_factory=dict)
    archives: dict[str, ArchiveIndex] = field(default_factory=dict)
    opened: int = 0  # archives whose index this call read


@dataclass(frozen=True, slots=True)
class Discovery:
    """What ``discover`` found: the bundles, and the findings tied to no single bundle."""

    bundles: tuple[BundleRef, ...]  # sorted by (source, prefix)
    # stray files, unreadable archives, refused members, missing inputs
    findings: tuple[Finding, ...]


def discover(
    paths: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    listing: Listing | None = None,
) -> Discovery:
    """Find every bundle under ``paths`` (folders, files, archives, globs or fsspec URLs).

    Never raises for bad input: what cannot be used is reported in ``Discovery.findings``.
    A group of files missing some roles is still returned (``BundleRef.missing`` says which);
    the same file reached through two overlapping paths is counted once. ``listing``: see
    ``Listing`` (a watcher's polls).
    """
    found = _Collector(dict(storage_options or {}), listing)
    for raw in paths:
        found.add_input(raw)
    return found.result()


def split_role(name: str) -> tuple[str, str] | None:
    """``reacture_1_frames.npy`` -> ``("reacture_1", "frames.npy")``; None if no role matches.

    The longest role suffix wins and the prefix must not be empty.
    """
    for role in _ROLES_LONGEST_FIRST:
        suffix = "_" + role
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], role
    return None


def _skipped_name(name: str) -> bool:
    """Hidden names and folders that never hold input (see ``_SKIP_DIRS``)."""
    return name.startswith(".") or name in _SKIP_DIRS


def _skipped_dir(name: str) -> bool:
    return _skipped_name(name) or name.lower().endswith(".zarr")


def _parent(url: str) -> str:
    """The folder of a path or URL: ``/a/b/c`` -> ``/a/b``, ``s3://b/k`` -> ``s3://b``."""
    head = url[: url.rfind("/")]
    if not head:
        return "/"
    if head.endswith(":/") or head.endswith(":"):  # at a URL's root: keep "proto://"
        return url[: url.rfind("/") + 1]
    return head


def _first_magic(text: str) -> int:
    match = _MAGIC.search(text)
    return -1 if match is None else match.start()


@dataclass(frozen=True, slots=True)
class _Target:
    """One input, resolved: its filesystem, its path there, and how to show paths to people.

    Plain local inputs need no mapping: fsspec lists them as absolute paths. For a URL,
    ``fs_base`` and ``url_base`` name one folder as fsspec lists it and as the user wrote it; a
    path under ``fs_base`` is shown as ``url_base`` + the rest, others (or all, when no common
    folder is known) as fsspec rebuilds them.
    """

    fs: Any
    path: str
    plain: bool  # a local path given without a protocol
    fs_base: str | None = None
    url_base: str = ""

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def url(self, path: str) -> str:
        """How ``path`` (as fsspec lists it) is shown to people and opened again later."""
        base = self.fs_base
        if base is not None and (path == base or path.startswith(base.rstrip("/") + "/")):
            return self.url_base + path[len(base) :]
        if self.plain:
            return path
        return str(self.fs.unstrip_protocol(path))

    def key(self, path: str) -> str:
        """Identity of a file, the same whichever input reached it."""
        if self.local:
            return os.path.realpath(path)
        return str(self.fs.unstrip_protocol(path))


def _resolve(raw: str, opts: Mapping[str, Any]) -> _Target:
    """Turn one user input into a ``_Target``; raises what fsspec raises for a bad URL."""
    is_url = "://" in raw or "::" in raw
    text = raw if is_url else os.path.abspath(os.path.expanduser(raw))
    fs, path = url_to_fs(text, **opts)
    path = str(path)
    if not is_url:
        return _Target(fs, path, plain=True)  # fsspec lists local paths as plain absolute paths
    user = text.rstrip("/") or text
    fs_base = path.rstrip("/") or path
    cut_user, cut_fs = _first_magic(user), _first_magic(fs_base)
    if cut_user >= 0 and cut_fs >= 0:  # a glob: map the folder before its first wildcard
        user = user[: user.rfind("/", 0, cut_user)]
        fs_base = fs_base[: fs_base.rfind("/", 0, cut_fs)]
    if str(fs._strip_protocol(user)).rstrip("/") != fs_base.rstrip("/"):
        return _Target(fs, path, plain=False)  # no common folder: fsspec rebuilds URLs
    return _Target(fs, path, plain=False, fs_base=fs_base, url_base=user)


class _Collector:
    """Mutable state of one ``discover`` call: files seen, groups being built, findings."""

    def __init__(self, opts: dict[str, Any], listing: Listing | None = None) -> None:
        self.opts = opts
        self.listing = listing
        self.seen: set[str] = set()
        self.groups: dict[tuple[str, str], dict[str, FileRef]] = {}
        self.findings: list[Finding] = []

    def result(self) -> Discovery:
        bundles = [
            BundleRef(prefix, source, {r: files[r] for r in ALL_ROLES if r in files})
            for (source, prefix), files in self.groups.items()
        ]
        bundles.sort(key=lambda b: (b.source, b.prefix))
        return Discovery(tuple(bundles), tuple(self.findings))

    # --- inputs ---------------------------------------------------------------------------

    def add_input(self, raw: str) -> None:
        """One user input: a file, a folder, or a glob; a missing one becomes a finding."""
        raw = os.fspath(raw)
        try:
            target = _resolve(raw, self.opts)
            fs = target.fs
            if fs.exists(target.path):
                info = fs.info(target.path)
                self.add_entry(target, info, top=True)
            elif _first_magic(target.path) >= 0:
                self.add_glob(target, raw)
            else:
                self.findings.append(
                    finding("INPUT_NOT_FOUND", raw, "no such file, folder or URL; check the path")
                )
        except (OSError, ValueError, ImportError) as exc:
            self.findings.append(
                finding(
                    "INPUT_NOT_FOUND",
                    raw,
                    f"cannot be opened ({type(exc).__name__}: {exc}); check the path, the URL's "
                    "protocol and the storage options",
                )
            )

    def add_glob(self, target: _Target, raw: str) -> None:
        """Every match of a glob; folders among the matches are walked like any folder."""
        matches: dict[str, dict[str, Any]] = target.fs.glob(target.path, detail=True)
        base = target.path[: target.path.rfind("/", 0, _first_magic(target.path)) + 1]
        outputs = {_parent(p) for p in matches if posixpath.basename(p) in OUTPUT_MARKERS}
        for folder in sorted(outputs):
            self.dataset_skipped(target.url(folder))
        kept = 0
        for path, info in sorted(matches.items()):
            rel = path[len(base) :].split("/") if path.startswith(base) else []
            is_dir = info.get("type") == "directory"
            if any(_skipped_dir(d) for d in (rel if is_dir else rel[:-1])):
                continue
            if _under_any(path, outputs) or _skipped_name(posixpath.basename(path)):
                continue
            kept += 1
            self.add_entry(target, info, top=False)
        if not kept:
            self.findings.append(
                finding("INPUT_NOT_FOUND", raw, "the pattern matches nothing; check the path")
            )

    def add_entry(self, target: _Target, info: Mapping[str, Any], *, top: bool) -> None:
        """A listed entry: walk a folder, take a file, report a link or a special file.

        ``top`` is an input the user named: it is used even when it is (or sits behind) a link.
        """
        path = str(info["name"])
        if info.get("islink") and not top:
            self.link_skipped(target.url(path))
        elif info.get("type") == "directory":
            self.walk(target, path)
        elif info.get("type") == "file":
            self.add_file(target, path, info)
            if top:
                self.add_siblings(target, path)
        else:
            self.findings.append(
                finding(
                    "STRAY_FILE",
                    target.url(path),
                    "not a regular file or folder (a FIFO, socket or device); ignored",
                )
            )

    def walk(self, target: _Target, root: str) -> None:
        """All files below ``root``, in name order, pruning what ``discover`` never reads."""
        for _folder, dirs, files in target.fs.walk(
            root, detail=True, topdown=True, on_error=self.unlistable
        ):
            if OUTPUT_MARKERS & (set(files) | set(dirs)):
                dirs.clear()
                self.dataset_skipped(target.url(_folder))
                continue
            keep = {name: dirs[name] for name in sorted(dirs) if not _skipped_dir(name)}
            dirs.clear()
            dirs.update(keep)
            for name in sorted(files):
                if not _skipped_name(name):
                    self.add_entry(target, files[name], top=False)

    def dataset_skipped(self, url: str) -> None:
        self.findings.append(
            finding(
                "INPUT_IS_DATASET",
                url,
                "holds a converted dataset (catalog.parquet): its folder is not read as input, "
                "bundles in it are not seen; keep the bundles outside --out",
            )
        )

    def unlistable(self, exc: OSError) -> None:
        """A folder below an input that cannot be listed (permissions): say so, carry on."""
        where = str(exc.filename) if exc.filename else "?"
        self.findings.append(
            finding(
                "INPUT_NOT_FOUND",
                where,
                f"folder cannot be listed ({type(exc).__name__}: {exc.strerror or exc}); "
                "bundles in it were not seen",
            )
        )

    def link_skipped(self, url: str) -> None:
        self.findings.append(
            finding(
                "INPUT_LINK_SKIPPED",
                url,
                "symbolic link not followed (links inside an input folder are never followed); "
                "give its target as an input of its own to include it",
            )
        )

    # --- files ----------------------------------------------------------------------------

    def add_file(self, target: _Target, path: str, info: Mapping[str, Any]) -> None:
        """A plain file: an archive to open, a bundle file to group, or a stray."""
        key = target.key(path)
        if key in self.seen:
            return
        self.seen.add(key)
        url = target.url(path)
        name = posixpath.basename(path)
        stamp = file_stamp(info)
        if self.listing is not None:
            self.listing.stamps[url] = stamp
        if is_archive(name):
            self.add_archive(url, stamp)
            return
        parts = split_role(name)
        if parts is None:
            self.stray(url)
            return
        self.group(_parent(url), parts, FileRef(url=url, size=stamp[0]))

    def add_siblings(self, target: _Target, path: str) -> None:
        """A bundle file named on its own: the other files of its bundle beside it are taken
        too, so that it is judged (and converted) as the bundle it belongs to, not as a bundle
        missing four files."""
        parts = split_role(posixpath.basename(path))
        if parts is None:
            return
        try:
            entries = target.fs.ls(_parent(path), detail=True)
        except (OSError, ValueError):
            return  # the file alone: its bundle's other files are said to be missing
        for info in sorted(entries, key=lambda i: str(i["name"])):
            name = str(info["name"])
            role = split_role(posixpath.basename(name))
            if role is not None and role[0] == parts[0] and info.get("type") == "file":
                if not info.get("islink"):
                    self.add_file(target, name, info)

    def add_archive(self, url: str, stamp: FileStamp) -> None:
        """The members of one archive, grouped by their folder inside it (with a ``Listing``,
        an archive unchanged since it was last opened is not opened again)."""
        index = self.listing.known.get(url) if self.listing is not None else None
        if index is None or index.stamp != stamp:
            members, findings = list_members(url, self.opts)
            index = ArchiveIndex(stamp, tuple(members), tuple(findings))
            if self.listing is not None:
                self.listing.opened += 1
        if self.listing is not None:
            self.listing.archives[url] = index
        members = list(index.members)
        self.findings.extend(index.findings)
        for member in members:
            self.add_member(url, member)

    def add_member(self, archive: str, member: Member) -> None:
        key = f"{archive}!{member.name}"
        norm = normalize_member_name(member.name)
        folder, name = posixpath.split(norm)
        if key in self.seen or any(_skipped_dir(p) for p in folder.split("/") if p):
            return
        self.seen.add(key)
        if _skipped_name(name):
            return
        if is_archive(name):
            self.findings.append(
                finding(
                    "ARCHIVE_NESTED",
                    key,
                    "an archive inside an archive is not opened; unpack the outer one, or give "
                    "the inner archive as an input of its own",
                )
            )
            return
        parts = split_role(name)
        if parts is None:
            self.stray(key)
            return
        source = f"{archive}!{folder}" if folder else archive
        self.group(source, parts, FileRef(url=archive, size=member.size, member=member.name))

    def group(self, source: str, parts: tuple[str, str], ref: FileRef) -> None:
        prefix, role = parts
        self.groups.setdefault((source, prefix), {})[role] = ref

    def stray(self, label: str) -> None:
        self.findings.append(
            finding(
                "STRAY_FILE",
                label,
                "not a bundle file (<prefix>_metadata.json, _data.jsonl, _frames.npy, "
                "_timestamps.npy, _README.md) nor an archive; ignored",
            )
        )


def _under_any(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)
