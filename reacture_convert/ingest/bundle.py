"""The bundle model: five files that share a prefix, wherever they live.

A file of a bundle is a plain local file, an fsspec URL (``s3://...``), or a member of a
.zip/.tar/.tar.gz archive that is itself local or remote. ``FileRef`` names one such file and
``open_file`` opens it for streaming reads; nothing is extracted to disk. Refs are small frozen
values so they travel to Dask workers.
"""

from __future__ import annotations

import contextlib
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec

from reacture_convert.errors import is_damaged_read
from reacture_convert.ingest.members import archive_kind

__all__ = [
    "ROLES",
    "LEGACY_ROLES",
    "ALL_ROLES",
    "FileRef",
    "BundleRef",
    "open_file",
    "StorageOptions",
    "is_damaged_member",
]

# The five files of a bundle, by the suffix after ``<prefix>_``.
ROLES: tuple[str, ...] = (
    "metadata.json",
    "data.jsonl",
    "frames.npy",
    "timestamps.npy",
    "README.md",
)
# The game's earlier export: four files, frames and their times in one JSON list (legacy.py).
LEGACY_ROLES: tuple[str, ...] = ("metadata.json", "data.jsonl", "frames.json", "README.md")
ALL_ROLES: tuple[str, ...] = (*ROLES, "frames.json")

StorageOptions = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file: ``url`` is a local path or fsspec URL; ``member`` a name inside that archive."""

    url: str
    size: int
    member: str | None = None

    @property
    def name(self) -> str:
        """The file's own name (last path component), e.g. ``reacture_1_frames.npy``."""
        path = self.member if self.member is not None else self.url
        return path.rstrip("/").rsplit("/", 1)[-1]

    def label(self) -> str:
        """Where the file is, for people: ``path`` or ``archive.zip!inner/path``."""
        return self.url if self.member is None else f"{self.url}!{self.member}"


@dataclass(frozen=True, slots=True)
class BundleRef:
    """The files found for one prefix. ``files`` maps a role in ``ROLES`` to its file."""

    prefix: str
    source: str  # the folder or archive!folder the files were found in
    files: Mapping[str, FileRef] = field(default_factory=dict)

    @property
    def is_legacy(self) -> bool:
        """A four-file export of the game's earlier format (``frames.json``, no .npy files)."""
        return "frames.json" in self.files and not (
            "frames.npy" in self.files or "timestamps.npy" in self.files
        )

    @property
    def missing(self) -> tuple[str, ...]:
        roles = LEGACY_ROLES if self.is_legacy else ROLES
        return tuple(r for r in roles if r not in self.files)

    def file_label(self, role: str) -> str:
        """The name findings use for a role's file (the file's own name)."""
        ref = self.files.get(role)
        return ref.name if ref is not None else f"{self.prefix}_{role}"


def is_damaged_member(ref: FileRef, exc: BaseException) -> bool:
    """True when ``exc``, raised while reading ``ref``, means a damaged archive member: bad
    input to report, not an I/O failure to retry."""
    return is_damaged_read(exc, in_archive=ref.member is not None)


@contextlib.contextmanager
def open_file(ref: FileRef, storage_options: StorageOptions | None = None) -> Iterator[IO[bytes]]:
    """Open ``ref`` for binary reading (seekable for plain files, forward-only inside archives).

    Archive members are re-checked here: only regular files are ever read.
    """
    opts = dict(storage_options or {})
    with fsspec.open(ref.url, "rb", **opts) as raw:
        if ref.member is None:
            yield raw
            return
        kind = archive_kind(ref.url)
        if kind is None:
            raise ValueError(f"{ref.url}: not a supported archive (.zip, .tar, .tar.gz, .tgz)")
        if kind == "zip":
            with zipfile.ZipFile(raw) as zf:
                info = zf.getinfo(ref.member)
                if info.is_dir():
                    raise IsADirectoryError(ref.label())
                with zf.open(info) as member:
                    yield member
        else:
            with tarfile.open(fileobj=raw, mode="r:gz" if kind == "tar.gz" else "r:") as tf:
                tinfo = tf.getmember(ref.member)
                if not tinfo.isreg():
                    raise ValueError(f"{ref.label()}: not a regular file")
                member_io = tf.extractfile(tinfo)
                assert member_io is not None  # regular files always have a stream
                with member_io:
                    yield member_io
