"""Compressed shards: a shard's tar stream stored as ONE gzip member whose deflate stream is
flushed (``Z_FULL_FLUSH``: the compressor forgets its window and pads to a byte) after every
*run* of ``SHARD_RUN`` consecutive samples and before the end of the archive.

One member, because Python's ``tarfile`` in stream mode (``"r|*"``, as ``webdataset`` and
Hugging Face ``datasets`` open tars) reads only the first member of a multi-member gzip file
and then stops without an error: independent members per run (BGZF) lose every sample after
the first run there. A full flush gives what independent members gave the shard reader: the
compressed bytes from one flush point to the next inflate alone (raw deflate) to that run's tar
bytes, so a run is one ranged read. Where the points are cannot be seen in the stream, so the
writer records them (``RunWriter.points``) and ``wds/index.json`` lists them per shard.

Reproducible bytes. The member is written here, not by ``gzip``: the 10-byte header has no
mtime (0), no file name, XFL 0 and OS 255 ("unknown"), then raw deflate at a fixed level
(``zlib``) and the CRC-32 and size trailer. The same tar bytes and level give the same bytes
with the same zlib (its deflate output may differ between zlib versions; the tar bytes it
decodes to do not).

Untrusted input. ``GzipMembers`` decompresses a stream (of one member or several) in bounded
pieces (``max_length``); ``inflate_run`` inflates a ranged read and refuses output beyond what
the caller expects. A member that is cut short, does not decompress, or fails its CRC or size
check raises OutputError naming the byte where the member begins.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any, Final, Protocol

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.layout import SHARD_SUFFIX, SHARD_SUFFIX_GZ

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_LEVEL",
    "SHARD_RUN",
    "GzipMembers",
    "MemberSpan",
    "RunWriter",
    "check_compression",
    "gzip_member",
    "inflate_run",
    "plain_points",
    "shard_suffix",
    "shard_writer",
]

COMPRESSIONS: Final = ("none", "gzip")
DEFAULT_LEVEL: Final = 6
SHARD_RUN: Final = 32
"""Consecutive samples of a shard that the shard reader reads at once when it shuffles, and
that one gzip member of a compressed shard holds."""

_SUFFIXES: Final = {"none": SHARD_SUFFIX, "gzip": SHARD_SUFFIX_GZ}
_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no mtime, no name, OS unknown
_PIECE: Final = 1 << 20  # compressed bytes read, decompressed bytes handed out, at a time

MemberSpan = tuple[int, int, int, int]
"""A gzip member: its compressed bytes ``[cstart, cend)`` and the tar bytes ``[ustart, uend)``
it decompresses to."""


class Readable(Protocol):
    """What ``GzipMembers`` reads from: a file, a ``HashingReader``."""

    def read(self, n: int = -1, /) -> bytes: ...


def check_compression(compression: str, level: int) -> None:
    """Raise ConfigError unless ``compression`` is one of ``COMPRESSIONS`` and ``level`` a
    deflate level (1-9)."""
    if compression not in COMPRESSIONS:
        raise ConfigError(
            f"unknown shard compression {compression!r} (--shard-compression, [wds] "
            f"compression); choose one of {', '.join(COMPRESSIONS)}"
        )
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
        raise ConfigError(
            f"shard compression level {level!r} (--shard-compression-level, [wds] "
            "compression_level): give 1 (fastest) to 9 (smallest)"
        )


def shard_suffix(compression: str) -> str:
    """``.tar`` or ``.tar.gz``: how a shard of this compression's name ends."""
    return _SUFFIXES[compression]


class _Member:
    """One gzip member written forward to ``write``."""

    def __init__(self, write: Callable[[bytes], Any], level: int) -> None:
        self.write = write
        self.deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = 0
        self.size = 0
        write(_HEADER)

    def add(self, data: Any) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(memoryview(data).cast("B"))
        out = self.deflate.compress(data)
        if out:
            self.write(out)

    def close(self) -> None:
        self.write(self.deflate.flush() + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))


def gzip_member(data: Any, level: int = DEFAULT_LEVEL) -> bytes:
    """``data`` as one reproducible gzip member (see the module doc)."""
    out = bytearray()
    member = _Member(out.extend, level)
    member.add(data)
    member.close()
    return bytes(out)


class RunWriter:
    """A shard's tar stream written to ``write``: as it is (``compression`` ``none``), or as
    one gzip member flushed (``Z_FULL_FLUSH``) after every ``run`` samples and before the end
    of the archive. Call ``write`` with a sample's tar bytes (in pieces), ``end_sample`` after
    each sample, and ``finish`` with the end of the archive. ``points`` then holds
    ``(stored offset, tar offset)`` where each run and the end of the archive begin: for a
    compressed shard the bytes from one point to the next inflate alone (raw deflate) to that
    run's tar bytes; for a plain shard both offsets are the same (``plain_points``)."""

    def __init__(
        self,
        write: Callable[[Any], Any],
        compression: str = "none",
        level: int = DEFAULT_LEVEL,
        run: int = SHARD_RUN,
    ) -> None:
        check_compression(compression, level)
        self.target = write
        self.compressed = compression != "none"
        self.run = run
        self.samples = 0  # in the open run
        self.written = 0  # stored bytes
        self.size = 0  # tar bytes
        self.points: list[tuple[int, int]] = []
        self.member: _Member | None = None
        if self.compressed:
            self.member = _Member(self._out, level)
        self.points.append((self.written, 0))

    def _out(self, data: Any) -> None:
        self.written += memoryview(data).nbytes
        self.target(data)

    def write(self, data: Any) -> None:
        self.size += memoryview(data).nbytes
        if self.member is None:
            self._out(data)
        else:
            self.member.add(data)

    def end_sample(self) -> None:
        self.samples += 1
        if self.samples >= self.run:
            self._flush()

    def _flush(self) -> None:
        if self.samples:
            if self.member is not None:
                self._out(self.member.deflate.flush(zlib.Z_FULL_FLUSH))
            self.points.append((self.written, self.size))
        self.samples = 0

    def finish(self, tail: bytes) -> None:
        """End the open run, then write ``tail`` (the end of the archive) and close."""
        self._flush()
        if self.member is None:
            self._out(tail)
            return
        self.member.add(tail)
        self.member.close()


def plain_points(sizes: Sequence[int], run: int = SHARD_RUN) -> tuple[tuple[int, int], ...]:
    """A plain shard's ``points`` (as ``RunWriter`` records them) from its samples' tar bytes
    ``sizes`` alone: ``(offset, offset)`` where every ``run`` samples and the end of the
    archive begin."""
    starts = [0, *accumulate(sizes)]
    at = starts[::run]
    if at[-1] != starts[-1]:
        at.append(starts[-1])
    return tuple((u, u) for u in at)


def shard_writer(
    write: Callable[[Any], Any], compression: str, level: int = DEFAULT_LEVEL
) -> RunWriter:
    """A ``RunWriter`` with the readers' run (``SHARD_RUN``)."""
    return RunWriter(write, compression, level, SHARD_RUN)


def _damaged(label: str, at: int, why: str) -> OutputError:
    return OutputError(
        f"{label}: the gzip member at byte {at} {why}; the shard is damaged (write it again)"
    )


class GzipMembers(io.RawIOBase):
    """The decompressed bytes of the gzip members on ``raw`` (read forward once), member by
    member in bounded pieces; ``members`` lists each member finished so far (``MemberSpan``).
    ``seek(n, 1)`` skips ``n`` decompressed bytes forward (raising OutputError when the stream
    ends first), so ``tar.sample_spans`` skips data without holding it. ``label`` names the
    shard in errors."""

    def __init__(self, raw: Readable, label: str) -> None:
        super().__init__()
        self.raw, self.label = raw, label
        self.members: list[MemberSpan] = []
        self._d = zlib.decompressobj(31)
        self._in = b""  # compressed bytes not yet given to the decompressor
        self._cpos = 0  # compressed bytes consumed
        self._upos = 0  # decompressed bytes handed out or buffered
        self._start = (0, 0)  # where the member being read began (compressed, decompressed)
        self._fed = False  # the member being read has had input
        self._out = b""  # decompressed bytes not handed out yet, from ``_at`` on
        self._at = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._upos - (len(self._out) - self._at)

    def _step(self) -> None:
        """Decompress up to ``_PIECE`` more bytes into ``_out`` (or note the end)."""
        if not self._in:
            self._in = self.raw.read(_PIECE)
            if not self._in:
                if self._fed:
                    raise _damaged(self.label, self._start[0], "is cut short")
                self._done = True
                return
        try:
            out = self._d.decompress(self._in, _PIECE)
        except zlib.error as e:
            raise _damaged(self.label, self._start[0], f"does not decompress ({e})") from None
        self._fed = True
        rest = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
        self._cpos += len(self._in) - len(rest)
        self._in = rest
        self._upos += len(out)
        self._out, self._at = out, 0
        if self._d.eof:
            self.members.append((self._start[0], self._cpos, self._start[1], self._upos))
            self._d = zlib.decompressobj(31)
            self._start, self._fed = (self._cpos, self._upos), False

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes (fewer only at the end; all that is left when ``size`` < 0), as a
        file's ``read`` gives them."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_PIECE), b""))
        pieces: list[bytes] = []
        left = size
        while left > 0:
            if self._at >= len(self._out):
                if self._done:
                    break
                self._step()
                continue
            piece = self._out[self._at : self._at + left]
            self._at += len(piece)
            left -= len(piece)
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.tell() + offset
        if whence not in (0, 1) or target < self.tell():
            raise io.UnsupportedOperation("a gzip stream is read forward only")
        left = target - self.tell()
        while left > 0:
            got = self.read(min(left, _PIECE))
            if not got:
                raise OutputError(
                    f"{self.label}: the decompressed tar ends at byte {self.tell()}, inside a "
                    f"member that runs to byte {target}; the shard is truncated (write it again)"
                )
            left -= len(got)
        return self.tell()

    def drain(self) -> list[MemberSpan]:
        """Read to the end (checking every member); every member's span."""
        while self.read(_PIECE):
            pass
        return self.members


def inflate_run(data: bytes, expected: int, label: str, at: int = 0) -> bytes:
    """The tar bytes of the runs in ``data``: a compressed shard's bytes from one of its
    ``points`` (byte ``at``) to a later one, which must inflate (raw deflate, no header) to
    exactly ``expected`` bytes: OutputError when they are more (never inflating more than one
    byte beyond), fewer, or do not inflate. The ranged read is checked by its size only (the
    CRC-32 covers the whole member: ``verify`` and whole reads check it)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(data, expected + 1)
    except zlib.error as e:
        raise _damaged(label, at, f"does not inflate from there ({e})") from None
    if len(out) > expected:
        raise _damaged(label, at, f"inflates to more than the {expected} bytes expected")
    if len(out) != expected or d.unconsumed_tail or d.eof:
        raise OutputError(
            f"{label}: the compressed bytes from byte {at} inflate to {len(out)} bytes, not "
            f"the {expected} of the runs index.json places there; the shard changed or is "
            "damaged (write it again)"
        )
    return out
