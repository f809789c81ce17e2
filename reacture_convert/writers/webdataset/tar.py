"""USTAR tar I/O for WebDataset samples: reproducible members, sizes known up front, hashing on
the way, and the one reader that groups a tar stream's members into samples.

Reproducible bytes. A member's header depends on nothing but its name and size: mtime 0,
uid/gid 0, empty user and group names, mode 0o644, a regular file, USTAR format. Written in a
fixed order, the same members therefore always give the same archive bytes, and the size of an
archive is known before it is written (``member_size``, ``tar_size``).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from reacture_convert.errors import OutputError

__all__ = [
    "HashingReader",
    "HashingWriter",
    "iter_tar_samples",
    "member_size",
    "open_tar_writer",
    "tar_size",
    "write_member",
]

_BLOCK = tarfile.BLOCKSIZE  # 512
_RECORD = tarfile.RECORDSIZE  # 10240: tarfile pads a closed archive to a multiple of this


def member_size(nbytes: int) -> int:
    """Bytes a regular-file member takes in a USTAR archive: header plus padded data."""
    return _BLOCK + -(-nbytes // _BLOCK) * _BLOCK


def tar_size(content: int) -> int:
    """The size of a closed tarfile archive whose members take ``content`` bytes: two zero
    blocks end it and tarfile pads to a whole record."""
    return -(-(content + 2 * _BLOCK) // _RECORD) * _RECORD


def open_tar_writer(sink: IO[bytes]) -> tarfile.TarFile:
    """A forward-only USTAR writer on ``sink`` (left open when the archive is closed)."""
    return tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT)


def write_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``data`` as the regular file ``name`` with a header that depends on nothing else."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    tar.addfile(info, io.BytesIO(data))


def iter_tar_samples(stream: IO[bytes], label: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of each sample of the tar on ``stream``, read forward once.

    The WebDataset convention: a member ``<key>.<extension>`` (split at the last ``.``) belongs
    to the sample ``key``, consecutive members with one key make one sample, and the extensions
    keep their member order. Members that are not regular files are skipped. ``label`` names
    the tar in errors: an extension twice in one sample raises OutputError."""
    key: str | None = None
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if not info.isreg():
                continue
            name, _, ext = info.name.rpartition(".")
            if name != key:
                if key is not None:
                    yield key, members
                key, members = name, {}
            if ext in members:
                raise OutputError(
                    f"{label}: sample {name!r} has two .{ext} members; the tar is "
                    "damaged or not a WebDataset tar (write it again)"
                )
            member = tar.extractfile(info)
            assert member is not None  # a regular file
            members[ext] = member.read()
    if key is not None:
        yield key, members


class HashingWriter(io.RawIOBase):
    """Passes writes through to ``sink`` and keeps their sha256 and byte count."""

    def __init__(self, sink: IO[bytes]) -> None:
        super().__init__()
        self.sink = sink
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sink.write(view)
        self.hash.update(view)
        self.count += len(view)
        return len(view)


class HashingReader(io.RawIOBase):
    """Reads ``source`` forward and keeps the sha256 and byte count of what was read."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self.source.read(-1 if size is None else size)
        self.hash.update(data)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end (tarfile stops at the end-of-archive blocks, before the padding)."""
        while self.read(1 << 20):
            pass
