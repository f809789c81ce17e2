"""The strict .npy reader: real game files, standard files, a table of broken headers, streams."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reacture_convert.errors import InputError
from reacture_convert.findings import CODES, Severity, has_errors
from reacture_convert.ingest.npy import (
    MAX_HEADER_BYTES,
    NpyHeader,
    check_layout,
    iter_npy_chunks,
    npy_bytes,
    read_npy_header,
    read_npy_small,
)
from reacture_convert.testing.synth import game_npy_header
from tests.helpers.paths import SAMPLE_DIR

MAGIC = b"\x93NUMPY"
FRAME = (128, 128, 3)
FRAME_BYTES = 128 * 128 * 3
GAME_QUIRKS = (
    "UTF-8 encoded magic (C2 93)",
    "JavaScript 'false'",
    "header not newline-terminated",
    "data offset 129 not 64-byte aligned",
)


# --- helpers ----------------------------------------------------------------------------------


class ForwardOnly:
    """A stream that can only go forward, like an archive member: no seek."""

    def __init__(self, data: bytes, max_read: int | None = None) -> None:
        self._buf = io.BytesIO(data)
        self._max = max_read  # simulate short reads

    def _n(self, n: int) -> int:
        return n if self._max is None or n < 0 else min(n, self._max)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(self._n(n))

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        return self._buf.readinto(view[: self._n(len(view))])

    def tell(self) -> int:
        return self._buf.tell()

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("seek")


def as_io(stream: object) -> IO[bytes]:
    return cast(IO[bytes], stream)


def parse(data: bytes, file: str = "x.npy") -> tuple[NpyHeader | None, list[Any]]:
    return read_npy_header(io.BytesIO(data), len(data), file)


def hdr(descr: str = "'<f4'", fortran: str = "False", shape: str = "(2,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def std_file(
    text: str, data: bytes = b"\0" * 8, version: tuple[int, int] = (1, 0), align: int = 64
) -> bytes:
    """A file laid out as numpy writes it: header padded with spaces, newline last."""
    lsize = 2 if version == (1, 0) else 4
    body = text + " "
    body += " " * (-(6 + 2 + lsize + len(body) + 1) % align) + "\n"
    raw = body.encode("utf-8" if version == (3, 0) else "latin1")
    return MAGIC + bytes(version) + len(raw).to_bytes(lsize, "little") + raw + data


def game_file(descr: str, shape: tuple[int, ...], data: bytes) -> bytes:
    return game_npy_header(descr, shape) + data


def saved(array: npt.NDArray[Any], version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=False)
    return buf.getvalue()


def real_npy(bundle: Path, role: str) -> Path:
    (path,) = bundle.glob(f"*_{role}.npy")
    return path


# --- real fixtures ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["frames", "timestamps"])
def test_real_header(real_bundle: Path, role: str) -> None:
    path = real_npy(real_bundle, role)
    size = path.stat().st_size
    item = FRAME_BYTES if role == "frames" else 4
    n = (size - 129) // item
    with open(path, "rb") as f:
        header, found = read_npy_header(f, size, path.name)
    assert header is not None
    assert header.data_offset == 129
    assert header.shape == ((n, *FRAME) if role == "frames" else (n,))
    assert header.descr == ("|u1" if role == "frames" else "<f4")
    assert header.dtype == (np.uint8 if role == "frames" else np.dtype("<f4"))
    assert header.fortran_order is False
    assert header.quirks == GAME_QUIRKS
    assert header.nbytes == size - 129
    assert [f.code for f in found] == ["NPY_GAME_HEADER"]
    assert found[0].severity is Severity.INFO and found[0].file == path.name
    assert all(q in found[0].message for q in GAME_QUIRKS)
    if role == "frames":
        assert check_layout(header, path.name, dtype="|u1", trailing_shape=FRAME, ndim=4) == []
    else:
        assert check_layout(header, path.name, dtype="<f4", trailing_shape=(), ndim=1) == []


@pytest.mark.parametrize(("role", "dtype"), [("frames", "|u1"), ("timestamps", "<f4")])
def test_real_chunks_match_bytes(real_bundle: Path, role: str, dtype: str) -> None:
    path = real_npy(real_bundle, role)
    with open(path, "rb") as f:
        header, _ = read_npy_header(f, path.stat().st_size, path.name)
        assert header is not None
        chunks = list(iter_npy_chunks(f, header, 64))
    assert all(c.dtype == np.dtype(dtype) and c.shape[1:] == header.shape[1:] for c in chunks)
    assert all(len(c) <= 64 for c in chunks)
    expected = np.fromfile(path, dtype=dtype, offset=129)
    assert np.concatenate(chunks).tobytes() == expected.tobytes()


def test_real_timestamps_small_match_bytes(real_bundle: Path) -> None:
    path = real_npy(real_bundle, "timestamps")
    with open(path, "rb") as f:
        header, _ = read_npy_header(f, path.stat().st_size, path.name)
        assert header is not None
        ts = read_npy_small(f, header)
    expected = np.fromfile(path, dtype="<f4", offset=129)
    assert ts.dtype == np.dtype("<f4") and ts.shape == expected.shape
    assert ts.tobytes() == expected.tobytes()


# --- standard files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="<f4"),
        np.zeros((3, *FRAME), dtype=np.uint8),
        np.array([True, False]),
        np.arange(6, dtype=">i8").reshape(2, 3),
        np.array([1 + 2j], dtype="<c16"),
        np.array(7.5, dtype="<f8"),
        np.zeros((0, 4), dtype="<u2"),
        np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3)),
    ],
    ids=["f4", "frames", "bool", "big-endian-i8", "c16", "0-d", "empty", "fortran"],
)
@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)], ids=["v1", "v2", "v3"])
def test_standard_files_have_no_findings(array: npt.NDArray[Any], version: tuple[int, int]) -> None:
    data = saved(array, version)
    header, found = parse(data)
    assert found == []
    assert header is not None and header.quirks == ()
    assert header.shape == array.shape and header.dtype == array.dtype
    assert header.fortran_order == (array.flags.f_contiguous and not array.flags.c_contiguous)
    assert header.data_offset % 64 == 0 and header.nbytes == array.nbytes
    out = read_npy_small(io.BytesIO(data), header)
    assert out.shape == array.shape and np.array_equal(out, array)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(std_file(hdr(), align=16), id="16-byte-aligned-old-numpy"),
        pytest.param(
            std_file("{'shape': (2,), 'descr': '<f4', 'fortran_order': False}"),
            id="other-key-order-no-trailing-comma",
        ),
        pytest.param(std_file(hdr(descr='"<f4"')), id="double-quotes"),
        pytest.param(std_file(hdr(shape="(1, 2, )")), id="tuple-trailing-comma"),
        pytest.param(std_file(hdr(descr="'f4'")), id="native-descr"),
    ],
)
def test_standard_variants_accepted(data: bytes) -> None:
    header, found = parse(data)
    assert header is not None and found == []


# --- broken headers: each gives one exact code ------------------------------------------------


def _huge_shape_file() -> bytes:
    return game_file("|u1", (10**12, *FRAME), b"\0" * 100)


BROKEN = [
    pytest.param(b"", "NPY_BAD_MAGIC", id="empty-file"),
    pytest.param(b"PK\x03\x04" + b"\0" * 200, "NPY_BAD_MAGIC", id="bad-magic-zip"),
    pytest.param(b"\x93NUMPZ\x01\x00" + b"\0" * 100, "NPY_BAD_MAGIC", id="bad-magic-letter"),
    pytest.param(b"\xc2\x93NUMPI\x01\x00", "NPY_BAD_MAGIC", id="bad-game-magic"),
    pytest.param(MAGIC, "NPY_BAD_HEADER", id="truncated-before-version"),
    pytest.param(MAGIC + b"\x01\x00\x76", "NPY_BAD_HEADER", id="truncated-in-header-length"),
    pytest.param(MAGIC + b"\x09\x09" + b"\0" * 100, "NPY_BAD_VERSION", id="version-9.9"),
    pytest.param(MAGIC + b"\x01\x01" + b"\0" * 100, "NPY_BAD_VERSION", id="version-1.1"),
    pytest.param(
        MAGIC + b"\x01\x00" + (1000).to_bytes(2, "little") + hdr().encode(),
        "NPY_BAD_HEADER",
        id="header-length-beyond-file",
    ),
    pytest.param(
        MAGIC
        + b"\x02\x00"
        + (MAX_HEADER_BYTES + 1).to_bytes(4, "little")
        + b" " * (MAX_HEADER_BYTES + 64),
        "NPY_BAD_HEADER",
        id="header-length-over-max",
    ),
    pytest.param(std_file("[1, 2]"), "NPY_BAD_HEADER", id="not-a-dict"),
    pytest.param(std_file(""), "NPY_BAD_HEADER", id="empty-header"),
    pytest.param(
        std_file("{'descr': '<f4', 'fortran_order': False}"), "NPY_BAD_HEADER", id="missing-key"
    ),
    pytest.param(
        std_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}"),
        "NPY_BAD_HEADER",
        id="extra-key",
    ),
    pytest.param(
        std_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}"),
        "NPY_BAD_HEADER",
        id="duplicate-key",
    ),
    pytest.param(std_file(hdr(shape="(-2,)")), "NPY_BAD_HEADER", id="shape-negative"),
    pytest.param(std_file(hdr(shape="(2.0,)")), "NPY_BAD_HEADER", id="shape-float"),
    pytest.param(std_file(hdr(shape="('2',)")), "NPY_BAD_HEADER", id="shape-str"),
    pytest.param(std_file(hdr(shape="(True,)")), "NPY_BAD_HEADER", id="shape-bool"),
    pytest.param(std_file(hdr(shape="[2]")), "NPY_BAD_HEADER", id="shape-list"),
    pytest.param(std_file(hdr(shape="(2)")), "NPY_BAD_HEADER", id="shape-int-not-tuple"),
    pytest.param(std_file(hdr(shape="(2L,)")), "NPY_BAD_HEADER", id="shape-python2-long"),
    pytest.param(
        std_file(hdr(shape="(" + "9" * 5000 + ",)")), "NPY_BAD_HEADER", id="shape-5000-digits"
    ),
    pytest.param(std_file(hdr(fortran="0")), "NPY_BAD_HEADER", id="fortran-order-int"),
    pytest.param(std_file(hdr(fortran="None")), "NPY_BAD_HEADER", id="fortran-order-none"),
    pytest.param(
        std_file(hdr(shape="(__import__('os').system('true'),)")),
        "NPY_BAD_HEADER",
        id="python-expression",
    ),
    pytest.param(std_file(hdr(descr="b'<f4'")), "NPY_BAD_HEADER", id="bytes-literal"),
    pytest.param(std_file(hdr(descr="'<\\x66\\x34'")), "NPY_BAD_HEADER", id="string-escape"),
    pytest.param(std_file(hdr() + " # comment"), "NPY_BAD_HEADER", id="text-after-dict"),
    pytest.param(std_file(hdr(shape="(2,)\n")), "NPY_BAD_HEADER", id="inner-newline"),
    pytest.param(std_file(hdr(descr="[" * 5000 + "]" * 5000)), "NPY_BAD_HEADER", id="deep-nesting"),
    pytest.param(
        MAGIC + b"\x03\x00" + (4).to_bytes(4, "little") + b"{\xff}\n",
        "NPY_BAD_HEADER",
        id="v3-invalid-utf8",
    ),
    pytest.param(std_file(hdr(descr="'O'")), "NPY_UNSAFE_DTYPE", id="descr-O"),
    pytest.param(std_file(hdr(descr="'|O'")), "NPY_UNSAFE_DTYPE", id="descr-|O"),
    pytest.param(std_file(hdr(descr="'object'")), "NPY_UNSAFE_DTYPE", id="descr-object"),
    pytest.param(
        std_file(hdr(descr="[('a', '<f4'), ('b', '|O')]")), "NPY_UNSAFE_DTYPE", id="structured-list"
    ),
    pytest.param(std_file(hdr(descr="'f4,i4'")), "NPY_UNSAFE_DTYPE", id="structured-string"),
    pytest.param(std_file(hdr(descr="'<U8'")), "NPY_BAD_DTYPE", id="descr-unicode"),
    pytest.param(std_file(hdr(descr="'|S4'")), "NPY_BAD_DTYPE", id="descr-bytes"),
    pytest.param(std_file(hdr(descr="'|V8'")), "NPY_BAD_DTYPE", id="descr-void"),
    pytest.param(std_file(hdr(descr="'<M8[ns]'")), "NPY_BAD_DTYPE", id="descr-datetime"),
    pytest.param(std_file(hdr(descr="'<f16'")), "NPY_BAD_DTYPE", id="descr-longdouble"),
    pytest.param(std_file(hdr(descr="'|f4'")), "NPY_BAD_DTYPE", id="descr-no-order-multibyte"),
    pytest.param(std_file(hdr(descr="('<f4', (2,))")), "NPY_BAD_DTYPE", id="descr-subarray"),
    pytest.param(std_file(hdr(descr="4")), "NPY_BAD_HEADER", id="descr-int"),
    pytest.param(std_file(hdr(), data=b"\0" * 5), "NPY_TRUNCATED", id="truncated-data"),
    pytest.param(
        game_file("|u1", (3, *FRAME), b"\0" * (2 * FRAME_BYTES + 7)),
        "NPY_TRUNCATED",
        id="truncated-frames",
    ),
    pytest.param(std_file(hdr(), data=b"\0" * 9), "NPY_TRAILING_BYTES", id="trailing-bytes"),
    pytest.param(
        game_file("<f4", (2,), b"\0" * 12), "NPY_TRAILING_BYTES", id="trailing-timestamps"
    ),
    pytest.param(_huge_shape_file(), "NPY_TRUNCATED", id="huge-declared-shape"),
]


@pytest.mark.parametrize(("data", "code"), BROKEN)
def test_broken_header(data: bytes, code: str) -> None:
    header, found = parse(data, "bad.npy")
    assert header is None
    assert [f.code for f in found] == [code]
    assert CODES[code][0] is Severity.ERROR and has_errors(found)
    assert found[0].file == "bad.npy" and found[0].message


def test_truncated_message_counts_complete_frames() -> None:
    data = game_file("|u1", (3, *FRAME), b"\0" * (2 * FRAME_BYTES + 7))
    _, found = parse(data)
    assert "2 of 3 rows are complete" in found[0].message


def test_trailing_message_counts_extra_bytes() -> None:
    _, found = parse(game_file("<f4", (2,), b"\0" * 12))
    assert "4 extra bytes" in found[0].message


def test_huge_declared_shape_allocates_nothing() -> None:
    data = _huge_shape_file()
    tracemalloc.start()
    try:
        header, found = parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert header is None and [f.code for f in found] == ["NPY_TRUNCATED"]
    assert peak < 1 << 20


def test_javascript_true_is_a_quirk_then_fortran_order_error() -> None:
    text = hdr(descr="'|u1'", fortran="true", shape=f"(1, {', '.join(map(str, FRAME))})")
    header, found = parse(std_file(text, data=b"\0" * FRAME_BYTES))
    assert header is not None and header.fortran_order is True
    assert header.quirks == ("JavaScript 'true'",)
    assert [f.code for f in found] == ["NPY_GAME_HEADER"]
    layout = check_layout(header, "f.npy", dtype="|u1", trailing_shape=FRAME, ndim=4)
    assert [f.code for f in layout] == ["NPY_FORTRAN_ORDER"]


# --- check_layout -----------------------------------------------------------------------------


def _header(descr: str, shape: tuple[int, ...], fortran: bool = False) -> NpyHeader:
    return NpyHeader(descr, np.dtype(descr), shape, fortran, 128)


FRAMES_ROLE: dict[str, Any] = {"dtype": "|u1", "trailing_shape": FRAME, "ndim": 4}
TS_ROLE: dict[str, Any] = {"dtype": "<f4", "trailing_shape": (), "ndim": 1}

LAYOUT = [
    pytest.param(_header("|u1", (5, *FRAME)), FRAMES_ROLE, [], id="frames-ok"),
    pytest.param(_header("<u1", (5, *FRAME)), FRAMES_ROLE, [], id="frames-<u1"),
    pytest.param(_header("=u1", (5, *FRAME)), FRAMES_ROLE, [], id="frames-=u1"),
    pytest.param(_header("u1", (5, *FRAME)), FRAMES_ROLE, [], id="frames-u1"),
    pytest.param(_header("|u1", (0, *FRAME)), FRAMES_ROLE, [], id="frames-empty"),
    pytest.param(_header("<f4", (5,)), TS_ROLE, [], id="timestamps-ok"),
    pytest.param(
        _header("|u1", (5, *FRAME), fortran=True),
        FRAMES_ROLE,
        ["NPY_FORTRAN_ORDER"],
        id="fortran-order",
    ),
    pytest.param(_header("|i1", (5, *FRAME)), FRAMES_ROLE, ["NPY_BAD_DTYPE"], id="frames-int8"),
    pytest.param(_header("|b1", (5, *FRAME)), FRAMES_ROLE, ["NPY_BAD_DTYPE"], id="frames-bool"),
    pytest.param(_header("<f4", (5, *FRAME)), FRAMES_ROLE, ["NPY_BAD_DTYPE"], id="frames-f4"),
    pytest.param(_header(">f4", (5,)), TS_ROLE, ["NPY_BAD_DTYPE"], id="timestamps-big-endian"),
    pytest.param(_header("<f8", (5,)), TS_ROLE, ["NPY_BAD_DTYPE"], id="timestamps-f8"),
    pytest.param(
        _header("|u1", (5, 128, 128, 4)), FRAMES_ROLE, ["NPY_BAD_SHAPE"], id="frames-rgba"
    ),
    pytest.param(_header("|u1", (5, 64, 64, 3)), FRAMES_ROLE, ["NPY_BAD_SHAPE"], id="frames-64px"),
    pytest.param(_header("|u1", FRAME), FRAMES_ROLE, ["NPY_BAD_SHAPE"], id="frames-3d"),
    pytest.param(_header("<f4", (5, 1)), TS_ROLE, ["NPY_BAD_SHAPE"], id="timestamps-2d"),
    pytest.param(_header("<f4", ()), TS_ROLE, ["NPY_BAD_SHAPE"], id="timestamps-0d"),
    pytest.param(
        _header("<f8", (5, 2), fortran=True),
        TS_ROLE,
        ["NPY_BAD_DTYPE", "NPY_FORTRAN_ORDER", "NPY_BAD_SHAPE"],
        id="all-wrong",
    ),
]


@pytest.mark.parametrize(("header", "role", "codes"), LAYOUT)
def test_check_layout(header: NpyHeader, role: dict[str, Any], codes: list[str]) -> None:
    found = check_layout(header, "f.npy", **role)
    assert [f.code for f in found] == codes
    assert all(f.file == "f.npy" for f in found)


def test_check_layout_messages_say_expected_and_found() -> None:
    found = check_layout(_header("<f4", (5, 64, 64, 3)), "f.npy", **FRAMES_ROLE)
    dtype_msg, shape_msg = (f.message for f in found)
    assert "'|u1'" in dtype_msg and "'<f4'" in dtype_msg
    assert "(N, 128, 128, 3)" in shape_msg and "(5, 64, 64, 3)" in shape_msg


# --- chunked and small reads ------------------------------------------------------------------

N = 11


@pytest.fixture
def game_frames() -> tuple[bytes, npt.NDArray[np.uint8]]:
    frames = np.random.default_rng(0).integers(0, 256, (N, *FRAME), dtype=np.uint8)
    return game_file("|u1", frames.shape, frames.tobytes()), frames


@pytest.mark.parametrize("rows", [1, 7, N, N + 5], ids=["1", "7", "N", "N+5"])
@pytest.mark.parametrize("max_read", [None, 1000], ids=["full-reads", "short-reads"])
def test_chunks_forward_only(
    game_frames: tuple[bytes, npt.NDArray[np.uint8]], rows: int, max_read: int | None
) -> None:
    data, frames = game_frames
    header, _ = parse(data)
    assert header is not None
    # a fresh stream at byte 0: the 129-byte gap is read and discarded, never seeked
    chunks = list(iter_npy_chunks(as_io(ForwardOnly(data, max_read)), header, rows))
    assert [len(c) for c in chunks] == [min(rows, N - s) for s in range(0, N, rows)]
    assert all(c.dtype == np.uint8 and c.shape[1:] == FRAME for c in chunks)
    assert all(c.flags.c_contiguous and c.flags.owndata for c in chunks)
    assert np.array_equal(np.concatenate(chunks), frames)


def test_chunks_after_header_on_same_forward_stream(
    game_frames: tuple[bytes, npt.NDArray[np.uint8]],
) -> None:
    data, frames = game_frames
    stream = as_io(ForwardOnly(data))
    header, _ = read_npy_header(stream, len(data), "f.npy")
    assert header is not None and stream.tell() == 129
    assert np.array_equal(np.concatenate(list(iter_npy_chunks(stream, header, 4))), frames)


def test_chunks_seek_back_on_seekable_stream(
    game_frames: tuple[bytes, npt.NDArray[np.uint8]],
) -> None:
    data, frames = game_frames
    header, _ = parse(data)
    assert header is not None
    stream = io.BytesIO(data)
    stream.seek(0, io.SEEK_END)
    assert np.array_equal(np.concatenate(list(iter_npy_chunks(stream, header, 3))), frames)


def test_chunks_stream_ending_early_names_file(
    game_frames: tuple[bytes, npt.NDArray[np.uint8]],
) -> None:
    data, _ = game_frames
    header, _ = parse(data)
    assert header is not None
    short = as_io(ForwardOnly(data[: 129 + 5 * FRAME_BYTES + 3]))
    with pytest.raises(InputError, match="frames.npy.*short"):
        list(iter_npy_chunks(short, header, 4, file="frames.npy"))
    with pytest.raises(InputError, match="frames.npy"):
        list(iter_npy_chunks(as_io(ForwardOnly(data[:50])), header, 4, file="frames.npy"))


def test_chunks_refuse_fortran_2d() -> None:
    data = saved(np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3)))
    header, _ = parse(data)
    assert header is not None
    with pytest.raises(InputError):
        list(iter_npy_chunks(io.BytesIO(data), header, 1))


def test_read_small_refuses_large() -> None:
    data = game_file("<f4", (100,), b"\0" * 400)
    header, _ = parse(data)
    assert header is not None
    with pytest.raises(InputError, match="400 bytes"):
        read_npy_small(io.BytesIO(data), header, max_bytes=399)
    assert read_npy_small(io.BytesIO(data), header, max_bytes=400).shape == (100,)


def test_read_small_forward_only() -> None:
    ts = np.arange(9, dtype="<f4") * 250
    data = game_file("<f4", ts.shape, ts.tobytes())
    header, _ = parse(data)
    assert header is not None
    assert np.array_equal(read_npy_small(as_io(ForwardOnly(data, 3)), header), ts)


# --- properties -------------------------------------------------------------------------------

# the real sample's timestamps.npy, whole (497 bytes): game header + 92 float32
(_REAL_TS,) = SAMPLE_DIR.glob("*_timestamps.npy")
REAL_TS_FILE = _REAL_TS.read_bytes()


def _never_raises(data: bytes) -> None:
    header, found = parse(data)
    if header is None:
        assert found and has_errors(found)
    else:
        assert not has_errors(found)
        assert header.data_offset + header.nbytes == len(data)
        assert bool(header.quirks) == bool(found)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    _never_raises(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_after_magic_never_raise(tail: bytes) -> None:
    _never_raises(MAGIC + tail)
    _never_raises(b"\xc2" + MAGIC + b"\x01\x00" + tail)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 140), st.integers(0, 255)), max_size=6),
    st.integers(0, len(REAL_TS_FILE)),
    st.binary(max_size=8),
)
def test_mutated_real_file_never_raises(
    edits: list[tuple[int, int]], cut: int, insert: bytes
) -> None:
    data = bytearray(REAL_TS_FILE)
    for pos, value in edits:
        data[pos] = value
    _never_raises(bytes(data))
    _never_raises(bytes(data[:cut]))
    _never_raises(bytes(data[:cut] + insert + data[cut:]))


_HEADER_ALPHABET = st.sampled_from(list("{}()[],:'\" \t\n0123456789-.eETFtruefalsOdscrph_<|u14"))


@settings(max_examples=300, deadline=None)
@given(st.text(_HEADER_ALPHABET, max_size=120))
def test_random_header_text_never_raises(text: str) -> None:
    _never_raises(std_file(text, data=b""))
    _never_raises(std_file(hdr(shape=text), data=b""))


SIMPLE_DTYPES = st.sampled_from(
    [
        "|b1",
        "|u1",
        "|i1",
        "<u2",
        ">i2",
        "<i4",
        "<u8",
        ">i8",
        "<f2",
        "<f4",
        ">f4",
        "<f8",
        "<c8",
        ">c16",
    ]
).map(np.dtype)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(SIMPLE_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_npy_bytes_round_trip(array: npt.NDArray[Any]) -> None:
    data = npy_bytes(array)
    assert data == saved(array, (1, 0))
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    assert loaded.tobytes() == array.tobytes()
    header, found = parse(data)
    assert found == [] and header is not None
    assert read_npy_small(io.BytesIO(data), header).tobytes() == array.tobytes()


def test_npy_bytes_refuses_object_arrays() -> None:
    with pytest.raises(ValueError):
        npy_bytes(np.array([{"a": 1}], dtype=object))
