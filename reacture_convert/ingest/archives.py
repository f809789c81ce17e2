"""Archive listings, read safely: which members of a .zip/.tar/.tar.gz may be read, and why not.

Archives come from users and are untrusted. ``list_members`` reads only the archive's index
(the zip central directory, the tar headers), never extracts anything to disk, and checks every
member before it returns: names that could escape a folder, links, device files, duplicate
names, sizes and compression ratios that betray a bomb, encryption and unknown compression.
A member that fails a check is left out and explained by a ``Finding``; an archive that cannot
be read at all gives one ``ARCHIVE_UNREADABLE`` finding instead of an exception, so one bad
upload never stops a batch.

``Member.name`` is the name exactly as stored, because ``bundle.open_file`` looks members up
by that name; once checked it is a relative posix path without ``..``, backslashes or control
characters (a leading ``./``, as ``tar -C dir .`` writes, is kept).
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from fsspec.core import url_to_fs

from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.members import BoundedReader, archive_kind, member_name_problem

__all__ = [
    "MAX_MEMBER_BYTES",
    "MAX_TOTAL_BYTES",
    "MAX_MEMBERS",
    "MAX_RATIO",
    "RATIO_MIN_BYTES",
    "Member",
    "is_archive",
    "list_members",
    "normalize_member_name",
]

MAX_MEMBER_BYTES = 64 * 2**30  # a member may not declare more than this
MAX_TOTAL_BYTES = 256 * 2**30  # all regular members together
MAX_MEMBERS = 100_000  # entries of any kind, directories included
MAX_RATIO = 1000  # zip: uncompressed/compressed above this is a bomb...
# ...once the member expands beyond this. Real bundles are legitimately extreme: the published
# game's all-black frames.npy deflates ~1020:1 and bzip2s ~90,000:1, and a session is a few
# hundred MB at most. Below this size a high ratio costs nothing worth refusing a real export.
RATIO_MIN_BYTES = 2**30

# zip compression methods we can read: stored, deflated, bzip2, lzma.
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_ZIP_LOCAL_HEADER_MIN = 30  # fixed part of a zip local file header, before name and extra

# What a corrupt archive makes zipfile, tarfile, gzip and the codecs raise while listing.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes gzip.BadGzipFile, FileNotFoundError, PermissionError
    EOFError,
    OverflowError,  # an offset or size beyond what a C integer holds, from a damaged header
    ValueError,  # includes UnicodeDecodeError
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    zlib.error,
)


@dataclass(frozen=True, slots=True)
class Member:
    """A regular file inside an archive that passed every check."""

    name: str  # posix path inside the archive, exactly as stored (the key open_file looks up)
    size: int  # declared uncompressed size


@dataclass(frozen=True, slots=True)
class _Entry:
    """One entry of an archive's index as read, before the common checks.

    ``shown`` is the name to check and report (a zip name keeps the NUL byte and what follows,
    which zipfile cuts off); ``kind`` is file, dir, link or special; ``problem`` is a
    format-specific refusal (code, message) found while reading the index.
    """

    name: str
    shown: str
    kind: str
    size: int
    problem: tuple[str, str] | None = None


def is_archive(name: str) -> bool:
    """True for the archive kinds we open: .zip, .tar, .tar.gz, .tgz (any case)."""
    return archive_kind(name) is not None


def normalize_member_name(name: str) -> str:
    """The member's path without empty and ``.`` components: ``./a//b/`` -> ``a/b``."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def list_members(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[list[Member], list[Finding]]:
    """Open the archive at ``url`` (local path or fsspec URL) and list its readable members.

    Returns the members that pass every check, in archive order, and a finding for each one
    refused. Never raises for a bad archive: a corrupt, truncated or unreadable one gives a
    single ``ARCHIVE_UNREADABLE`` finding (file = ``url``) and no members.
    """
    kind = archive_kind(url)
    if kind is None:
        return [], [
            finding(
                "ARCHIVE_UNSUPPORTED",
                url,
                "not a .zip, .tar, .tar.gz or .tgz file name; rename it or unpack it",
            )
        ]
    try:
        fs, path = url_to_fs(url, **dict(storage_options or {}))
        with fs.open(path, "rb") as raw:
            if kind == "zip":
                entries, findings = _read_zip(raw, url)
            else:
                entries, findings = _read_tar(raw, url, gz=kind == "tar.gz")
    except NotImplementedError as exc:  # zipfile: a zip format version it cannot read
        return [], [
            finding(
                "ARCHIVE_UNSUPPORTED",
                url,
                f"archive format not supported ({exc}); re-create it as a plain zip",
            )
        ]
    except _READ_ERRORS as exc:
        return [], [
            finding(
                "ARCHIVE_UNREADABLE",
                url,
                f"cannot read the archive ({type(exc).__name__}: {exc}); check that "
                "the file is complete and really is the kind of archive its name says",
            )
        ]
    if findings:  # archive-level refusal (too many members, too large, corrupt tail)
        return [], findings
    return _check_entries(entries, url)


def _where(label: str, name: str) -> str:
    """``label!name`` with unprintable characters escaped, safe to print in a terminal."""
    return f"{label}!{_printable(name)}"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _too_many(label: str, count: int) -> Finding:
    return finding(
        "ARCHIVE_TOO_LARGE",
        label,
        f"more than {MAX_MEMBERS} entries ({count} read); split it into smaller archives",
    )


# --- zip ------------------------------------------------------------------------------------


def _read_zip(raw: IO[bytes], label: str) -> tuple[list[_Entry], list[Finding]]:
    """Read the central directory; the member data is never decompressed."""
    with zipfile.ZipFile(raw) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            return [], [_too_many(label, len(infos))]
        start_dir = getattr(zf, "start_dir", None)
        if any(
            info.header_offset < 0 or (start_dir is not None and info.header_offset > start_dir)
            for info in infos
        ):  # a damaged directory: reading would seek outside the data
            return [], [
                finding(
                    "ARCHIVE_UNREADABLE",
                    label,
                    "the central directory points outside the archive's data; the "
                    "archive is damaged: re-create or re-download it",
                )
            ]
        overlapping = _zip_overlaps(infos, start_dir)
        entries = [_zip_entry(info, i in overlapping) for i, info in enumerate(infos)]
    return entries, []


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """file, dir, link or special, from the name and (for unix-made zips) the mode bits."""
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    fmt = stat.S_IFMT(mode)
    if info.filename.endswith("/") or fmt == stat.S_IFDIR:
        return "dir"
    if fmt == stat.S_IFLNK:
        return "link"
    if fmt not in (0, stat.S_IFREG):
        return "special"
    return "file"


def _zip_entry(info: zipfile.ZipInfo, overlaps: bool) -> _Entry:
    """An entry, with the zip-only refusals: encryption, method, overlap, ratio."""
    problem: tuple[str, str] | None = None
    if info.flag_bits & 0x1:
        problem = (
            "ARCHIVE_ENCRYPTED",
            "member is encrypted; re-create the archive without a password",
        )
    elif info.flag_bits & 0x60:  # bit 5: compressed patched data, bit 6: strong encryption
        problem = (
            "ARCHIVE_UNSUPPORTED",
            "member uses patched data or strong encryption (zip flag bits 5/6), which "
            "cannot be read; re-create the archive with plain deflate",
        )
    elif info.compress_type not in _ZIP_METHODS:
        problem = (
            "ARCHIVE_UNSUPPORTED",
            f"compression method {info.compress_type} is not supported (stored, deflate, "
            "bzip2 and lzma are); re-create the archive with deflate",
        )
    elif overlaps:
        problem = (
            "ARCHIVE_TOO_LARGE",
            "member's data overlaps another entry (an overlapping-entries zip bomb); refused",
        )
    elif info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(
        info.compress_size, 1
    ):
        problem = (
            "ARCHIVE_TOO_LARGE",
            f"member expands {info.compress_size} -> {info.file_size} bytes, a ratio "
            f"above {MAX_RATIO} (a zip bomb); refused",
        )
    return _Entry(info.filename, info.orig_filename, _zip_kind(info), info.file_size, problem)


def _zip_overlaps(infos: Sequence[zipfile.ZipInfo], start_dir: int | None) -> set[int]:
    """Indexes of entries whose local header + data run into the next entry's local header.

    A well-formed zip stores each member once, one after the other, before the central
    directory. Entries that share or overlap data are the "overlapping entries" bomb: a small
    file whose members all expand the same bytes. The 30-byte fixed header is the least an
    entry takes before its data, so the check never flags an honest archive.
    """
    order = sorted(range(len(infos)), key=lambda i: infos[i].header_offset)

    def end(i: int) -> int:
        return infos[i].header_offset + _ZIP_LOCAL_HEADER_MIN + infos[i].compress_size

    bad: set[int] = set()
    for here, nxt in zip(order, order[1:], strict=False):
        if end(here) > infos[nxt].header_offset:
            bad.update((here, nxt))
    if order and start_dir is not None and end(order[-1]) > start_dir:
        bad.add(order[-1])
    return bad


# --- tar ------------------------------------------------------------------------------------


def _read_tar(raw: IO[bytes], label: str, *, gz: bool) -> tuple[list[_Entry], list[Finding]]:
    """Read the tar headers one by one (the data is skipped, decompressed only for .tar.gz).

    Stops early once the member count or the declared total passes its cap, so a hostile
    archive cannot make the listing itself run for ever.
    """
    entries: list[_Entry] = []
    total = 0
    with _open_tar(raw, gz) as tf:
        while (info := tf.next()) is not None:
            entries.append(_tar_entry(info))
            total += info.size if info.isreg() else 0
            if len(entries) > MAX_MEMBERS:
                return [], [_too_many(label, len(entries))]
            if total > MAX_TOTAL_BYTES:
                return [], [_total_too_large(label, total)]
        if not _clean_tar_end(tf):
            return [], [
                finding(
                    "ARCHIVE_UNREADABLE",
                    label,
                    "the archive ends in a damaged or truncated header; check that "
                    "the file is complete",
                )
            ]
    return entries, []


def _open_tar(raw: IO[bytes], gz: bool) -> tarfile.TarFile:
    """``tarfile`` over ``raw`` (gunzipped for .tar.gz) through a ``BoundedReader``: the sizes
    that headers declare never make it read or seek beyond the data (the member policy)."""
    if not gz:
        return tarfile.open(fileobj=BoundedReader(raw, _size(raw)), mode="r:")
    unzipped = gzip.GzipFile(fileobj=raw, mode="rb")
    try:
        return tarfile.open(fileobj=BoundedReader(unzipped), mode="r:")
    except (OSError, EOFError) as e:  # as tarfile's own "r:gz" says it
        unzipped.close()
        raise tarfile.ReadError("not a gzip file") from e


def _size(raw: IO[bytes]) -> int | None:
    """The size of a seekable ``raw`` (left at its start), else None."""
    if not raw.seekable():
        return None
    size = raw.seek(0, 2)
    raw.seek(0)
    return size


def _tar_entry(info: tarfile.TarInfo) -> _Entry:
    if info.isdir():
        kind = "dir"
    elif info.issym() or info.islnk():
        kind = "link"
    elif info.isreg():
        kind = "file"
    else:
        kind = "special"
    return _Entry(info.name, info.name, kind, info.size)


def _clean_tar_end(tf: tarfile.TarFile) -> bool:
    """True when the listing stopped at the end of the archive, not at a broken header.

    tarfile ends a listing silently at the first invalid or truncated header after the first
    one; what follows the last member must be nothing or zero blocks.
    """
    fileobj = tf.fileobj
    if fileobj is None:
        return True
    fileobj.seek(tf.offset)
    block = fileobj.read(tarfile.BLOCKSIZE)
    return not block.strip(b"\0")


# --- the checks every member passes -----------------------------------------------------------


_KIND_REFUSALS: dict[str, tuple[str, str]] = {
    "link": ("ARCHIVE_LINK", "member is a symbolic or hard link; links are never followed"),
    "special": (
        "ARCHIVE_SPECIAL_FILE",
        "member is a device, FIFO or other special file; only regular files are read",
    ),
}


def _entry_problem(entry: _Entry) -> tuple[str, str] | None:
    """The first check ``entry`` fails, as (code, message), or None."""
    unsafe = member_name_problem(entry.shown)
    if unsafe is not None:
        return (
            "ARCHIVE_UNSAFE_PATH",
            f"{unsafe}; refused (archives must hold relative paths inside one folder)",
        )
    if entry.kind in _KIND_REFUSALS:
        return _KIND_REFUSALS[entry.kind]
    if entry.kind == "dir":
        return None
    if not normalize_member_name(entry.name):
        return ("ARCHIVE_UNSAFE_PATH", "a file without a name ('.' or empty); refused")
    if entry.problem is not None:
        return entry.problem
    if entry.size > MAX_MEMBER_BYTES:
        return (
            "ARCHIVE_TOO_LARGE",
            f"member declares {entry.size} bytes, more than the {MAX_MEMBER_BYTES} allowed",
        )
    return None


def _total_too_large(label: str, total: int) -> Finding:
    return finding(
        "ARCHIVE_TOO_LARGE",
        label,
        f"members declare {total} bytes in all, more than the {MAX_TOTAL_BYTES} "
        "allowed; split it into smaller archives",
    )


def _duplicates(entries: Iterable[_Entry]) -> set[str]:
    """Normalized names held by more than one non-directory entry with a safe name."""
    counts = Counter(
        normalize_member_name(e.name)
        for e in entries
        if e.kind != "dir" and member_name_problem(e.shown) is None
    )
    return {name for name, n in counts.items() if n > 1}


def _check_entries(entries: Sequence[_Entry], label: str) -> tuple[list[Member], list[Finding]]:
    """Apply every check to every entry; keep the regular files that pass."""
    members: list[Member] = []
    findings: list[Finding] = []
    dups = _duplicates(entries)
    reported: set[str] = set()
    for entry in entries:
        problem = _entry_problem(entry)
        if problem is not None:
            findings.append(finding(problem[0], _where(label, entry.shown), problem[1]))
            continue
        if entry.kind == "dir":
            continue
        key = normalize_member_name(entry.name)
        if key in dups:
            if key not in reported:
                reported.add(key)
                findings.append(
                    finding(
                        "ARCHIVE_DUPLICATE_MEMBER",
                        _where(label, entry.shown),
                        "two or more members have this name; all are refused (which one is meant "
                        "is ambiguous)",
                    )
                )
            continue
        members.append(Member(entry.name, entry.size))
    total = sum(m.size for m in members)
    if total > MAX_TOTAL_BYTES:
        return [], [*findings, _total_too_large(label, total)]
    return members, findings
