"""USTAR tar bytes for WebDataset samples, built and parsed by hand: reproducible member headers
from one template, archive sizes known up front, and the one reader that groups a tar stream's
members into samples.

Reproducible bytes. A member's header depends on nothing but its name and size: mtime 0,
uid/gid 0, empty user and group names, mode 0o644, a regular file, USTAR format; these are the
bytes Python's ``tarfile`` writes for such a member. An archive is its members followed by two
zero blocks, padded with zeros to a whole 10 KiB record (as ``tarfile`` closes one), so the
same members in the same order always give the same archive, and its size is known before it is
written (``member_size``, ``tar_size``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import IO, Final

from reacture_convert.errors import OutputError
from reacture_convert.ingest.members import member_name_problem, read_bounded

__all__ = [
    "BLOCK",
    "end_of_archive",
    "iter_tar_members",
    "iter_tar_samples",
    "member_header",
    "member_size",
    "padding",
    "sample_spans",
    "tar_size",
]

BLOCK: Final = 512
RECORD: Final = 20 * BLOCK  # tarfile pads a closed archive to a multiple of this
_ZEROS: Final = bytes(RECORD + 2 * BLOCK)
_MAX_SIZE: Final = 8**11 - 1  # what 11 octal digits hold
# name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor
# prefix, padded to one block
_HEADER: Final = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")
_FIXED: Final = dict(
    mode=b"0000644\0", owner=b"0000000\0", mtime=b"00000000000\0", type=b"0", magic=b"ustar\0"
)
_FIXED_SUM: Final = sum(
    _HEADER.pack(
        b"",
        _FIXED["mode"],
        _FIXED["owner"],
        _FIXED["owner"],
        b"",
        _FIXED["mtime"],
        b" " * 8,
        _FIXED["type"],
        b"",
        _FIXED["magic"],
        b"00",
        b"",
        b"",
        b"",
        b"",
        b"",
    )
)
_NAME_MAX, _PREFIX_MAX = 100, 155


def member_size(nbytes: int) -> int:
    """Bytes a regular-file member of ``nbytes`` takes in a USTAR archive: header plus data
    padded to whole blocks."""
    return BLOCK + -(-nbytes // BLOCK) * BLOCK


def tar_size(content: int) -> int:
    """The size of a closed archive whose members take ``content`` bytes: two zero blocks end
    it, and zeros pad it to a whole record."""
    return -(-(content + 2 * BLOCK) // RECORD) * RECORD


def padding(nbytes: int) -> bytes:
    """The zeros that pad ``nbytes`` of member data to whole blocks."""
    return _ZEROS[: -nbytes % BLOCK]


def end_of_archive(content: int) -> bytes:
    """The zeros that close an archive whose members take ``content`` bytes."""
    return _ZEROS[: tar_size(content) - content]


def _split_name(name: bytes) -> tuple[bytes, bytes]:
    """``(prefix, name)`` as USTAR stores a long name: split at a ``/`` (tarfile's rule)."""
    if len(name) <= _NAME_MAX:
        return b"", name
    parts = name.split(b"/")
    for i in range(1, len(parts)):
        prefix, rest = b"/".join(parts[:i]), b"/".join(parts[i:])
        if len(prefix) <= _PREFIX_MAX and len(rest) <= _NAME_MAX:
            return prefix, rest
    raise ValueError(f"tar member name {name!r} is too long for a USTAR header")


def member_header(name: str, size: int) -> bytes:
    """The 512-byte header of the regular file ``name`` with ``size`` bytes (see the module
    doc: byte for byte what ``tarfile`` writes for it)."""
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"tar member {name!r}: size {size} does not fit a USTAR header")
    prefix, short = _split_name(name.encode("utf-8"))
    size_field = b"%011o\0" % size
    chksum = _FIXED_SUM + sum(short) + sum(size_field) + sum(prefix)
    return _HEADER.pack(
        short,
        _FIXED["mode"],
        _FIXED["owner"],
        _FIXED["owner"],
        size_field,
        _FIXED["mtime"],
        b"%06o\0 " % chksum,
        _FIXED["type"],
        b"",
        _FIXED["magic"],
        b"00",
        b"",
        b"",
        b"",
        b"",
        prefix,
    )


# --- reading --------------------------------------------------------------------------------------
def _field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _number(raw: bytes, label: str, at: int) -> int:
    if raw and raw[0] & 0x80:  # GNU base-256
        return int.from_bytes(raw[1:], "big") if raw[0] == 0x80 else -1
    text = _field(raw).strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise OutputError(
            f"{label}: the tar header at byte {at} is damaged (a number field holds {raw!r}); "
            "the tar is not readable (write it again)"
        ) from None


def _read_exact(stream: IO[bytes], n: int, label: str, what: str) -> bytes:
    data = read_bounded(stream, n)
    if len(data) != n:
        raise OutputError(
            f"{label}: ends inside {what} ({len(data)} of {n} bytes); the tar is truncated "
            "(write it again)"
        )
    return data


def _skip(stream: IO[bytes], n: int, label: str, what: str) -> None:
    if n:
        _read_exact(stream, n, label, what)


def _pax_path(data: bytes, where: str) -> str | None:
    """The ``path`` record of a pax extended header, if it has one. Each record is
    ``<length> <key>=<value>`` and a newline, ``length`` counting the whole record in decimal;
    a record that breaks this raises OutputError naming ``where``."""
    pos = 0
    path = None
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        length = int(digits) if digits.isdigit() and len(digits) < 20 else -1
        end = pos + length
        record = data[space + 1 : end - 1] if space > pos and space < end <= len(data) else None
        if record is None or data[end - 1 : end] != b"\n" or b"=" not in record:
            raise OutputError(
                f"{where}: its pax record at byte {pos} of the extended header is damaged "
                f"({bytes(data[pos : pos + 32])!r}); the tar is damaged (write it again)"
            )
        key, _, value = record.partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", errors="surrogateescape")
        pos = end
    return path


def _safe(name: str, label: str, at: int) -> str:
    problem = member_name_problem(name)
    if problem is not None:
        raise OutputError(
            f"{label}: the member at byte {at} is named {name!r} ({problem}): a name that is "
            "absolute or climbs out of the archive is refused; it is not a WebDataset tar "
            "(write it again)"
        )
    return name


def _next_header(stream: IO[bytes], label: str, offset: int) -> tuple[bytes, bytes, int] | None:
    """``(type, name, size)`` of the header at ``offset`` (read from ``stream``), or None at
    the archive's end (a zero block or the end of the stream)."""
    header = stream.read(BLOCK)
    if not header or header == _ZEROS[:BLOCK]:
        return None
    if len(header) != BLOCK:
        raise OutputError(f"{label}: ends inside a tar header at byte {offset}")
    stored = _number(header[148:156], label, offset)
    if stored != sum(header[:148]) + 256 + sum(header[156:]):
        raise OutputError(
            f"{label}: the tar header at byte {offset} fails its checksum; the tar is "
            "damaged (write it again)"
        )
    size = _number(header[124:136], label, offset)
    if size < 0:
        raise OutputError(
            f"{label}: the tar header at byte {offset} declares a negative size; the tar "
            "is damaged (write it again)"
        )
    name = _field(header[0:100])
    if header[257:262] == b"ustar" and header[345:346] != b"\0":
        name = _field(header[345:500]) + b"/" + name
    return header[156:157], name, size


def iter_tar_members(stream: IO[bytes], label: str) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of each regular file of the tar on ``stream``, read forward once.

    Headers are parsed by hand (checksums checked); GNU long names and pax ``path`` records
    apply to the member after them; other members (folders, links, devices) are skipped, never
    followed. The archive ends at its first zero block or at the end of the stream. Names obey
    the archive policy (``ingest.members``), and sizes are read in bounded pieces (a damaged
    size cannot make the reader hold more than the stream has). ``label`` names the tar in
    errors: a damaged header, an unsafe name or data cut short raise OutputError (and nothing
    else does), naming the member or byte offset."""
    offset = 0
    long_name: str | None = None
    while True:
        parsed = _next_header(stream, label, offset)
        if parsed is None:
            return
        kind, name, size = parsed
        at = offset
        offset += BLOCK
        data_span = size + -size % BLOCK
        shown = name.decode("utf-8", errors="backslashreplace")
        what = f"member {shown!r} (header at byte {at})"
        if kind in (b"0", b"\0", b"7", b"L", b"x"):
            data = _read_exact(stream, size, label, what)
            _skip(stream, data_span - size, label, what)
            if kind == b"L":
                long_name = _field(data).decode("utf-8", errors="surrogateescape")
            elif kind == b"x":
                long_name = _pax_path(data, f"{label}: {what}") or long_name
            else:
                text = long_name or name.decode("utf-8", errors="surrogateescape")
                long_name = None
                yield _safe(text, label, at), data
        else:
            _skip(stream, data_span, label, what)
            long_name = None
        offset += data_span


def iter_tar_samples(stream: IO[bytes], label: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of each sample of the tar on ``stream``, read forward once.

    The WebDataset convention: a member ``<key>.<extension>`` (split at the last ``.``) belongs
    to the sample ``key``, consecutive members with one key make one sample, and the extensions
    keep their member order. Members that are not regular files are skipped. ``label`` names
    the tar in errors: an extension twice in one sample raises OutputError, and so do the
    damages ``iter_tar_members`` finds."""
    key: str | None = None
    members: dict[str, bytes] = {}
    for name, data in iter_tar_members(stream, label):
        base, _, ext = name.rpartition(".")
        if base != key:
            if key is not None:
                yield key, members
            key, members = base, {}
        if ext in members:
            raise OutputError(
                f"{label}: sample {base!r} has two .{ext} members; the tar is "
                "damaged or not a WebDataset tar (write it again)"
            )
        members[ext] = data
    if key is not None:
        yield key, members


def sample_spans(stream: IO[bytes], label: str) -> list[tuple[str, int, int]]:
    """``(key, start, end)`` of each sample of the tar on ``stream``: the bytes ``[start,
    end)`` hold its members (headers, any long-name records before them, data and padding),
    so reading just them and passing them to ``iter_tar_samples`` gives that sample alone.

    Only the headers are read: the data is skipped with ``seek`` on a seekable stream (a
    local file: one small read per member), else read and dropped. Samples are grouped as
    ``iter_tar_samples`` groups them, and the same damages raise OutputError."""
    seekable = stream.seekable()
    spans: list[tuple[str, int, int]] = []
    offset = 0
    first: int | None = None  # where the records of the next regular member began
    long_name: str | None = None
    while True:
        parsed = _next_header(stream, label, offset)
        if parsed is None:
            return spans
        kind, name, size = parsed
        at = offset
        first = at if first is None else first
        span = size + -size % BLOCK
        shown = name.decode("utf-8", errors="backslashreplace")
        what = f"member {shown!r} (header at byte {at})"
        offset += BLOCK + span
        if kind in (b"L", b"x"):
            data = _read_exact(stream, size, label, what)
            _skip(stream, span - size, label, what)
            if kind == b"L":
                long_name = _field(data).decode("utf-8", errors="surrogateescape")
            else:
                long_name = _pax_path(data, f"{label}: {what}") or long_name
            continue
        if seekable:
            stream.seek(span, 1)
        else:
            _skip(stream, span, label, what)
        if kind not in (b"0", b"\0", b"7"):
            long_name = None
            continue
        text = _safe(long_name or name.decode("utf-8", errors="surrogateescape"), label, at)
        long_name = None
        key = text.rpartition(".")[0]
        if spans and spans[-1][0] == key:
            spans[-1] = (key, spans[-1][1], offset)
        else:
            spans.append((key, first, offset))
        first = None
