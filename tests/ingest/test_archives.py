"""archives.list_members: every hostile archive is refused member by member, never extracted."""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reacture_convert.findings import CODES
from reacture_convert.ingest import archives
from reacture_convert.ingest.archives import Member, is_archive, list_members, normalize_member_name
from reacture_convert.ingest.members import READ_PIECE
from tests.helpers.tars import FIELDS, HEADERS, MEMBERS, fix_checksum, pax_member, pax_records
from tests.helpers.tars import VALID as SHARD
from tests.helpers.tars import shard as shard_tar

GOOD = ("good.txt", b"good bytes")

# --- builders -------------------------------------------------------------------------------


def write_zip(
    path: Path,
    members: list[tuple[str | zipfile.ZipInfo, bytes]],
    method: int = zipfile.ZIP_DEFLATED,
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we build
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def tar_info(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _cd_entries(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, name) of each central directory entry of a zip without comment."""
    eocd = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack_from("<II", data, eocd + 12)
    out, pos = [], offset
    while pos < offset + size:
        n_name, n_extra, n_comment = struct.unpack_from("<HHH", data, pos + 28)
        out.append((pos, data[pos + 46 : pos + 46 + n_name]))
        pos += 46 + n_name + n_extra + n_comment
    return out


def patch_cd(path: Path, name: bytes, field: int, value: int) -> None:
    """Set a 2-byte field of the central directory entry of ``name`` (flags 8, method 10)."""
    data = bytearray(path.read_bytes())
    for pos, entry_name in _cd_entries(bytes(data)):
        if entry_name == name:
            struct.pack_into("<H", data, pos + field, value)
    path.write_bytes(bytes(data))


def overlap_zip(path: Path) -> None:
    """good.txt and a.txt, plus a second central-directory entry (b.txt) pointing at a.txt's
    local header: the 'overlapping entries' bomb in its simplest form."""
    write_zip(path, [GOOD, ("a.txt", b"a" * 500)])
    data = path.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    entries = _cd_entries(data)
    cd_start, cd_end = entries[0][0], eocd
    a_pos = next(pos for pos, name in entries if name == b"a.txt")
    a_entry = data[a_pos:cd_end]  # the last entry runs to the EOCD
    dup = a_entry.replace(b"a.txt", b"b.txt")
    count, size = struct.unpack_from("<HI", data, eocd + 10)
    new_eocd = bytearray(data[eocd:])
    struct.pack_into("<HHI", new_eocd, 8, count + 1, count + 1, size + len(dup))
    path.write_bytes(data[:cd_start] + data[cd_start:cd_end] + dup + bytes(new_eocd))


def nul_zip(path: Path) -> None:
    write_zip(path, [GOOD, ("aXb.txt", b"x")])
    path.write_bytes(path.read_bytes().replace(b"aXb.txt", b"a\x00b.txt"))


def unix_zip(mode: int, name: str, data: bytes) -> Callable[[Path], object]:
    def build(path: Path) -> None:
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = mode << 16
        write_zip(path, [GOOD, (info, data)])

    return build


def zip_of(
    *members: tuple[str, bytes], method: int = zipfile.ZIP_DEFLATED
) -> Callable[[Path], object]:
    return lambda path: write_zip(path, [GOOD, *members], method)


def tar_of(*entries: tuple[tarfile.TarInfo, bytes], gz: bool = False) -> Callable[[Path], object]:
    return lambda path: write_tar(path, [tar_info(*GOOD), *entries], gz)


def zip_patched(name: str, field: int, value: int) -> Callable[[Path], object]:
    def build(path: Path) -> None:
        write_zip(path, [GOOD, (name, b"secret data")])
        patch_cd(path, name.encode(), field, value)

    return build


def nul_tar(path: Path) -> None:
    info, data = tar_info("placeholder.txt", b"x")
    info.pax_headers = {"path": "a\x00b.txt"}
    write_tar(path, [tar_info(*GOOD), (info, data)])


def garbage_after_first_member(path: Path) -> None:
    """A valid first member, then a damaged header: tarfile alone would end the listing there
    silently, as if the archive were complete."""
    write_tar(path, [tar_info(*GOOD)])
    data = path.read_bytes()
    path.write_bytes(data[:1024] + b"damaged header " * 40)


def truncated(build: Callable[[Path], object]) -> Callable[[Path], object]:
    def cut(path: Path) -> None:
        build(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return cut


BIG = os.urandom(200_000)  # stored or not, random data keeps a ratio near 1
ZEROS = bytes(1_000_000)  # bzip2 makes ~50 bytes of this: a ratio of ~20,000

# (id, file name, builder, code, member named in the finding (None: the archive itself))
HOSTILE: list[tuple[str, str, Callable[[Path], object], str, str | None]] = [
    ("zip-absolute", "x.zip", zip_of(("/etc/passwd", b"x")), "ARCHIVE_UNSAFE_PATH", "/etc/passwd"),
    (
        "tar-absolute",
        "x.tar",
        tar_of(tar_info("/etc/passwd", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        "/etc/passwd",
    ),
    ("zip-dotdot", "x.zip", zip_of(("../x", b"x")), "ARCHIVE_UNSAFE_PATH", "../x"),
    ("tar-dotdot", "x.tar", tar_of(tar_info("../x", b"x")), "ARCHIVE_UNSAFE_PATH", "../x"),
    ("zip-inner-dotdot", "x.zip", zip_of(("a/../../x", b"x")), "ARCHIVE_UNSAFE_PATH", "a/../../x"),
    (
        "tgz-inner-dotdot",
        "x.tgz",
        tar_of(tar_info("a/../../x", b"x"), gz=True),
        "ARCHIVE_UNSAFE_PATH",
        "a/../../x",
    ),
    ("zip-backslash", "x.zip", zip_of(("..\\x", b"x")), "ARCHIVE_UNSAFE_PATH", "..\\x"),
    ("tar-backslash", "x.tar", tar_of(tar_info("a\\b", b"x")), "ARCHIVE_UNSAFE_PATH", "a\\b"),
    ("zip-drive-letter", "x.zip", zip_of(("C:/x", b"x")), "ARCHIVE_UNSAFE_PATH", "C:/x"),
    ("zip-nul", "x.zip", nul_zip, "ARCHIVE_UNSAFE_PATH", "a\\x00b.txt"),
    ("tar-nul", "x.tar", nul_tar, "ARCHIVE_UNSAFE_PATH", "a\\x00b.txt"),
    (
        "tar-control-char",
        "x.tar",
        tar_of(tar_info("a\x1b[31mb", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        "a\\x1b[31mb",
    ),
    (
        "tar-symlink",
        "x.tar",
        tar_of(tar_info("link", kind=tarfile.SYMTYPE, link="/etc/passwd")),
        "ARCHIVE_LINK",
        "link",
    ),
    (
        "zip-symlink",
        "x.zip",
        unix_zip(stat.S_IFLNK | 0o777, "link", b"/etc/passwd"),
        "ARCHIVE_LINK",
        "link",
    ),
    (
        "tar-hardlink",
        "x.tar",
        tar_of(tar_info("hl", kind=tarfile.LNKTYPE, link="../../etc/passwd")),
        "ARCHIVE_LINK",
        "hl",
    ),
    (
        "tar-char-device",
        "x.tar",
        tar_of(tar_info("dev", kind=tarfile.CHRTYPE)),
        "ARCHIVE_SPECIAL_FILE",
        "dev",
    ),
    (
        "zip-char-device",
        "x.zip",
        unix_zip(stat.S_IFCHR | 0o644, "dev", b""),
        "ARCHIVE_SPECIAL_FILE",
        "dev",
    ),
    (
        "tar-fifo",
        "x.tar",
        tar_of(tar_info("fifo", kind=tarfile.FIFOTYPE)),
        "ARCHIVE_SPECIAL_FILE",
        "fifo",
    ),
    (
        "zip-duplicate",
        "x.zip",
        zip_of(("d.txt", b"1"), ("d.txt", b"2")),
        "ARCHIVE_DUPLICATE_MEMBER",
        "d.txt",
    ),
    (
        "tar-duplicate",
        "x.tar",
        tar_of(tar_info("d.txt", b"1"), tar_info("d.txt", b"2")),
        "ARCHIVE_DUPLICATE_MEMBER",
        "d.txt",
    ),
    (
        "tar-duplicate-normalized",
        "x.tar",
        tar_of(tar_info("./d.txt", b"1"), tar_info("d.txt", b"2")),
        "ARCHIVE_DUPLICATE_MEMBER",
        "./d.txt",
    ),
    (
        "zip-too-large",
        "x.zip",
        zip_of(("big.bin", BIG), method=zipfile.ZIP_STORED),
        "ARCHIVE_TOO_LARGE",
        "big.bin",
    ),
    ("tar-too-large", "x.tar", tar_of(tar_info("big.bin", BIG)), "ARCHIVE_TOO_LARGE", "big.bin"),
    (
        "zip-bomb-ratio",
        "x.zip",
        zip_of(("zeros.bin", ZEROS), method=zipfile.ZIP_BZIP2),
        "ARCHIVE_TOO_LARGE",
        "zeros.bin",
    ),
    ("zip-overlapping-entries", "x.zip", overlap_zip, "ARCHIVE_TOO_LARGE", "a.txt"),
    ("zip-encrypted", "x.zip", zip_patched("enc.txt", 8, 0x1), "ARCHIVE_ENCRYPTED", "enc.txt"),
    ("zip-deflate64", "x.zip", zip_patched("d64.txt", 10, 9), "ARCHIVE_UNSUPPORTED", "d64.txt"),
    ("zip-truncated", "x.zip", truncated(zip_of(("big.bin", BIG))), "ARCHIVE_UNREADABLE", None),
    (
        "tar-truncated",
        "x.tar",
        truncated(tar_of(tar_info("big.bin", BIG))),
        "ARCHIVE_UNREADABLE",
        None,
    ),
    (
        "tgz-truncated",
        "x.tar.gz",
        truncated(tar_of(tar_info("big.bin", BIG), gz=True)),
        "ARCHIVE_UNREADABLE",
        None,
    ),
    ("tar-damaged-header", "x.tar", garbage_after_first_member, "ARCHIVE_UNREADABLE", None),
    ("not-a-zip", "x.zip", lambda p: p.write_text("hello, I am text"), "ARCHIVE_UNREADABLE", None),
    (
        "not-a-tgz",
        "x.tgz",
        lambda p: p.write_bytes(b"\x1f\x8b but not gzip"),
        "ARCHIVE_UNREADABLE",
        None,
    ),
]


@pytest.fixture
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Caps small enough to trip with kilobytes; the ratio check applies from 10 kB."""
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 100_000)
    monkeypatch.setattr(archives, "RATIO_MIN_BYTES", 10_000)


@pytest.mark.usefixtures("small_caps")
@pytest.mark.parametrize(
    ("name", "build", "code", "member"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_archive_is_refused(
    tmp_path: Path, name: str, build: Callable[[Path], object], code: str, member: str | None
) -> None:
    path = tmp_path / name
    build(path)
    label = str(path)
    members, findings = list_members(label)
    assert {f.code for f in findings} == {code}
    expected_file = label if member is None else f"{label}!{member}"
    assert expected_file in {f.file for f in findings}
    names = [m.name for m in members]
    if member is None:  # the whole archive is refused
        assert names == []
    else:  # only the hostile member: the good one still comes through
        assert names == ["good.txt"]
        assert members[0] == Member("good.txt", len(GOOD[1]))


def test_overlapping_entries_name_both_members(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    overlap_zip(path)
    _, findings = list_members(str(path))
    assert sorted(f.file for f in findings) == [f"{path}!a.txt", f"{path}!b.txt"]


def test_bomb_ratio_message(tmp_path: Path, small_caps: None) -> None:
    path = write_zip(tmp_path / "x.zip", [("zeros.bin", ZEROS)], zipfile.ZIP_BZIP2)
    _, [found] = list_members(str(path))
    assert "ratio" in found.message


@pytest.mark.parametrize(
    "method",
    [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["deflate", "bzip2", "lzma"],
)
def test_real_black_frames_are_not_a_bomb(tmp_path: Path, sample_dir: Path, method: int) -> None:
    """The published game's all-zero frames.npy compresses ~1000:1 to ~90,000:1; a zip of a
    real export must still be accepted."""
    files = sorted(sample_dir.iterdir())
    path = write_zip(tmp_path / "real.zip", [(f.name, f.read_bytes()) for f in files], method)
    members, findings = list_members(str(path))
    assert findings == []
    assert [(m.name, m.size) for m in members] == [(f.name, f.stat().st_size) for f in files]


@pytest.mark.parametrize("cap", ["MAX_TOTAL_BYTES", "MAX_MEMBERS"])
@pytest.mark.parametrize("name", ["x.zip", "x.tar", "x.tar.gz"])
def test_archive_wide_caps_refuse_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: str, name: str
) -> None:
    monkeypatch.setattr(archives, cap, 2)
    entries = [("a.txt", b"aa"), ("b.txt", b"bb"), ("c.txt", b"cc")]
    path = tmp_path / name
    if name.endswith(".zip"):
        write_zip(path, list(entries))
    else:
        write_tar(path, [tar_info(n, d) for n, d in entries], gz=name.endswith(".gz"))
    members, findings = list_members(str(path))
    assert members == []
    assert [(f.code, f.file) for f in findings] == [("ARCHIVE_TOO_LARGE", str(path))]


@pytest.mark.parametrize("name", ["x.zip", "x.tar", "x.tgz"])
def test_good_archive_lists_files_and_skips_directories(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".zip"):
        write_zip(path, [("d/", b""), ("d/a.txt", b"abc"), ("b.bin", b"\0" * 10)])
    else:
        write_tar(
            path,
            [
                tar_info("d", kind=tarfile.DIRTYPE),
                tar_info("d/a.txt", b"abc"),
                tar_info("b.bin", b"\0" * 10),
            ],
            gz=name.endswith("tgz"),
        )
    members, findings = list_members(str(path))
    assert findings == []
    assert members == [Member("d/a.txt", 3), Member("b.bin", 10)]


def test_dot_slash_names_are_kept_as_stored(tmp_path: Path) -> None:
    """``tar -C dir .`` writes ``./name``; open_file looks names up verbatim, so keep them."""
    path = write_tar(
        tmp_path / "x.tar", [tar_info(".", kind=tarfile.DIRTYPE), tar_info("./a/b.txt", b"1")]
    )
    members, findings = list_members(str(path))
    assert (members, findings) == ([Member("./a/b.txt", 1)], [])
    assert normalize_member_name(members[0].name) == "a/b.txt"


def test_missing_archive_is_unreadable(tmp_path: Path) -> None:
    label = str(tmp_path / "nope.zip")
    members, findings = list_members(label)
    assert members == [] and [(f.code, f.file) for f in findings] == [("ARCHIVE_UNREADABLE", label)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.zip", True),
        ("A.ZIP", True),
        ("a.tar", True),
        ("a.tar.gz", True),
        ("a.TGZ", True),
        ("a.gz", False),
        ("a.tar.bz2", False),
        ("zip", False),
        ("a.npy", False),
        ("a.zip.txt", False),
    ],
    ids=lambda v: str(v),
)
def test_is_archive(name: str, expected: bool) -> None:
    assert is_archive(name) is expected


def _valid_archive(kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("d/r_1_metadata.json", b"{}" * 50)
            zf.writestr("d/r_1_frames.npy", bytes(3000))
    else:
        with tarfile.open(fileobj=buf, mode="w:gz" if kind == "tar.gz" else "w") as tf:
            for name, data in [
                ("d/r_1_metadata.json", b"{}" * 50),
                ("d/r_1_frames.npy", bytes(3000)),
            ]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


VALID = {kind: _valid_archive(kind) for kind in ("zip", "tar", "tar.gz")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(VALID)), data=st.data())
def test_damaged_archives_never_raise(
    tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    """Flipped bytes and cuts anywhere in a valid archive give findings, never an exception."""
    raw = bytearray(VALID[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path_factory.getbasetemp() / f"damaged.{kind}"
    path.write_bytes(bytes(raw))
    members, findings = list_members(str(path))
    assert all(f.code in CODES for f in findings)
    assert all(m.size >= 0 and normalize_member_name(m.name) for m in members)


def _listed_within_bounds(path: Path, size: int) -> tuple[list[Member], list[str]]:
    """``list_members`` of ``path``: never an exception, and the listing holds no more than
    the data and a bounded read's piece, whatever sizes the headers declare."""
    tracemalloc.start()
    try:
        members, findings = list_members(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 3 * size + READ_PIECE + (256 << 10), (peak, size)
    assert all(f.code in CODES for f in findings)
    assert all(m.size >= 0 and normalize_member_name(m.name) for m in members)
    return members, [f.code for f in findings]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gz=st.booleans(),
    header=st.sampled_from(HEADERS),
    field=st.sampled_from(sorted(FIELDS)),
    value=st.binary(max_size=12)
    | st.sampled_from([b"-1", b"\x80" + b"\xff" * 11, b"\x80" + bytes(3) + b"\xff" * 8, b"7" * 11]),
    pax=pax_records,
)
def test_damaged_tar_headers_give_findings(
    tmp_path_factory: pytest.TempPathFactory,
    gz: bool,
    header: int,
    field: str,
    value: bytes,
    pax: list[bytes],
) -> None:
    """Header fields rewritten with their checksum made right (huge, negative and garbage
    sizes reach tarfile's parsers), and pax records with random lengths and keys: findings,
    never an exception (an OverflowError from a size beyond a C integer included), and no
    read as large as a size claims. (The shard reader's side: tests/formats.)"""
    start, width = FIELDS[field]
    raw = bytearray(SHARD if not pax else pax_member(b"".join(pax)) + shard_tar(MEMBERS))
    raw[header + start : header + start + width] = value[:width].ljust(width, b"\0")
    raw[header : header + 512] = fix_checksum(bytes(raw[header : header + 512]))
    data = gzip.compress(bytes(raw), mtime=0) if gz else bytes(raw)
    path = tmp_path_factory.getbasetemp() / ("damaged.tar.gz" if gz else "damaged.tar")
    path.write_bytes(data)
    _listed_within_bounds(path, len(raw))


def test_a_pax_size_beyond_the_file_is_unreadable_not_a_huge_read(tmp_path: Path) -> None:
    """A pax header that claims 8 GiB (or more than a C integer holds) in a 4 KiB file."""
    for size in (b"%011o\0" % (8**11 - 1), b"\x80" + b"\xff" * 11):
        raw = bytearray(SHARD)
        raw[124:136] = size
        raw[0:512] = fix_checksum(bytes(raw[0:512]))
        for name, data in [("p.tar", bytes(raw)), ("p.tgz", gzip.compress(bytes(raw)))]:
            (tmp_path / name).write_bytes(data)
            members, codes = _listed_within_bounds(tmp_path / name, len(raw))
            assert members == [] and codes == ["ARCHIVE_UNREADABLE"]
