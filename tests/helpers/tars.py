"""Shard tars built byte by byte for the damage tests (the shard reader's fuzz tests and the
archive reader's): a valid shard written as the converter writes one, with a pax member in
front, and the pieces to damage it with a right checksum."""

from __future__ import annotations

from hypothesis import strategies as st

from reacture_convert.formats.wds.tar import (
    BLOCK,
    end_of_archive,
    member_header,
    member_size,
    padding,
)


def shard(members: list[tuple[str, bytes]]) -> bytes:
    """A closed shard tar of ``members``, written as the converter writes one."""
    parts: list[bytes] = []
    for name, data in members:
        parts += [member_header(name, len(data)), data, padding(len(data))]
    content = sum(member_size(len(data)) for _, data in members)
    return b"".join(parts) + end_of_archive(content)


def pax_member(records: bytes) -> bytes:
    """A pax extended header member holding ``records`` as its data (checksum right)."""
    header = bytearray(member_header("././@PaxHeader", len(records)))
    header[156] = ord("x")
    return fix_checksum(bytes(header)) + records + padding(len(records))


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def fix_checksum(header: bytes) -> bytes:
    """``header`` with its checksum field made to match its other bytes."""
    h = bytearray(header[:BLOCK])
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


MEMBERS = [
    ("s/000000.json", b'{"frame_index": 0}'),
    ("s/000000.npy", bytes(range(256)) * 3),
    ("s/000001.json", b'{"frame_index": 1}'),
    ("s/000001.npy", b"\x93NUMPY" + bytes(600)),
]
VALID = pax_member(pax_record(b"path", b"s/000000.json")) + shard(MEMBERS)
HEADERS = [0, 2 * BLOCK]  # the pax header, then the first member's header
_at = 2 * BLOCK
for _name, _data in MEMBERS:
    _at += member_size(len(_data))
    HEADERS.append(_at)
HEADERS.pop()  # (the last one is the end of the archive)
FIELDS = {"name": (0, 100), "size": (124, 12), "mode": (100, 8), "type": (156, 1)}


pax_records = st.lists(
    st.tuples(
        st.integers(-5, 200).map(lambda n: str(n).encode())
        | st.binary(max_size=4)
        | st.just(b"99999999999999999999999"),
        st.sampled_from([b"path", b"size", b"linkpath", b"", b"p\xffth"]) | st.binary(max_size=6),
        st.binary(max_size=40),
        st.sampled_from([b"=", b"", b"=="]),
        st.sampled_from([b"\n", b"", b" "]),
    ).map(lambda r: r[0] + b" " + r[1] + r[3] + r[2] + r[4]),
    max_size=4,
)
