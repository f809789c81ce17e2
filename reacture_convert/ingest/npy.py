"""A strict, safe reader for the .npy files the game writes, and for standard NPY files.

The game's JavaScript exporter writes files that ``np.load`` refuses (see
``docs/bundle-format.md``): the magic is UTF-8 encoded (``C2 93 NUMPY``, 7 bytes),
the header dict says ``false`` instead of ``False``, it has no trailing newline, and the data
starts at byte 129. This module reads those files exactly and says what was non-standard, and
reads standard NPY 1.0/2.0/3.0 files without any finding.

Untrusted input is never given to ``np.load``, ``eval``, ``ast.literal_eval`` or pickle: the
header is parsed by a small grammar of its own that knows only dicts, lists, tuples, quoted
strings, integers and booleans, and only simple numeric dtypes are accepted. Nothing is
allocated from a declared shape before the file size has confirmed it.
"""

from __future__ import annotations

import io
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.lib.format as npy_format
import numpy.typing as npt

from reacture_convert.errors import InputError
from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.npy_literal import (
    INT,
    MAX_DIM_DIGITS,
    Bool,
    HeaderSyntaxError,
    Number,
    Parser,
    Value,
    describe,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "NpyHeader",
    "read_npy_header",
    "check_layout",
    "iter_npy_chunks",
    "read_npy_small",
    "npy_bytes",
]

MAX_HEADER_BYTES = 65536

_MAGIC = b"\x93NUMPY"
_GAME_MAGIC = b"\xc2\x93NUMPY"  # '\x93NUMPY' passed through TextEncoder (UTF-8)
# version -> (bytes of the header length field, text encoding of the header)
_VERSIONS: dict[tuple[int, int], tuple[int, str]] = {
    (1, 0): (2, "latin1"),
    (2, 0): (4, "latin1"),
    (3, 0): (4, "utf-8"),
}
_KEYS = ("descr", "fortran_order", "shape")
_MAX_DIM = 2**63 - 1  # numpy's intp limit
_SKIP_CHUNK = 1 << 20

# Simple numeric dtypes: optional byte order, kind, item size. Nothing else is accepted.
_SIMPLE_DESCR = re.compile(r"([<>|=]?)([biufc])([0-9]{1,2})")
_ITEMSIZES = {"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8}, "c": {8, 16}}
_OBJECT_DESCR = re.compile(r"[<>|=]?O[0-9]*|object")


@dataclass(frozen=True, slots=True)
class NpyHeader:
    """The parsed header of one .npy file; ``quirks`` lists each non-standard feature tolerated."""

    descr: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int
    quirks: tuple[str, ...] = ()

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares (Python ints: a huge shape cannot overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def row_nbytes(self) -> int:
        """Bytes of one entry along axis 0 (one frame); the whole array for a 0-d array."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize


# --------------------------------------------------------------------------------------------
# header fields


@dataclass(frozen=True, slots=True)
class _Fields:
    descr: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    javascript_bools: tuple[str, ...]


def _parse_shape(value: Value) -> tuple[int, ...]:
    """A tuple of non-negative ints, else HeaderSyntaxError saying which entry is wrong."""
    if not isinstance(value, tuple):
        raise HeaderSyntaxError(f"'shape' must be a tuple of ints, found {describe(value)}")
    dims = []
    for i, item in enumerate(value):
        text = item.text if isinstance(item, Number) else None
        if text is not None and re.fullmatch(r"-[0-9]+", text):
            raise HeaderSyntaxError(f"'shape' entry {i} is negative ({text})")
        if text is not None and INT.fullmatch(text) and len(text) > MAX_DIM_DIGITS:
            raise HeaderSyntaxError(f"'shape' entry {i} is larger than 2**63-1 ({text[:30]}...)")
        if text is None or not INT.fullmatch(text):
            raise HeaderSyntaxError(
                f"'shape' entry {i} is not a non-negative integer: {describe(item)}"
            )
        dim = int(text)
        if dim > _MAX_DIM:
            raise HeaderSyntaxError(f"'shape' entry {i} is larger than 2**63-1 ({text})")
        dims.append(dim)
    return tuple(dims)


def _parse_descr(value: Value, file: str) -> tuple[str, np.dtype[Any]] | Finding:
    """The descr string and its dtype, or the finding that refuses it."""
    if isinstance(value, list):
        return finding(
            "NPY_UNSAFE_DTYPE",
            file,
            "the header declares a structured dtype (a list of fields); only simple numeric "
            "arrays are read",
        )
    if not isinstance(value, str):
        if isinstance(value, tuple):
            return finding(
                "NPY_BAD_DTYPE",
                file,
                "the header declares a sub-array dtype (a tuple); only simple numeric arrays "
                "are read",
            )
        return finding("NPY_BAD_HEADER", file, f"'descr' must be a string, found {describe(value)}")
    if _OBJECT_DESCR.fullmatch(value) or "," in value:
        kind = "an object dtype (pickled data)" if "," not in value else "a structured dtype"
        return finding(
            "NPY_UNSAFE_DTYPE",
            file,
            f"descr {value!r} is {kind}; it is never unpickled or read",
        )
    match = _SIMPLE_DESCR.fullmatch(value)
    if not match or int(match.group(3)) not in _ITEMSIZES[match.group(2)]:
        return finding(
            "NPY_BAD_DTYPE",
            file,
            f"descr {value!r} is not a simple numeric dtype (bool, int, uint, float or "
            "complex such as '|u1' or '<f4')",
        )
    order, size = match.group(1), int(match.group(3))
    if order == "|" and size > 1:
        return finding(
            "NPY_BAD_DTYPE",
            file,
            f"descr {value!r} has no byte order ('|') but items of {size} bytes",
        )
    return value, np.dtype(value)


def _parse_fields(text: str, file: str) -> _Fields | Finding:
    """Parse and check the header dict text (newline and padding already removed)."""
    try:
        doc = Parser(text).parse_document()
        if not isinstance(doc, dict):
            raise HeaderSyntaxError(f"the header is not a dict but {describe(doc)}")
        missing = [k for k in _KEYS if k not in doc]
        extra = [k for k in doc if k not in _KEYS]
        if missing or extra:
            parts = [f"missing key(s) {missing}"] if missing else []
            parts += [f"unexpected key(s) {extra}"] if extra else []
            raise HeaderSyntaxError(
                "the header dict must have exactly the keys 'descr', 'fortran_order' and "
                "'shape': " + ", ".join(parts)
            )
        fortran = doc["fortran_order"]
        if not isinstance(fortran, Bool):
            raise HeaderSyntaxError(
                f"'fortran_order' must be True or False, found {describe(fortran)}"
            )
        shape = _parse_shape(doc["shape"])
    except HeaderSyntaxError as exc:
        return finding("NPY_BAD_HEADER", file, f"invalid NPY header: {exc}")
    descr = _parse_descr(doc["descr"], file)
    if isinstance(descr, Finding):
        return descr
    js = (f"JavaScript '{str(fortran.value).lower()}'",) if fortran.javascript else ()
    return _Fields(descr[0], descr[1], shape, fortran.value, js)


# --------------------------------------------------------------------------------------------
# reading the header


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes, looping over short reads; fewer only at end of stream."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Preamble:
    """Magic, version and header length as read: where the header text starts, and its size."""

    game_magic: bool
    encoding: str
    header_start: int
    header_len: int


def _read_preamble(stream: IO[bytes], file_size: int, file: str) -> _Preamble | Finding:
    """Read the magic, the version and the header length field."""
    head = _read_exact(stream, 6)
    if head == _MAGIC:
        game = False
    elif head == _GAME_MAGIC[:6]:
        head += _read_exact(stream, 1)
        game = head == _GAME_MAGIC
    else:
        game = False
    if head != (_GAME_MAGIC if game else _MAGIC):
        return finding(
            "NPY_BAD_MAGIC",
            file,
            f"the file does not start with the NPY magic '\\x93NUMPY' (first bytes: "
            f"{head[:8].hex(' ') or 'none, the file is empty'}); it is not a .npy file",
        )
    version_bytes = _read_exact(stream, 2)
    if len(version_bytes) < 2:
        return finding(
            "NPY_BAD_HEADER",
            file,
            f"the file ends after {len(head) + len(version_bytes)} bytes, before the NPY version",
        )
    version = (version_bytes[0], version_bytes[1])
    if version not in _VERSIONS:
        return finding(
            "NPY_BAD_VERSION",
            file,
            f"NPY format version {version[0]}.{version[1]} is not supported (1.0, 2.0 or 3.0)",
        )
    len_size, encoding = _VERSIONS[version]
    len_bytes = _read_exact(stream, len_size)
    header_start = len(head) + 2 + len_size
    if len(len_bytes) < len_size:
        return finding(
            "NPY_BAD_HEADER",
            file,
            f"the file ends after {len(head) + 2 + len(len_bytes)} bytes, inside the "
            f"{len_size}-byte header length field",
        )
    header_len = int.from_bytes(len_bytes, "little")
    if header_len > MAX_HEADER_BYTES:
        return finding(
            "NPY_BAD_HEADER",
            file,
            f"the header length field says {header_len} bytes, more than the "
            f"{MAX_HEADER_BYTES} allowed",
        )
    if header_start + header_len > file_size:
        return finding(
            "NPY_BAD_HEADER",
            file,
            f"the header length field says {header_len} bytes but the file has only "
            f"{max(file_size - header_start, 0)} bytes after it (file size {file_size})",
        )
    return _Preamble(game, encoding, header_start, header_len)


def _split_header_text(raw: bytes, encoding: str) -> tuple[str, bool] | str:
    """Decode the header; returns (text without the final newline, had newline) or an error."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return f"the header is not valid {encoding}: {exc.reason} at byte {exc.start}"
    if text.endswith("\n"):
        return text[:-1], True
    return text, False


def _data_findings(fields: _Fields, data_offset: int, file_size: int, file: str) -> list[Finding]:
    """Compare the bytes after the header with what the shape and dtype declare."""
    header = NpyHeader(fields.descr, fields.dtype, fields.shape, fields.fortran_order, data_offset)
    declared, present = header.nbytes, file_size - data_offset
    what = f"shape {fields.shape} of {fields.descr!r} ({declared} bytes from offset {data_offset})"
    if present < declared:
        rows = ""
        if fields.shape and header.row_nbytes > 0:
            rows = f"; {present // header.row_nbytes} of {fields.shape[0]} rows are complete"
        return [
            finding(
                "NPY_TRUNCATED",
                file,
                f"the header declares {what} but only {present} data bytes follow{rows}; the file "
                "was cut short (re-export or re-download it)",
            )
        ]
    if present > declared:
        return [
            finding(
                "NPY_TRAILING_BYTES",
                file,
                f"{present - declared} extra bytes follow the data: the header declares {what} "
                f"and the file holds {present} data bytes",
            )
        ]
    return []


def read_npy_header(
    stream: IO[bytes], file_size: int, file: str
) -> tuple[NpyHeader | None, list[Finding]]:
    """Read and parse the header from the stream's current position (the start of the file).

    Returns ``(header, findings)``: the header is ``None`` exactly when a finding is an error
    (bad magic, version, header text or dtype, or a data length that does not match the
    declared shape). A usable header with the game's quirks comes with one ``NPY_GAME_HEADER``
    info finding naming them. Never raises on bad bytes; allocates nothing from the shape.
    """
    pre = _read_preamble(stream, file_size, file)
    if isinstance(pre, Finding):
        return None, [pre]
    raw = _read_exact(stream, pre.header_len)
    if len(raw) < pre.header_len:
        return None, [
            finding(
                "NPY_BAD_HEADER",
                file,
                f"the file ends inside the header ({len(raw)} of {pre.header_len} bytes); it "
                "changed while being read or is shorter than reported",
            )
        ]
    split = _split_header_text(raw, pre.encoding)
    if isinstance(split, str):
        return None, [finding("NPY_BAD_HEADER", file, split)]
    text, has_newline = split
    fields = _parse_fields(text, file)
    if isinstance(fields, Finding):
        return None, [fields]
    data_offset = pre.header_start + pre.header_len
    errors = _data_findings(fields, data_offset, file_size, file)
    if errors:
        return None, errors
    quirks = _quirks(pre, fields, has_newline, data_offset)
    header = NpyHeader(
        fields.descr, fields.dtype, fields.shape, fields.fortran_order, data_offset, quirks
    )
    if not quirks:
        return header, []
    return header, [
        finding(
            "NPY_GAME_HEADER",
            file,
            "non-standard NPY header as the game's exporter writes it, read exactly anyway: "
            + ", ".join(quirks),
        )
    ]


def _quirks(
    pre: _Preamble, fields: _Fields, has_newline: bool, data_offset: int
) -> tuple[str, ...]:
    """Human phrases for each tolerated deviation from the NPY specification."""
    quirks: list[str] = []
    if pre.game_magic:
        quirks.append("UTF-8 encoded magic (C2 93)")
    quirks.extend(fields.javascript_bools)
    if not has_newline:
        quirks.append("header not newline-terminated")
    if data_offset % 16:  # numpy aligns to 64 since 1.14, to 16 before: both are standard
        quirks.append(f"data offset {data_offset} not 64-byte aligned")
    return tuple(quirks)


# --------------------------------------------------------------------------------------------
# layout of a file role


def _shape_pattern(ndim: int, trailing_shape: tuple[int, ...]) -> str:
    leading = ["N"] * max(ndim - len(trailing_shape), 0)
    parts = leading + [str(d) for d in trailing_shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _dtype_words(dtype: np.dtype[Any]) -> str:
    """'uint8', 'float32 little-endian', ... for messages."""
    if dtype.itemsize == 1:
        return dtype.name
    big = dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
    order = "big" if big else "little"
    return f"{dtype.name} {order}-endian"


def check_layout(
    header: NpyHeader,
    file: str,
    *,
    dtype: str,
    trailing_shape: tuple[int, ...],
    ndim: int,
) -> list[Finding]:
    """Check a parsed header against what one file role must hold (dtype, C order, shape).

    ``dtype`` is the expected descr ('|u1' for frames, '<f4' for timestamps); equivalent
    spellings of the same dtype ('<u1', '=u1', 'u1') are accepted, another byte order is not.
    """
    found: list[Finding] = []
    expected = np.dtype(dtype)
    if header.dtype != expected or header.dtype.kind != expected.kind:
        found.append(
            finding(
                "NPY_BAD_DTYPE",
                file,
                f"expected dtype {dtype!r} ({_dtype_words(expected)}), found {header.descr!r} "
                f"({_dtype_words(header.dtype)})",
            )
        )
    if header.fortran_order:
        found.append(
            finding(
                "NPY_FORTRAN_ORDER",
                file,
                "expected C order, found fortran_order True; re-save the array in C order "
                "(np.ascontiguousarray)",
            )
        )
    tail = header.shape[len(header.shape) - len(trailing_shape) :] if trailing_shape else ()
    if len(header.shape) != ndim or tuple(tail) != tuple(trailing_shape):
        found.append(
            finding(
                "NPY_BAD_SHAPE",
                file,
                f"expected shape {_shape_pattern(ndim, trailing_shape)} ({ndim} dimensions), "
                f"found {header.shape}",
            )
        )
    return found


# --------------------------------------------------------------------------------------------
# reading data


def _stream_name(stream: IO[bytes], file: str | None) -> str:
    if file:
        return file
    name = getattr(stream, "name", None)
    return str(name) if name else "<npy stream>"


def _go_to(stream: IO[bytes], offset: int, file: str) -> None:
    """Move to ``offset``: read and discard forward (archive members), else seek back."""
    pos = stream.tell()
    while pos < offset:
        skipped = stream.read(min(offset - pos, _SKIP_CHUNK))
        if not skipped:
            raise InputError(
                f"{file}: the stream ended at byte {pos}, before the data at byte {offset}; "
                "the file changed while being read"
            )
        pos += len(skipped)
    if pos > offset:
        stream.seek(offset)


def _byte_view(array: npt.NDArray[Any]) -> memoryview:
    """A writable byte view of a fresh C-contiguous array, for readinto."""
    return array.reshape(-1).view(np.uint8).data


def _fill(stream: IO[bytes], view: memoryview, file: str, where: str) -> None:
    """Fill ``view`` completely from the stream, looping over short reads."""
    got = 0
    readinto = getattr(stream, "readinto", None)
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:])
        else:
            part = stream.read(len(view) - got)
            n = len(part)
            view[got : got + n] = part
        if not n:
            raise InputError(
                f"{file}: the stream ended {len(view) - got} bytes short {where}; the file "
                "changed while being read or is truncated (validate it again)"
            )
        got += n


def iter_npy_chunks(
    stream: IO[bytes], header: NpyHeader, rows_per_chunk: int, *, file: str | None = None
) -> Iterator[npt.NDArray[Any]]:
    """Yield the array in consecutive C-order chunks along axis 0, reading sequentially.

    Each chunk is a fresh array of at most ``rows_per_chunk`` rows with ``header.dtype`` and
    shape ``(k, *shape[1:])``; memory is bounded by one chunk. Works on forward-only streams
    (the gap up to ``data_offset`` is read and discarded). ``file`` names the file in errors
    (default: the stream's ``name``). Raises InputError if the stream ends early.
    """
    name = _stream_name(stream, file)
    if rows_per_chunk < 1:
        raise ValueError(f"rows_per_chunk must be at least 1, not {rows_per_chunk}")
    if not header.shape:
        raise InputError(f"{name}: a 0-d array has no rows to read in chunks")
    if header.fortran_order and len(header.shape) > 1:
        raise InputError(f"{name}: a Fortran-order array cannot be read in rows (C order needed)")
    _go_to(stream, header.data_offset, name)
    rows, rest = header.shape[0], header.shape[1:]
    for start in range(0, rows, rows_per_chunk):
        k = min(rows_per_chunk, rows - start)
        chunk = np.empty((k, *rest), dtype=header.dtype)
        _fill(stream, _byte_view(chunk), name, f"in rows {start}-{start + k - 1} of {rows}")
        yield chunk


def read_npy_small(
    stream: IO[bytes],
    header: NpyHeader,
    max_bytes: int = 64 * 2**20,
    *,
    file: str | None = None,
) -> npt.NDArray[Any]:
    """Read a whole small array (such as timestamps); InputError when it exceeds ``max_bytes``."""
    name = _stream_name(stream, file)
    if header.nbytes > max_bytes:
        raise InputError(
            f"{name}: the array holds {header.nbytes} bytes, more than the {max_bytes} this "
            "reader loads at once; read it in chunks instead"
        )
    _go_to(stream, header.data_offset, name)
    flat = np.empty(math.prod(header.shape), dtype=header.dtype)
    _fill(stream, _byte_view(flat), name, "in the array data")
    return flat.reshape(header.shape, order="F" if header.fortran_order else "C")


def npy_bytes(array: npt.NDArray[Any]) -> bytes:
    """``array`` as a standard NPY 1.0 file, byte for byte what ``np.save`` writes (no pickle)."""
    buf = io.BytesIO()
    npy_format.write_array(buf, array, version=(1, 0), allow_pickle=False)
    return buf.getvalue()
