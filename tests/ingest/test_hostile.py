"""Hostile input, end to end: every case goes through ``run_convert`` or the ``convert`` command.

Each case builds its hostile input under ``tmp_path/in`` (nothing is shipped: archives, .npy
files, JSON lines and names are all made here), next to a good bundle, and converts the whole
folder into ``tmp_path/out``. Every case asserts:

- the finding that refuses the input: its code and its location (the file's name, or
  ``archive!member``, and the line or frame);
- that the good bundles beside it still convert, and that every converted session verifies
  against its sources bit for bit;
- that nothing was written anywhere but under ``out/``: the whole ``tmp_path`` tree (names,
  kinds, bytes, modes and mtimes of files, listings and mtimes of folders, link targets) is
  the same after the run, the sources included; the process's temporary folder and working
  directory stay empty;
- that ``out/`` holds only the dataset layout, under safe session names.

What ``test_archives``, ``test_npy`` and ``test_jsonl`` check on the parsers alone is not
repeated here: this file proves that the refusals hold through discovery, validation,
conversion and the catalog.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.ingest.bundle import ROLES
from reacture_convert.output.naming import is_safe_name, session_name
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.testing.synth import BundleSpec, write_bundle, write_legacy_bundle
from tests.helpers.paths import REPO

CONVERT = REPO / ".venv" / "bin" / "reacture-convert"

GOOD = "reacture_1795600000001"  # a good bundle in in/good, beside every case
INNER = "reacture_1795600000002"  # a good bundle inside the hostile archives, under ok/
BAD = "reacture_1795600000003"  # the bundle a case makes hostile
N = 3  # frames of every bundle here
FRAME = 128 * 128 * 3
OUT_TOP = {".lock", "catalog.parquet", "zarr", "rows", "frames", "README.md"}


# --- the bundles ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_bytes(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, bytes]]:
    """``bundle_bytes(prefix)``: the five files of a good bundle of that prefix, by role."""
    cache: dict[str, dict[str, bytes]] = {}
    root = tmp_path_factory.mktemp("bundles")

    def get(prefix: str) -> dict[str, bytes]:
        if prefix not in cache:
            folder = write_bundle(
                root / f"b{len(cache)}", BundleSpec(n_frames=N, seed=len(cache), prefix=prefix)
            )
            cache[prefix] = {role: (folder / f"{prefix}_{role}").read_bytes() for role in ROLES}
        return dict(cache[prefix])

    return get


Edit = bytes | Callable[[bytes], bytes]


@dataclass
class Ctx:
    """What a case builder gets: the input folder and the good bundles' bytes."""

    inp: Path
    files: Callable[[str], dict[str, bytes]]

    def bundle(self, prefix: str = BAD, **edits: Edit) -> dict[str, bytes]:
        """A bundle's files by role; ``frames=...`` etc. replace (bytes) or edit (a function)."""
        files = self.files(prefix)
        for key, edit in edits.items():
            role = _role(key)
            files[role] = edit(files[role]) if callable(edit) else edit
        return files

    def folder(self, name: str, prefix: str = BAD, **edits: Edit) -> Path:
        """Write a bundle into ``in/<name>``."""
        folder = self.inp / name
        folder.mkdir(parents=True, exist_ok=True)
        for role, data in self.bundle(prefix, **edits).items():
            (folder / f"{prefix}_{role}").write_bytes(data)
        return folder

    def legacy(self, name: str, edit: Callable[[bytes], bytes], prefix: str = BAD) -> None:
        """Write a bundle as the game's earlier four-file export into ``in/<name>``, with its
        frames.json edited."""
        src = self.folder(f"../src-{name}", prefix)
        dest = write_legacy_bundle(src, self.inp / name)
        shutil.rmtree(src)
        path = dest / f"{prefix}_frames.json"
        path.write_bytes(edit(path.read_bytes()))

    def members(
        self, prefix: str = INNER, folder: str = "ok", **edits: Edit
    ) -> list[tuple[str, bytes]]:
        """A bundle as archive members ``<folder>/<prefix>_<role>``."""
        return [
            (f"{folder}/{prefix}_{role}", data)
            for role, data in self.bundle(prefix, **edits).items()
        ]


def _role(key: str) -> str:
    return {
        "meta": "metadata.json",
        "data": "data.jsonl",
        "frames": "frames.npy",
        "ts": "timestamps.npy",
        "readme": "README.md",
    }[key]


# --- archive builders -----------------------------------------------------------------------


def write_zip(
    path: Path,
    members: list[tuple[str | zipfile.ZipInfo, bytes]],
    method: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we build
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path.read_bytes()


def tinfo(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], gz: bool = False) -> None:
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def regular(members: list[tuple[str, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [tinfo(name, data) for name, data in members]


def cd_entries(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, name) of each central directory entry of a zip without a comment."""
    eocd = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack_from("<II", data, eocd + 12)
    out, pos = [], offset
    while pos < offset + size:
        n_name, n_extra, n_comment = struct.unpack_from("<HHH", data, pos + 28)
        out.append((pos, data[pos + 46 : pos + 46 + n_name]))
        pos += 46 + n_name + n_extra + n_comment
    return out


def patch_cd(path: Path, name: str, fmt: str, offset: int, value: int) -> None:
    """Set one field of the central directory entry of ``name`` (flags 8, method 10, size 24)."""
    data = bytearray(path.read_bytes())
    hits = [pos for pos, entry in cd_entries(bytes(data)) if entry == name.encode()]
    assert hits, name
    for pos in hits:
        struct.pack_into(fmt, data, pos + offset, value)
    path.write_bytes(bytes(data))


def unix_member(name: str, mode: int, data: bytes = b"") -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info, data


def zip_case(
    *extra: tuple[str | zipfile.ZipInfo, bytes],
    name: str = "x.zip",
    method: int = zipfile.ZIP_DEFLATED,
) -> Callable[[Ctx], None]:
    """The good INNER bundle under ok/ plus the hostile ``extra`` members."""

    def build(ctx: Ctx) -> None:
        write_zip(ctx.inp / name, [*ctx.members(), *extra], method)

    return build


def tar_case(*extra: tuple[tarfile.TarInfo, bytes], name: str = "x.tar") -> Callable[[Ctx], None]:
    def build(ctx: Ctx) -> None:
        write_tar(ctx.inp / name, [*regular(ctx.members()), *extra], gz=name.endswith("gz"))

    return build


def zip_patched(member: str, fmt: str, offset: int, value: int) -> Callable[[Ctx], None]:
    """INNER under ok/ and BAD under bad/, with one field of BAD's ``member`` patched."""

    def build(ctx: Ctx) -> None:
        path = ctx.inp / "x.zip"
        write_zip(path, [*ctx.members(), *ctx.members(BAD, "bad")])
        patch_cd(path, f"bad/{BAD}_{member}", fmt, offset, value)

    return build


def zip_nul_name(ctx: Ctx) -> None:
    path = ctx.inp / "x.zip"
    write_zip(path, [*ctx.members(), (f"bad/{BAD}X_metadata.json", b"{}")])
    path.write_bytes(path.read_bytes().replace(f"{BAD}X".encode(), f"{BAD}\0".encode()))


def tar_pax_name(name: str) -> Callable[[Ctx], None]:
    """A member whose real name (a pax ``path`` record) is ``name``: NUL, newline, ..."""

    def build(ctx: Ctx) -> None:
        info, data = tinfo("placeholder", b"{}")
        info.pax_headers = {"path": name}
        write_tar(ctx.inp / "x.tar", [*regular(ctx.members()), (info, data)])

    return build


def zip_bomb(ctx: Ctx) -> None:
    """A member that declares 2 GiB + 5 bytes for 11 compressed bytes: the size is faked in the
    central directory, so the test writes kilobytes."""
    path = ctx.inp / "x.zip"
    write_zip(path, [*ctx.members(), (f"bomb/{BAD}_frames.npy", bytes(1000))])
    patch_cd(path, f"bomb/{BAD}_frames.npy", "<I", 24, 2**31 + 5)


def zip_overlapping(ctx: Ctx) -> None:
    """A second central directory entry (bad/..._frames.npy) pointing at INNER's frames data."""
    path = ctx.inp / "x.zip"
    data = write_zip(path, ctx.members())
    eocd = data.rindex(b"PK\x05\x06")
    entries = cd_entries(data)
    target = f"ok/{INNER}_frames.npy".encode()
    pos = next(p for p, n in entries if n == target)
    end = next((p for p, _ in entries if p > pos), eocd)
    dup = data[pos:end].replace(target, f"ok/{BAD}_framez.npy".encode())
    count, size = struct.unpack_from("<HI", data, eocd + 10)
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHI", tail, 8, count + 1, count + 1, size + len(dup))
    path.write_bytes(data[:eocd] + dup + bytes(tail))


def truncated_archive(name: str) -> Callable[[Ctx], None]:
    def build(ctx: Ctx) -> None:
        path = ctx.inp / name
        members = ctx.members()
        if name.endswith(".zip"):
            write_zip(path, members)
        else:
            write_tar(path, regular(members), gz=name.endswith("gz"))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])

    return build


def tar_declared_huge(ctx: Ctx) -> None:
    """A header that declares a 100 GiB member whose data is not there."""
    info, _ = tinfo(f"huge/{BAD}_frames.npy")
    info.size = 100 * 2**30
    path = ctx.inp / "x.tar"
    write_tar(path, regular(ctx.members()))
    data = path.read_bytes().rstrip(b"\0")
    data += b"\0" * (-len(data) % 512)
    path.write_bytes(data + info.tobuf(tarfile.GNU_FORMAT))


def tar_dir_named_like_a_file(gz: bool) -> Callable[[Ctx], None]:
    """BAD under bad/, but its frames.npy is a folder (holding a file)."""

    def build(ctx: Ctx) -> None:
        entries = regular(ctx.members())
        for name, data in ctx.members(BAD, "bad"):
            if name.endswith("_frames.npy"):
                entries += [tinfo(name, kind=tarfile.DIRTYPE), tinfo(f"{name}/x", b"x")]
            else:
                entries.append(tinfo(name, data))
        write_tar(ctx.inp / ("x.tgz" if gz else "x.tar"), entries, gz=gz)

    return build


def zip_dir_named_like_a_file(ctx: Ctx) -> None:
    members = [(n, d) for n, d in ctx.members(BAD, "bad") if not n.endswith("_frames.npy")]
    write_zip(ctx.inp / "x.zip", [*ctx.members(), *members, (f"bad/{BAD}_frames.npy/", b"")])


def zip_damaged_member(ctx: Ctx) -> None:
    """BAD's frames.npy under bad/ has zeroed bytes in its deflate stream (a bad CRC or a
    broken stream): the listing is fine, reading the member is not."""
    path = ctx.inp / "x.zip"
    data = bytearray(write_zip(path, [*ctx.members(), *ctx.members(BAD, "bad")]))
    start = data.index(f"bad/{BAD}_frames.npy".encode()) + 100
    data[start : start + 40] = bytes(40)
    path.write_bytes(bytes(data))


def zip_lone_damaged_member(ctx: Ctx) -> None:
    """Only BAD's frames.npy, damaged, under bad/: a bundle missing four files whose one
    member cannot be read."""
    path = ctx.inp / "x.zip"
    frames = [(n, d) for n, d in ctx.members(BAD, "bad") if n.endswith("_frames.npy")]
    data = bytearray(write_zip(path, [*ctx.members(), *frames]))
    start = data.index(f"bad/{BAD}_frames.npy".encode()) + 100
    data[start : start + 40] = bytes(40)
    path.write_bytes(bytes(data))


def zip_bzip2_damaged(ctx: Ctx) -> None:
    """As above with bzip2, whose decoder raises a bare OSError: still bad input, not I/O."""
    path = ctx.inp / "x.zip"
    data = bytearray(write_zip(path, [*ctx.members(), *ctx.members(BAD, "bad")], zipfile.ZIP_BZIP2))
    start = data.index(f"bad/{BAD}_data.jsonl".encode()) + 80
    data[start : start + 40] = bytes(40)
    path.write_bytes(bytes(data))


def zip_directory_offset_past_data(ctx: Ctx) -> None:
    """The end record says the central directory starts 5000 bytes later than it does: every
    member's offset, corrected by zipfile, points before the start of the file."""
    path = ctx.inp / "x.zip"
    data = bytearray(write_zip(path, ctx.members()))
    eocd = data.rindex(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<I", data, eocd + 16)
    struct.pack_into("<I", data, eocd + 16, offset + 5000)
    path.write_bytes(bytes(data))


def zip_short_member(ctx: Ctx) -> None:
    """BAD's timestamps.npy is stored; its central directory declares 4 bytes more than the
    stored data holds."""
    path = ctx.inp / "x.zip"
    write_zip(path, [*ctx.members(), *ctx.members(BAD, "bad")], zipfile.ZIP_STORED)
    size = len(ctx.bundle()["timestamps.npy"])
    patch_cd(path, f"bad/{BAD}_timestamps.npy", "<I", 24, size + 4)
    patch_cd(path, f"bad/{BAD}_timestamps.npy", "<I", 20, size + 4)


def nested_archive(ctx: Ctx) -> None:
    inner = ctx.inp / "inner.zip"
    write_zip(inner, ctx.members(BAD, "bad"))
    write_zip(ctx.inp / "x.zip", [*ctx.members(), ("nested/inner.zip", inner.read_bytes())])
    inner.unlink()


# --- .npy builders --------------------------------------------------------------------------


def npy(header: str, data: bytes, *, version: tuple[int, int] = (1, 0), game: bool = True) -> bytes:
    """An .npy file with ``header`` as its dict text, padded like its writer pads it."""
    magic = "\x93NUMPY".encode() if game else b"\x93NUMPY"
    size = 4 if version[0] >= 2 else 2
    text = header.encode("latin1")
    if game:
        text = text.ljust(118)
    else:
        pad = -(len(magic) + 2 + size + len(text) + 1) % 64
        text += b" " * pad + b"\n"
    return magic + bytes(version) + len(text).to_bytes(size, "little") + text + data


def frames_header(
    shape: str = f"({N}, 128, 128, 3)", descr: str = "'|u1'", fortran: str = "false"
) -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def frames_data(files: bytes) -> bytes:
    return files[129:]


def frames_with(**kw: str) -> Callable[[bytes], bytes]:
    return lambda old: npy(frames_header(**kw), frames_data(old))


def ts_with(descr: str = "'<f4'", shape: str = f"({N},)") -> Callable[[bytes], bytes]:
    return lambda old: npy(
        f"{{'descr': {descr}, 'fortran_order': false, 'shape': {shape}, }}", old[129:]
    )


class _Pwn:
    """Unpickling this creates a folder: proof that a pickle payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def pickled_object_array(marker: Path, n: int) -> bytes:
    """What ``np.save(allow_pickle=True)`` writes for an object array of ``n`` payloads."""
    arr = np.empty(n, dtype=object)
    for i in range(n):
        arr[i] = _Pwn(marker)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    data = buf.getvalue()
    assert b"'descr': '|O'" in data and b"posix" in data  # a real pickle, after an '|O' header
    return data


def pickle_case(role: str) -> Callable[[Ctx], None]:
    def build(ctx: Ctx) -> None:
        ctx.folder("bad", **{role: pickled_object_array(ctx.inp.parent / "pwned", N)})

    return build


def npy_case(**edits: Edit) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.folder("bad", **edits)


# --- JSON builders --------------------------------------------------------------------------


def line_edit(k: int, fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """Replace line ``k`` (1-based) of a data.jsonl by ``fn(line)``."""

    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[k - 1] = fn(lines[k - 1])
        return b"\n".join(lines)

    return edit


def first_periodic_line(data: bytes) -> int:
    return next(i for i, line in enumerate(data.split(b"\n"), 1) if b"visual_frame_path" in line)


def periodic_edit(fn: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return lambda data: line_edit(first_periodic_line(data), fn)(data)


def jsonl_case(fn: Callable[[bytes], bytes], k: int = 3) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.folder("bad", data=line_edit(k, fn))


def add_field(text: bytes) -> Callable[[bytes], bytes]:
    """Insert ``text`` as the first member of a line's top-level object."""
    return lambda line: b"{" + text + b"," + line[1:]


def meta_case(edit: Edit) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.folder("bad", meta=edit)


def meta_add(text: bytes) -> Callable[[bytes], bytes]:
    return lambda meta: b"{" + text + b"," + meta.lstrip()[1:]


# --- name builders --------------------------------------------------------------------------


def prefix_case(prefix: str) -> Callable[[Ctx], None]:
    """BAD's files (metadata session_id included) under a hostile file prefix."""
    return lambda ctx: ctx.folder("n", prefix)


def two_prefixes(a: str, b: str) -> Callable[[Ctx], None]:
    def build(ctx: Ctx) -> None:
        ctx.folder("n1", a)
        ctx.folder("n2", b)

    return build


def same_prefix_other_bytes(ctx: Ctx) -> None:
    """A different bundle under GOOD's own prefix, in a folder sorted after in/good."""
    folder = ctx.inp / "zz"
    folder.mkdir()
    for role, data in ctx.files(BAD).items():
        (folder / f"{GOOD}_{role}").write_bytes(data)


def crafted_collision(ctx: Ctx) -> None:
    """A safe prefix chosen to equal the name derived from an unsafe one: one name, two
    bundles; the first (by source) wins, the other is a conflict and writes nothing."""
    unsafe = "reacture.1795600000003"
    ctx.folder("n1", unsafe)
    folder = ctx.inp / "n2"
    folder.mkdir()
    for role, data in ctx.files(INNER).items():
        (folder / f"{session_name(unsafe)}_{role}").write_bytes(data)


def fifo_named_like_a_file(ctx: Ctx) -> None:
    os.mkfifo(ctx.inp / f"{BAD}_frames.npy")


def link_out(ctx: Ctx) -> None:
    outside = ctx.inp.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (ctx.inp / f"{BAD}_metadata.json").symlink_to(outside / "secret")


def dir_link_out(ctx: Ctx) -> None:
    outside = ctx.inp.parent / "outside"
    ctx.inp.mkdir(exist_ok=True)
    for role, data in ctx.files(BAD).items():
        outside.mkdir(exist_ok=True)
        (outside / f"{BAD}_{role}").write_bytes(data)
    (ctx.inp / "linked").symlink_to(outside, target_is_directory=True)


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """``file`` is the finding's location with ``{in}`` for the input folder; ``converted``
    lists the prefixes that must convert besides GOOD (INNER for member-level refusals)."""

    id: str
    build: Callable[[Ctx], None]
    code: str | None
    file: str
    line: int | None = None
    frame: int | None = None
    converted: tuple[str, ...] = ()
    not_converted: tuple[str, ...] = (BAD,)
    via: str = "lib"  # lib: run_convert; cli: the convert command in-process; proc: a process
    exit_code: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def member_case(
    id: str, build: Callable[[Ctx], None], code: str, member: str, archive: str = "x.zip", **kw: Any
) -> Case:
    kw.setdefault("converted", (INNER,))
    return Case(id, build, code, f"{{in}}/{archive}!{member}", **kw)


def archive_case(id: str, build: Callable[[Ctx], None], code: str, archive: str) -> Case:
    return Case(id, build, code, f"{{in}}/{archive}", not_converted=(INNER,))


MD, JL, FR, TS = (
    f"{BAD}_{r}" for r in ("metadata.json", "data.jsonl", "frames.npy", "timestamps.npy")
)
DEEP = 100_000
EXEC = "__import__('os').system('touch pwned')"

ARCHIVES = [
    member_case(
        "zip-absolute",
        zip_case((f"/abs/{BAD}_frames.npy", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        f"/abs/{BAD}_frames.npy",
    ),
    member_case(
        "tar-absolute",
        tar_case(tinfo(f"/tmp/{BAD}_frames.npy", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        f"/tmp/{BAD}_frames.npy",
        archive="x.tar",
    ),
    member_case(
        "zip-dotdot",
        zip_case((f"../{BAD}_frames.npy", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        f"../{BAD}_frames.npy",
    ),
    member_case(
        "tgz-inner-dotdot",
        tar_case(tinfo(f"a/../../{BAD}_data.jsonl", b"x"), name="x.tgz"),
        "ARCHIVE_UNSAFE_PATH",
        f"a/../../{BAD}_data.jsonl",
        archive="x.tgz",
    ),
    member_case(
        "zip-backslash-dotdot",
        zip_case((f"..\\..\\{BAD}_frames.npy", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        f"..\\..\\{BAD}_frames.npy",
    ),
    member_case(
        "zip-drive-letter",
        zip_case((f"C:/{BAD}_frames.npy", b"x")),
        "ARCHIVE_UNSAFE_PATH",
        f"C:/{BAD}_frames.npy",
    ),
    member_case(
        "tar-symlink-out",
        tar_case(tinfo(f"bad/{BAD}_frames.npy", kind=tarfile.SYMTYPE, link="/etc/passwd")),
        "ARCHIVE_LINK",
        f"bad/{BAD}_frames.npy",
        archive="x.tar",
    ),
    member_case(
        "tar-symlink-dotdot",
        tar_case(tinfo("bad", kind=tarfile.SYMTYPE, link="../..")),
        "ARCHIVE_LINK",
        "bad",
        archive="x.tar",
    ),
    member_case(
        "zip-symlink-out",
        zip_case(unix_member(f"bad/{BAD}_frames.npy", stat.S_IFLNK | 0o777, b"/etc/passwd")),
        "ARCHIVE_LINK",
        f"bad/{BAD}_frames.npy",
    ),
    member_case(
        "tar-hardlink-out",
        tar_case(tinfo(f"bad/{BAD}_frames.npy", kind=tarfile.LNKTYPE, link="../../../etc/passwd")),
        "ARCHIVE_LINK",
        f"bad/{BAD}_frames.npy",
        archive="x.tar",
    ),
    member_case(
        "tgz-hardlink-to-member",
        tar_case(
            tinfo(f"bad/{BAD}_frames.npy", kind=tarfile.LNKTYPE, link=f"ok/{INNER}_frames.npy"),
            name="x.tgz",
        ),
        "ARCHIVE_LINK",
        f"bad/{BAD}_frames.npy",
        archive="x.tgz",
    ),
    member_case(
        "tar-char-device",
        tar_case(tinfo(f"bad/{BAD}_frames.npy", kind=tarfile.CHRTYPE)),
        "ARCHIVE_SPECIAL_FILE",
        f"bad/{BAD}_frames.npy",
        archive="x.tar",
    ),
    member_case(
        "tar-block-device",
        tar_case(tinfo("bad/sda", kind=tarfile.BLKTYPE)),
        "ARCHIVE_SPECIAL_FILE",
        "bad/sda",
        archive="x.tar",
    ),
    member_case(
        "tar-fifo",
        tar_case(tinfo(f"bad/{BAD}_data.jsonl", kind=tarfile.FIFOTYPE)),
        "ARCHIVE_SPECIAL_FILE",
        f"bad/{BAD}_data.jsonl",
        archive="x.tar",
    ),
    member_case(
        "zip-fifo",
        zip_case(unix_member(f"bad/{BAD}_data.jsonl", stat.S_IFIFO | 0o644)),
        "ARCHIVE_SPECIAL_FILE",
        f"bad/{BAD}_data.jsonl",
    ),
    member_case(
        "zip-duplicate",
        zip_case((f"bad/{BAD}_README.md", b"1"), (f"bad/{BAD}_README.md", b"2")),
        "ARCHIVE_DUPLICATE_MEMBER",
        f"bad/{BAD}_README.md",
    ),
    member_case(
        "tar-duplicate-normalized",
        tar_case(tinfo(f"./bad/{BAD}_README.md", b"1"), tinfo(f"bad//{BAD}_README.md", b"2")),
        "ARCHIVE_DUPLICATE_MEMBER",
        f"./bad/{BAD}_README.md",
        archive="x.tar",
    ),
    member_case("zip-bomb-2GiB-declared", zip_bomb, "ARCHIVE_TOO_LARGE", f"bomb/{BAD}_frames.npy"),
    member_case(
        "zip-overlapping-entries",
        zip_overlapping,
        "ARCHIVE_TOO_LARGE",
        f"ok/{BAD}_framez.npy",
        converted=(),
        not_converted=(INNER,),
    ),
    member_case(
        "zip-encrypted",
        zip_patched("frames.npy", "<H", 8, 0x1),
        "ARCHIVE_ENCRYPTED",
        f"bad/{BAD}_frames.npy",
    ),
    member_case(
        "zip-unsupported-method",
        zip_patched("data.jsonl", "<H", 10, 9),
        "ARCHIVE_UNSUPPORTED",
        f"bad/{BAD}_data.jsonl",
    ),
    member_case(
        "zip-nul-in-name", zip_nul_name, "ARCHIVE_UNSAFE_PATH", f"bad/{BAD}\\x00_metadata.json"
    ),
    member_case(
        "tar-nul-in-name",
        tar_pax_name(f"bad/{BAD}\0_metadata.json"),
        "ARCHIVE_UNSAFE_PATH",
        f"bad/{BAD}\\x00_metadata.json",
        archive="x.tar",
    ),
    member_case(
        "tar-newline-in-name",
        tar_pax_name(f"bad/{BAD}\n_metadata.json"),
        "ARCHIVE_UNSAFE_PATH",
        f"bad/{BAD}\\n_metadata.json",
        archive="x.tar",
    ),
    member_case(
        "tar-escape-sequence-in-name",
        tar_pax_name(f"bad/\x1b[2J{BAD}_metadata.json"),
        "ARCHIVE_UNSAFE_PATH",
        f"bad/\\x1b[2J{BAD}_metadata.json",
        archive="x.tar",
    ),
    member_case(
        "zip-nested-archive", nested_archive, "ARCHIVE_NESTED", "nested/inner.zip", exit_code=0
    ),
    archive_case("zip-truncated", truncated_archive("x.zip"), "ARCHIVE_UNREADABLE", "x.zip"),
    archive_case("tar-truncated", truncated_archive("x.tar"), "ARCHIVE_UNREADABLE", "x.tar"),
    archive_case("tgz-truncated", truncated_archive("x.tar.gz"), "ARCHIVE_UNREADABLE", "x.tar.gz"),
    archive_case("tar-declares-100GiB-absent", tar_declared_huge, "ARCHIVE_UNREADABLE", "x.tar"),
    archive_case(
        "zip-that-is-text",
        lambda ctx: (ctx.inp / "x.zip").write_text("PK no zip"),
        "ARCHIVE_UNREADABLE",
        "x.zip",
    ),
    Case(
        "tar-dir-named-like-frames",
        tar_dir_named_like_a_file(gz=False),
        "BUNDLE_MISSING_FILE",
        FR,
        converted=(INNER,),
    ),
    Case(
        "tgz-dir-named-like-frames",
        tar_dir_named_like_a_file(gz=True),
        "BUNDLE_MISSING_FILE",
        FR,
        converted=(INNER,),
    ),
    Case(
        "zip-dir-named-like-frames",
        zip_dir_named_like_a_file,
        "BUNDLE_MISSING_FILE",
        FR,
        converted=(INNER,),
    ),
    Case(
        "zip-damaged-member-data", zip_damaged_member, "ARCHIVE_UNREADABLE", FR, converted=(INNER,)
    ),
    Case(
        "zip-lone-damaged-member",
        zip_lone_damaged_member,
        "ARCHIVE_UNREADABLE",
        FR,
        converted=(INNER,),
    ),
    Case(
        "zip-bzip2-damaged-member-data",
        zip_bzip2_damaged,
        "ARCHIVE_UNREADABLE",
        JL,
        converted=(INNER,),
    ),
    member_case(
        "zip-patched-data-flag",
        zip_patched("frames.npy", "<H", 8, 0x20),
        "ARCHIVE_UNSUPPORTED",
        f"bad/{BAD}_frames.npy",
    ),
    archive_case(
        "zip-directory-offset-past-data",
        zip_directory_offset_past_data,
        "ARCHIVE_UNREADABLE",
        "x.zip",
    ),
    Case(
        "zip-member-shorter-than-declared",
        zip_short_member,
        "ARCHIVE_UNREADABLE",
        TS,
        converted=(INNER,),
        via="cli",
    ),
]

NPY = [
    Case(
        "npy-header-over-cap",
        npy_case(
            frames=lambda old: npy(
                frames_header() + " " * 70_000, frames_data(old), version=(2, 0), game=False
            )
        ),
        "NPY_BAD_HEADER",
        FR,
    ),
    Case(
        "npy-shape-says-more-frames",
        npy_case(frames=frames_with(shape="(5, 128, 128, 3)")),
        "NPY_TRUNCATED",
        FR,
    ),
    Case(
        "npy-shape-says-fewer-frames",
        npy_case(frames=frames_with(shape="(2, 128, 128, 3)")),
        "NPY_TRAILING_BYTES",
        FR,
    ),
    Case("npy-pickle-frames", pickle_case("frames"), "NPY_UNSAFE_DTYPE", FR),
    Case("npy-pickle-timestamps", pickle_case("ts"), "NPY_UNSAFE_DTYPE", TS, via="cli"),
    Case(
        "npy-structured-dtype", npy_case(ts=ts_with(descr="[('t', '<f4')]")), "NPY_UNSAFE_DTYPE", TS
    ),
    Case("npy-object-descr-no-pickle", npy_case(ts=ts_with(descr="'O'")), "NPY_UNSAFE_DTYPE", TS),
    Case(
        "npy-truncated", npy_case(frames=lambda old: old[: 129 + FRAME + 100]), "NPY_TRUNCATED", FR
    ),
    Case(
        "npy-oversized-shape",
        npy_case(frames=frames_with(shape="(1099511627776, 128, 128, 3)")),
        "NPY_TRUNCATED",
        FR,
    ),
    Case(
        "npy-shape-past-int64",
        npy_case(frames=frames_with(shape="(99999999999999999999999, 128, 128, 3)")),
        "NPY_BAD_HEADER",
        FR,
    ),
    Case(
        "npy-fortran-order", npy_case(frames=frames_with(fortran="true")), "NPY_FORTRAN_ORDER", FR
    ),
    Case(
        "npy-trailing-bytes",
        npy_case(ts=lambda old: old + b"\0\0\0\0extra"),
        "NPY_TRAILING_BYTES",
        TS,
    ),
    Case(
        "npy-header-length-past-eof",
        npy_case(ts=lambda old: old[:9] + b"\xff\xf0" + old[11:]),
        "NPY_BAD_HEADER",
        TS,
    ),
    Case(
        "npy-negative-shape",
        npy_case(frames=frames_with(shape="(-3, 128, 128, 3)")),
        "NPY_BAD_HEADER",
        FR,
    ),
    Case("npy-eval-in-header", npy_case(ts=ts_with(shape=EXEC)), "NPY_BAD_HEADER", TS),
    Case(
        "npy-bad-magic", npy_case(frames=lambda old: b"PK\x03\x04" + old[4:]), "NPY_BAD_MAGIC", FR
    ),
    Case("npy-empty-file", npy_case(ts=b""), "NPY_BAD_MAGIC", TS),
    Case(
        "npy-bad-version",
        npy_case(ts=lambda old: old[:7] + b"\x09\x09" + old[9:]),
        "NPY_BAD_VERSION",
        TS,
    ),
    Case("npy-wrong-dtype", npy_case(ts=ts_with(descr="'>f4'")), "NPY_BAD_DTYPE", TS),
    Case(
        "npy-wrong-frame-shape",
        npy_case(
            frames=lambda old: npy(
                frames_header(shape="(3, 128, 128, 4)"), frames_data(old) + bytes(3 * 128 * 128)
            )
        ),
        "NPY_BAD_SHAPE",
        FR,
    ),
    Case(
        "npy-timestamp-nan",
        npy_case(ts=lambda old: old[:133] + b"\x00\x00\xc0\x7f" + old[137:]),
        "TS_NOT_FINITE",
        TS,
        frame=1,
    ),
]

JSONL = [
    Case(
        "jsonl-100000-deep-array-line",
        jsonl_case(lambda _: b"[" * DEEP + b"]" * DEEP),
        "JSONL_TOO_DEEP",
        JL,
        line=3,
        via="proc",
    ),
    Case(
        "jsonl-100000-deep-object-line",
        jsonl_case(lambda _: b'{"a":' * DEEP + b"1" + b"}" * DEEP),
        "JSONL_TOO_DEEP",
        JL,
        line=3,
    ),
    Case(
        "jsonl-line-over-1MiB",
        jsonl_case(add_field(b'"pad":"' + b"x" * (1 << 20) + b'"')),
        "JSONL_LINE_TOO_LONG",
        JL,
        line=3,
    ),
    Case(
        "jsonl-invalid-utf8", jsonl_case(add_field(b'"s":"\xff\xfe"')), "JSONL_BAD_UTF8", JL, line=3
    ),
    Case(
        "jsonl-overlong-utf8-slash",
        jsonl_case(add_field(b'"s":"\xc0\xaf"')),
        "JSONL_BAD_UTF8",
        JL,
        line=3,
    ),
    Case("jsonl-bom", npy_case(data=lambda old: b"\xef\xbb\xbf" + old), "JSONL_BOM", JL, line=1),
    Case("jsonl-nan", jsonl_case(add_field(b'"x":NaN')), "JSONL_BAD_JSON", JL, line=3),
    Case("jsonl-infinity", jsonl_case(add_field(b'"x":Infinity')), "JSONL_BAD_JSON", JL, line=3),
    Case(
        "jsonl-minus-infinity",
        jsonl_case(add_field(b'"x":-Infinity')),
        "JSONL_BAD_JSON",
        JL,
        line=3,
    ),
    Case(
        "jsonl-number-overflows-to-inf",
        jsonl_case(add_field(b'"x":1e400')),
        "JSONL_BAD_JSON",
        JL,
        line=3,
    ),
    Case(
        "jsonl-duplicate-top-level-key",
        jsonl_case(add_field(b'"type":"robot_state"')),
        "JSONL_DUPLICATE_KEY",
        JL,
        line=3,
    ),
    Case(
        "jsonl-duplicate-nested-key",
        jsonl_case(lambda line: line.replace(b'"position":{"x":', b'"position":{"x":0,"x":', 1)),
        "JSONL_DUPLICATE_KEY",
        JL,
        line=3,
    ),
    Case(
        "jsonl-control-char-in-string",
        jsonl_case(add_field(b'"s":"a\x01b"')),
        "JSONL_BAD_JSON",
        JL,
        line=3,
    ),
    Case(
        "jsonl-nul-byte-outside-string",
        jsonl_case(add_field(b'"s":\x001')),
        "JSONL_BAD_JSON",
        JL,
        line=3,
    ),
    Case(
        "jsonl-line-is-an-array", jsonl_case(lambda _: b"[1,2,3]"), "JSONL_NOT_OBJECT", JL, line=3
    ),
    Case(
        "jsonl-unknown-type",
        jsonl_case(lambda line: line.replace(b'"type":"robot_state"', b'"type":"__import__"', 1)),
        "ROW_UNKNOWN_TYPE",
        JL,
        line=3,
    ),
    Case(
        "jsonl-cut-mid-row",
        npy_case(data=lambda old: old[:-40]),
        "JSONL_BAD_JSON",
        JL,
        extra={"last_line": True},
    ),
    Case("jsonl-empty-file", npy_case(data=b""), "JSONL_EMPTY", JL),
    Case(
        "jsonl-frame-path-traversal",
        npy_case(
            data=periodic_edit(
                lambda line: line.replace(b"frames/frame_000000.npy", b"../../../../etc/passwd")
            )
        ),
        "FRAME_REF_BAD",
        JL,
        extra={"periodic_line": True},
    ),
]

META = [
    Case(
        "meta-50MB",
        meta_case(lambda old: b'{"pad": "' + b" " * 50_000_000 + b'"}'),
        "META_BAD_JSON",
        MD,
    ),
    Case("meta-is-an-array", meta_case(b"[1, 2]"), "META_BAD_JSON", MD),
    Case("meta-100000-deep", meta_case(b"[" * DEEP + b"]" * DEEP), "META_BAD_JSON", MD),
    Case(
        "meta-900-deep-extra-field",
        meta_case(meta_add(b'"x":' + b"[" * 900 + b"]" * 900)),
        "META_BAD_JSON",
        MD,
    ),
    Case("meta-nan", meta_case(meta_add(b'"x": NaN')), "META_BAD_JSON", MD, line=1),
    Case(
        "meta-duplicate-top-level-key",
        meta_case(meta_add(b'"environment": "tsunami"')),
        "META_BAD_JSON",
        MD,
    ),
    Case(
        "meta-duplicate-nested-key",
        meta_case(
            lambda old: old.replace(
                b'"victims_total": 7', b'"victims_total": 7, "victims_total": 0', 1
            )
        ),
        "META_BAD_JSON",
        MD,
    ),
    Case("meta-bom", meta_case(lambda old: b"\xef\xbb\xbf" + old), "META_BAD_JSON", MD, line=1),
    Case("meta-invalid-utf8", meta_case(meta_add(b'"x": "\xff"')), "META_BAD_JSON", MD, line=1),
    Case("meta-control-char", meta_case(meta_add(b'"x": "a\x07b"')), "META_BAD_JSON", MD, line=1),
    Case(
        "meta-session-id-path",
        meta_case(
            lambda old: json.dumps(
                {**json.loads(old), "session_id": "../../../../etc/reacture\0\n"}
            ).encode()
        ),
        "META_SESSION_ID_MISMATCH",
        MD,
        converted=(BAD,),
        not_converted=(),
        exit_code=0,
    ),
]


def legacy_case(edit: Callable[[bytes], bytes]) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.legacy("bad", edit)


def in_first_frame(text: bytes) -> Callable[[bytes], bytes]:
    return lambda data: data.replace(b'"width":128', text + b',"width":128', 1)


LJ = f"{BAD}_frames.json"
LEGACY = [
    Case(
        "legacy-100000-deep-frame",
        legacy_case(lambda _: b"[" + b"[" * DEEP + b"]" * DEEP + b"]"),
        "LEGACY_BAD_FRAMES",
        LJ,
        frame=0,
    ),
    Case(
        "legacy-deep-field",
        legacy_case(in_first_frame(b'"x":' + b"[" * 5000 + b"]" * 5000)),
        "LEGACY_BAD_FRAMES",
        LJ,
        frame=0,
    ),
    Case(
        "legacy-nan-timestamp",
        legacy_case(lambda data: data.replace(b'"timestamp_ms":', b'"timestamp_ms":NaN,"t":', 1)),
        "LEGACY_BAD_FRAMES",
        LJ,
        frame=0,
    ),
    Case(
        "legacy-duplicate-key",
        legacy_case(in_first_frame(b'"width":64')),
        "LEGACY_BAD_FRAMES",
        LJ,
        frame=0,
    ),
    Case(
        "legacy-5000-digit-number",
        legacy_case(in_first_frame(b'"n":' + b"9" * 5000)),
        "LEGACY_BAD_FRAMES",
        LJ,
        frame=0,
    ),
    Case(
        "legacy-path-traversal-is-ignored",
        legacy_case(
            lambda data: data.replace(b'"frames/frame_000001.npy"', b'"../../../../tmp/pwned"', 1)
        ),
        None,
        "",
        converted=(BAD,),
        not_converted=(),
        exit_code=0,
    ),
]


def name_case(id: str, prefix: str, **kw: Any) -> Case:
    """BAD's bundle under ``prefix``: converted under a safe derived name."""
    return Case(
        id,
        prefix_case(prefix),
        "META_SESSION_ID_MISMATCH",
        f"{prefix}_metadata.json",
        converted=(prefix,),
        not_converted=(),
        exit_code=0,
        **kw,
    )


NAMES = [
    name_case("name-dotdot-inside", "a..b"),
    name_case("name-trailing-dotdot", "reacture.."),
    name_case("name-newline", "reacture\n1795600000003"),
    name_case("name-division-slash-u2215", "reacture\u22151795600000003"),
    name_case("name-fraction-slash-u2044", "x\u2044..\u2044..\u2044etc"),
    name_case("name-fullwidth", "\uff52\uff45\uff41\uff43\uff54\uff55\uff52\uff45_1795600000003"),
    name_case("name-windows-absolute", "C:\\Windows\\reacture"),
    name_case("name-tilde", "~root"),
    name_case("name-rtl-override", "reacture_\u202e3000006591_"),
    name_case("name-very-long", "r" * 230, via="cli"),
    name_case("name-shell-metachars", "$(touch pwned);`id`|x&y"),
    Case(
        "name-slash-in-prefix-inside-archive",
        tar_case(*(tinfo(f"bad/{BAD}/_{role}", b"{}") for role in ROLES)),
        "STRAY_FILE",
        f"{{in}}/x.tar!bad/{BAD}/_metadata.json",
        converted=(INNER,),
        exit_code=0,
    ),
    Case(
        "name-dotdot-prefix-is-hidden", prefix_case(".."), None, "", not_converted=(), exit_code=0
    ),
    Case("name-dot-prefix-is-hidden", prefix_case("."), None, "", not_converted=(), exit_code=0),
    Case(
        "name-differs-by-unsafe-char",
        two_prefixes("reacture.1795600000001", "reacture 1795600000001"),
        "META_SESSION_ID_MISMATCH",
        "reacture.1795600000001_metadata.json",
        converted=("reacture.1795600000001", "reacture 1795600000001"),
        not_converted=(),
        exit_code=0,
    ),
    Case(
        "name-nfc-vs-nfd",
        two_prefixes(
            unicodedata.normalize("NFC", "r\u00e9acture"),
            unicodedata.normalize("NFD", "r\u00e9acture"),
        ),
        "META_SESSION_ID_MISMATCH",
        "r\u0065\u0301acture_metadata.json",
        converted=("r\u00e9acture", "re\u0301acture"),
        not_converted=(),
        exit_code=0,
    ),
    Case(
        "name-same-prefix-other-bytes",
        same_prefix_other_bytes,
        "CONFLICT",
        GOOD,
        not_converted=(),
        extra={"conflict_source": "zz"},
    ),
    Case(
        "name-crafted-collision",
        crafted_collision,
        "CONFLICT",
        session_name("reacture.1795600000003"),
        converted=("reacture.1795600000003",),
        not_converted=(session_name("reacture.1795600000003"),),
    ),
    Case(
        "input-fifo-named-like-frames",
        fifo_named_like_a_file,
        "STRAY_FILE",
        f"{{in}}/{FR}",
        not_converted=(),
        exit_code=0,
    ),
    Case(
        "input-symlink-out",
        link_out,
        "INPUT_LINK_SKIPPED",
        f"{{in}}/{MD}",
        not_converted=(),
        exit_code=0,
    ),
    Case("input-dir-symlink-out", dir_link_out, "INPUT_LINK_SKIPPED", "{in}/linked", exit_code=0),
]

CASES = [*ARCHIVES, *NPY, *JSONL, *META, *LEGACY, *NAMES]


# --- the harness ----------------------------------------------------------------------------


def snapshot(root: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under ``root`` but ``skip``: kind, mode, bytes and mtime of each file, the
    listing and mtime of each folder, the target of each link. Never follows a link and never
    opens anything but regular files."""
    state: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if here / n != skip)
        names = sorted(n for n in (*dirnames, *filenames) if here / n != skip)
        st = os.lstat(here)
        state[str(here.relative_to(root))] = (
            "dir",
            names,
            st.st_mode,
            None if here == root else st.st_mtime_ns,
        )
        for name in names:
            path = here / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                state[rel] = (
                    "file",
                    st.st_mode,
                    st.st_size,
                    st.st_mtime_ns,
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
            elif not stat.S_ISDIR(st.st_mode):
                state[rel] = ("special", st.st_mode, st.st_mtime_ns)
    return state


SYSTEM_TMP = Path(tempfile.gettempdir())  # the real one, before a test points tempfile elsewhere
MARKERS = (BAD, "pwned")  # what the hostile inputs name the files they try to write


def escapes(tmp_path: Path) -> set[str]:
    """Entries named like a hostile input's target in the places a path escape reaches first:
    the system temp folder (absolute ``/tmp/...`` members), the folders above this test's own
    (``../..`` members) and ``/etc``. Only marker names count, so other processes writing there
    meanwhile do not matter."""
    found: set[str] = set()
    for place in {SYSTEM_TMP, tmp_path.parent, tmp_path.parent.parent, Path("/etc")}:
        try:
            names = os.listdir(place)
        except OSError:
            continue
        found |= {str(place / n) for n in names if any(m in n for m in MARKERS)}
    return found


def _run(case: Case, inp: Path, out: Path, env_tmp: Path) -> tuple[int, dict[str, Any]]:
    """Convert ``inp`` into ``out`` the way the case says; (exit code, the run's JSON summary)."""
    args = ["convert", str(inp), "--out", str(out), "--scheduler", "sync", "--json"]
    if case.via == "lib":
        summary = run_convert([str(inp)], Output(str(out)), scheduler="sync")
        doc = json.loads(json.dumps(summary.to_dict(), default=str))
        return (0 if summary.ok else 1), doc
    if case.via == "cli":
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        return result.exit_code, json.loads(result.stdout)
    proc = subprocess.run(
        [str(CONVERT), *args],
        capture_output=True,
        timeout=120,
        cwd=env_tmp.parent / "cwd",
        env={**os.environ, "TMPDIR": str(env_tmp)},
    )
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]!r}"
    return proc.returncode, json.loads(proc.stdout)


def _all_findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [*doc["findings"], *(f for s in doc["sessions"] for f in s["findings"])]


def _expected_location(case: Case, inp: Path) -> tuple[str, int | None, int | None]:
    line = case.line
    if case.extra.get("last_line"):
        data = (inp / "bad" / JL).read_bytes()
        line = data.count(b"\n") + 1
    if case.extra.get("periodic_line"):
        line = first_periodic_line((inp / "bad" / JL).read_bytes())
    return case.file.replace("{in}", str(inp)), line, case.frame


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(
    case: Case,
    tmp_path: Path,
    bundle_bytes: Callable[[str], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    sys_tmp, cwd = tmp_path / "systmp", tmp_path / "cwd"
    for d in (inp, sys_tmp, cwd):
        d.mkdir()
    ctx = Ctx(inp, bundle_bytes)
    ctx.folder("good", GOOD)
    case.build(ctx)
    monkeypatch.setattr(tempfile, "tempdir", str(sys_tmp))
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path, skip=out)
    outside = escapes(tmp_path)

    code, doc = _run(case, inp, out, sys_tmp)

    # nothing was written anywhere but out/: sources, neighbours and cwd are untouched, and the
    # temporary folder is empty again (legacy bundles use a private one while they convert)
    after = snapshot(tmp_path, skip=out)
    for state in (before, after):
        state.pop(sys_tmp.name)
    assert after == before
    assert list(sys_tmp.iterdir()) == []
    assert not (tmp_path / "pwned").exists()
    assert escapes(tmp_path) == outside  # nor outside this test's folder
    assert code == case.exit_code, doc

    # the refusal, located
    if case.code is not None:
        want = (case.code, *_expected_location(case, inp))
        got = [(f["code"], f["file"], f["line"], f["frame"]) for f in _all_findings(doc)]
        assert want in got, got
    elif not case.converted:  # hidden files are never read: no bundle, no finding about them
        assert [s["prefix"] for s in doc["sessions"]] == [GOOD]

    # the good bundles still convert; the hostile one does not (unless it is only oddly named)
    status: dict[str, set[str]] = {}
    for s in doc["sessions"]:
        status.setdefault(s["prefix"], set()).add(s["status"])
    for prefix in (GOOD, *case.converted):
        assert "converted" in status.get(prefix, ()), (prefix, status)
    for prefix in case.not_converted:
        assert "converted" not in status.get(prefix, ()), (prefix, status)
    if "conflict_source" in case.extra:
        [loser] = [s for s in doc["sessions"] if s["status"] == "conflict"]
        assert loser["source"] == str(inp / case.extra["conflict_source"])

    # out/ holds only the dataset, under safe names, and every session verifies bit for bit
    converted = [s for s in doc["sessions"] if s["status"] == "converted"]
    assert all(is_safe_name(s["session"]) for s in converted)
    assert len({s["session"] for s in converted}) == len(converted)
    assert {p.name for p in out.iterdir()} <= OUT_TOP
    for sub, suffix in (("zarr", ".zarr"), ("rows", ".parquet"), ("frames", ".parquet")):
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(
            s["session"] + suffix for s in converted
        )
    assert verify_dataset(Output(str(out)), sources=True) == (len(converted), [])


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
