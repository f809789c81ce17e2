"""The one policy for members of untrusted archives, shared by the bundle archive listing
(``ingest.archives``, over ``zipfile``/``tarfile``) and the hand-written shard tar reader
(``formats.wds.tar``).

- Names: ``member_name_problem`` says why a stored name is unsafe as a path inside one folder
  (empty, control characters or undecodable bytes, backslashes, absolute, a drive letter, a
  ``..`` component), or None.
- Kinds: only regular files are ever read; links are never followed and devices never opened
  (the listing refuses them with a finding, the shard reader skips them).
- Sizes: a size a header declares is only a claim. ``read_bounded`` reads in pieces, so what it
  holds at any time is bounded by the bytes the file really has, not by the claim;
  ``BoundedReader`` gives a stream to ``tarfile`` that reads so, and never seeks past the end.
"""

from __future__ import annotations

import io
import re
from typing import IO, Any, Final, Protocol

__all__ = ["READ_PIECE", "BoundedReader", "archive_kind", "member_name_problem", "read_bounded"]

READ_PIECE: Final = 1 << 20  # the most a bounded read asks for at once
_DRIVE: Final = re.compile(r"^[A-Za-z]:")
# The archive kinds we open, by file-name ending (any case); the longest ending first.
_KINDS: Final = ((".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar", "tar"), (".zip", "zip"))


def archive_kind(name: str) -> str | None:
    """``zip``, ``tar`` or ``tar.gz`` for a file name or URL with one of the archive endings
    we open (.zip, .tar, .tar.gz, .tgz, any case), else None."""
    low = name.lower()
    return next((kind for end, kind in _KINDS if low.endswith(end)), None)


def member_name_problem(name: str) -> str | None:
    """Why ``name`` is unsafe as a path inside a folder, or None when it is safe."""
    if not name:
        return "empty name"
    if not name.isprintable():  # (a surrogate, an undecodable byte, is not printable either)
        return "name holds a NUL, control character or undecodable byte"
    if "\\" in name:
        return "name holds a backslash"
    if name.startswith("/"):
        return "name is an absolute path"
    if _DRIVE.match(name):
        return "name starts with a drive letter"
    if ".." in name.split("/"):
        return "name has a '..' component"
    return None


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def read_bounded(stream: IO[bytes] | _Readable, n: int) -> bytes:
    """Up to ``n`` bytes of ``stream`` (fewer only at its end), read in pieces of at most
    ``READ_PIECE``: a huge ``n`` from a damaged header costs no more memory than the data
    that is really there."""
    if n <= READ_PIECE:
        return stream.read(max(n, 0))
    pieces: list[bytes] = []
    left = n
    while left > 0:
        piece = stream.read(min(left, READ_PIECE))
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


class BoundedReader(io.RawIOBase):
    """``stream`` for a parser that trusts declared sizes (``tarfile``): every read is
    ``read_bounded``, and with the stream's ``size`` known, a seek lands at most at its end (a
    huge offset from a damaged header reads as the end of the data, not an OverflowError)."""

    def __init__(self, stream: IO[bytes] | Any, size: int | None = None) -> None:
        super().__init__()
        self._stream = stream
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return bytes(self._stream.read())
        return read_bounded(self._stream, n)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._size is not None:
            if whence == io.SEEK_CUR:
                offset, whence = self.tell() + offset, io.SEEK_SET
            if whence == io.SEEK_SET:
                offset = min(max(offset, 0), self._size)
        return int(self._stream.seek(offset, whence))

    def tell(self) -> int:
        return int(self._stream.tell())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._stream.seekable())
