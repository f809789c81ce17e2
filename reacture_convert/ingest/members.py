"""The one policy for members of untrusted archives, shared by the bundle archive listing
(``ingest.archives``, over ``zipfile``/``tarfile``) and the hand-written shard tar reader
(``formats.wds.tar``).

- Names: ``member_name_problem`` says why a stored name is unsafe as a path inside one folder
  (empty, control characters or undecodable bytes, backslashes, absolute, a drive letter, a
  ``..`` component), or None.
- Kinds: only regular files are ever read; links are never followed and devices never opened
  (the listing refuses them with a finding, the shard reader skips them).
- Sizes: a size a header declares is only a claim. ``read_bounded`` reads in pieces, so what it
  holds at any time is bounded by the bytes the file really has, not by the claim.
"""

from __future__ import annotations

import re
from typing import IO, Final, Protocol

__all__ = ["READ_PIECE", "archive_kind", "member_name_problem", "read_bounded"]

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
    if any(not ch.isprintable() or "\ud800" <= ch <= "\udfff" for ch in name):
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
