"""Damaged shard tars: the hand-written reader gives members or raises ``OutputError``, and
nothing else, whatever the damage, and never holds more than the file has.

A valid shard is built by the project's own writer (``member_header``, ``padding``,
``end_of_archive``), with a pax member in front (as other tools write long names), then damaged:
bytes flipped or replaced anywhere, header fields rewritten with their checksum made right again
(so the damage reaches the field parsers, not only the checksum), pax records with random
lengths and keys, cuts at any point, and plain garbage. A table of hand-made cases checks that
each damage is named: the member or the byte offset.
"""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.tar import (
    BLOCK,
    iter_tar_members,
    iter_tar_samples,
)
from reacture_convert.ingest.members import READ_PIECE
from tests.helpers.tars import (
    FIELDS,
    HEADERS,
    MEMBERS,
    VALID,
    fix_checksum,
    pax_member,
    pax_record,
    pax_records,
    shard,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLACK = READ_PIECE + (64 << 10)  # a bounded read's piece, and the reader's own small change


def read_all(data: bytes) -> list[tuple[str, bytes]]:
    """Every member of ``data``, read the way the readers do; the peak memory of the read
    stays within the file's size and a bounded read's piece."""
    tracemalloc.start()
    try:
        members = list(iter_tar_members(io.BufferedReader(io.BytesIO(data)), "fuzz.tar"))
        list(iter_tar_samples(io.BytesIO(data), "fuzz.tar"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 3 * len(data) + SLACK, (peak, len(data))
    return members


def reads_or_refuses(data: bytes) -> None:
    try:
        members = read_all(data)
    except OutputError as e:
        assert "fuzz.tar" in str(e)
        return
    assert all(name and not name.startswith("/") for name, _ in members)


def test_the_valid_shard_reads() -> None:
    got = read_all(VALID)
    assert got == MEMBERS  # the pax path names the member after it (here: its own name)


@FUZZ
@given(data=st.data())
def test_flipped_and_replaced_bytes(data: st.DataObject) -> None:
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    reads_or_refuses(bytes(raw))


@FUZZ
@given(
    header=st.sampled_from(HEADERS),
    field=st.sampled_from(sorted(FIELDS)),
    value=st.binary(max_size=12)
    | st.sampled_from([b"-1", b"\x80" + b"\xff" * 11, b"\xff" * 12, b"7" * 11, b"9", b"\0"]),
)
def test_rewritten_fields_with_a_right_checksum(header: int, field: str, value: bytes) -> None:
    start, width = FIELDS[field]
    raw = bytearray(VALID)
    raw[header + start : header + start + width] = value[:width].ljust(width, b"\0")
    raw[header : header + BLOCK] = fix_checksum(bytes(raw[header : header + BLOCK]))
    reads_or_refuses(bytes(raw))


@FUZZ
@given(body=pax_records, good=st.booleans())
def test_random_pax_records(body: list[bytes], good: bool) -> None:
    pax = b"".join(body)
    if good:
        pax = pax_record(b"path", b"s/000000.json") + pax
    reads_or_refuses(pax_member(pax) + shard(MEMBERS))


@FUZZ
@given(cut=st.integers(0, len(VALID)))
def test_cut_anywhere(cut: int) -> None:
    reads_or_refuses(VALID[:cut])


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=3 * BLOCK), header=st.booleans())
def test_garbage(garbage: bytes, header: bool) -> None:
    if header and len(garbage) >= BLOCK:  # garbage that passes the checksum
        garbage = fix_checksum(garbage) + garbage[BLOCK:]
    reads_or_refuses(garbage)


# --- named damage -------------------------------------------------------------------------------
def _field(at: int, start: int, value: bytes) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        raw = bytearray(data)
        raw[at + start : at + start + len(value)] = value
        raw[at : at + BLOCK] = fix_checksum(bytes(raw[at : at + BLOCK]))
        return bytes(raw)

    return damage


def _pax(records: bytes) -> Callable[[bytes], bytes]:
    return lambda data: pax_member(records) + data[2 * BLOCK :]


FIRST = HEADERS[1]  # the first member's header
BAD = {
    "pax-length-not-a-number": (
        _pax(b"xx path=s/000000.json\n"),
        r"member '././@PaxHeader' \(header at byte 0\).*pax record at byte 0",
    ),
    "pax-length-beyond-the-record": (
        _pax(b"99 path=a\n"),
        r"member '././@PaxHeader' \(header at byte 0\).*pax record at byte 0",
    ),
    "pax-length-zero": (_pax(b"0 path=a\n"), r"pax record at byte 0"),
    "pax-record-without-equals": (_pax(b"10 pathab\n"), r"pax record at byte 0"),
    "pax-record-without-newline": (_pax(b"10 path=ab!"), r"pax record at byte 0"),
    "pax-path-not-utf8": (_pax(pax_record(b"path", b"s/\xff.json")), r"at byte 1024.*undecodable"),
    "pax-path-climbs-out": (_pax(pax_record(b"path", b"../x.json")), r"at byte 1024.*'\.\.'"),
    "size-garbage": (_field(FIRST, 124, b"zz\0"), rf"header at byte {FIRST} is damaged"),
    "size-negative": (_field(FIRST, 124, b"\xff" * 12), rf"header at byte {FIRST}.*negative"),
    "size-beyond-the-file": (
        _field(FIRST, 124, b"\x80" + b"\x00" * 3 + b"\xff" * 8),
        r"member 's/000000.json' \(header at byte 1024\).*truncated",
    ),
    "size-larger-than-the-file": (
        _field(FIRST, 124, b"%011o\0" % (8**11 - 1)),
        r"member 's/000000.json' \(header at byte 1024\).*truncated",
    ),
    "checksum-garbage": (lambda d: d[:148] + b"zzzzzzz\0" + d[156:], r"header at byte 0"),
    "checksum-wrong": (lambda d: d[:FIRST] + b"y" + d[FIRST + 1 :], rf"byte {FIRST} fails"),
    "header-cut": (lambda d: d[: FIRST + 100], rf"ends inside a tar header at byte {FIRST}"),
    "data-cut": (lambda d: d[: FIRST + BLOCK + 5], r"member 's/000000.json'.*truncated"),
    "long-name-cut": (lambda d: d[:BLOCK], r"member '././@PaxHeader'.*truncated"),
}


@pytest.mark.parametrize(("damage", "match"), BAD.values(), ids=BAD.keys())
def test_named_damage(damage: Callable[[bytes], bytes], match: str) -> None:
    with pytest.raises(OutputError, match=match) as info:
        read_all(damage(VALID))
    assert str(info.value).startswith("fuzz.tar: ")


def test_other_members_are_skipped_never_followed() -> None:
    """Links, devices and folders are skipped; a link's target is never read."""
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, kind in [("d", tarfile.DIRTYPE), ("l", tarfile.SYMTYPE), ("c", tarfile.CHRTYPE)]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tf.addfile(info)
        info = tarfile.TarInfo("s/0.json")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"{}"))
    assert read_all(sink.getvalue()) == [("s/0.json", b"{}")]
