"""Fuzzing the three parsers that untrusted bytes reach first, and what they feed.

Every example must end in exactly one of two ways: accepted, or refused with registered
findings. Never an exception; a hang fails the run through pytest-timeout (there is no
wall-clock bound per example: this machine is shared, and speed is not what these tests claim).
What ``test_npy``, ``test_jsonl`` and ``test_archives`` already fuzz (random bytes into
``read_npy_header``, random lines into ``iter_jsonl``, damaged archives into ``list_members``)
is not repeated; here the inputs are *structured* (header dicts built from their grammar, rows
and metadata in the real exporter's format from ``testing.synth`` mutated token by token, such
bundles inside mutated archives) and the property goes further down: the data reader after the
header, every line accounted for, and discovery + validation + hashing of whatever bundle a
damaged archive still yields.
"""

from __future__ import annotations

import functools
import io
import json
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reacture_convert.findings import CODES, Finding, Severity, has_errors
from reacture_convert.ingest.bundle import ROLES
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl, parse_metadata
from reacture_convert.ingest.legacy import iter_frame_objects
from reacture_convert.ingest.npy import (
    check_layout,
    iter_npy_chunks,
    read_npy_header,
    read_npy_small,
)
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.storage import Output
from reacture_convert.run.convert import ConvertOptions, convert_session
from reacture_convert.testing.synth import BundleSpec, write_bundle

FUZZ = settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])
PREFIX = "reacture_1795600000000"


def assert_coded(findings: list[Finding]) -> None:
    for f in findings:
        assert f.code in CODES and f.severity is CODES[f.code][0], f


@functools.cache
def sample() -> dict[str, bytes]:
    """A small real-format bundle (4 frames), by role (a function, not a fixture: Hypothesis
    would print a fixture's megabytes with every failing example)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bundle(
            Path(tmp) / "b", BundleSpec(n_frames=4, prefix=PREFIX, events_per_frame=1.0)
        )
        return {role: (folder / f"{PREFIX}_{role}").read_bytes() for role in ROLES}


class ShortReads(io.RawIOBase):
    """A forward-only stream that returns at most ``step`` bytes a read (an archive member)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.buf, self.step = io.BytesIO(data), step

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        return self.buf.readinto(view[: self.step])

    def tell(self) -> int:
        return self.buf.tell()


# --- .npy: headers built from their grammar, then the data behind them ------------------------

DESCRS = st.one_of(
    st.sampled_from(
        [
            "'|u1'",
            "'<f4'",
            "'<u1'",
            "'>f4'",
            "'|b1'",
            "'<i8'",
            "'<c16'",
            "'|O'",
            "'O'",
            "'<U4'",
            "'V8'",
            "'|S3'",
            "'<f4,<f4'",
            "[('a', '<f4')]",
            "('<f4', (2,))",
            "'<M8[ms]'",
            "'u1'",
            "'=f4'",
            '"<f4"',
            "4",
            "None",
            "'<f99'",
            "'|f4'",
        ]
    ),
    st.text("<>|=biufcOUSVMm0123456789[]()',", max_size=12).map(repr),
)
DIMS = st.one_of(st.integers(0, 6), st.sampled_from([128, 3, -1, 2**31, 2**63, 2**64]))
SHAPES = st.one_of(
    st.lists(DIMS, max_size=5).map(lambda ds: "(" + "".join(f"{d}, " for d in ds) + ")"),
    st.sampled_from(
        [
            "(4, 128, 128, 3)",
            "(4,)",
            "()",
            "[4]",
            "4",
            "(4 128)",
            "(,)",
            "(0x4,)",
            "(4.0,)",
            "(True,)",
            "(-0,)",
            "(1_0,)",
        ]
    ),
)
BOOLS = st.sampled_from(["False", "True", "false", "true", "0", "None", "'False'"])


@st.composite
def npy_files(draw: st.DrawFn) -> bytes:
    """An .npy file: a header dict from the grammar (with optional key noise), a version and
    magic, padding, and a data length that is often exactly right, sometimes off by a little."""
    items = [("descr", draw(DESCRS)), ("fortran_order", draw(BOOLS)), ("shape", draw(SHAPES))]
    if draw(st.booleans()):
        items = draw(st.permutations(items))
    if draw(st.integers(0, 9)) == 0:
        items.append((draw(st.sampled_from(["descr", "extra", "__class__"])), "1"))
    if draw(st.integers(0, 9)) == 0:
        items.pop(draw(st.integers(0, len(items) - 1)))
    text = (
        "{"
        + ", ".join(f"'{k}': {v}" for k, v in items)
        + draw(st.sampled_from([", }", "}", " ,}", ",, }"]))
        + " " * draw(st.integers(0, 80))
    )
    text += draw(st.sampled_from(["\n", "", "\n\n", "\t"]))
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (1, 0), (0, 9)]))
    game = draw(st.booleans())
    magic = b"\xc2\x93NUMPY" if game else b"\x93NUMPY"
    raw = text.encode("utf-8" if version == (3, 0) else "latin1", errors="replace")
    size = 2 if version[0] < 2 else 4
    length = len(raw) + draw(st.sampled_from([0, 0, 0, -1, 1, 1000]))
    header = magic + bytes(version) + max(length, 0).to_bytes(size, "little") + raw
    # data: what a (4, 128, 128, 3) uint8 or a (4,) float32 array takes, give or take
    n = draw(st.sampled_from([0, 16, 4 * 128 * 128 * 3, 4 * 128 * 128 * 3 + 7, 3, 1]))
    return (
        header + bytes(draw(st.integers(0, 255)) for _ in range(min(n, 8))) + bytes(max(n - 8, 0))
    )


@FUZZ
@given(data=npy_files(), step=st.sampled_from([1, 7, 4096, 1 << 20]))
def test_npy_header_and_data_never_raise(data: bytes, step: int) -> None:
    """A header is accepted exactly when the file holds what it declares, and then the whole
    array reads back from a forward-only stream with short reads, byte for byte."""
    stream: Any = ShortReads(data, step)
    header, found = read_npy_header(stream, len(data), "x.npy")
    assert_coded(found)
    if header is None:
        assert has_errors(found)
        return
    assert not has_errors(found)
    assert header.data_offset + header.nbytes == len(data)
    layout = check_layout(header, "x.npy", dtype="|u1", trailing_shape=(128, 128, 3), ndim=4)
    assert_coded(layout)
    payload = data[header.data_offset :]
    if header.shape and not (header.fortran_order and len(header.shape) > 1):
        stream = ShortReads(data, step)
        chunks = list(iter_npy_chunks(stream, header, 3))
        assert b"".join(c.tobytes() for c in chunks) == payload
    small = read_npy_small(io.BytesIO(data), header)
    assert small.shape == header.shape and small.dtype == header.dtype
    assert small.tobytes(order="F" if header.fortran_order else "C") == payload


# --- data.jsonl: real rows mutated token by token ---------------------------------------------

TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"-0",
    b"null",
    b"true",
    b"\x00",
    b"\x1f",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"\r",
    b"\n",
    b" ",
    b'"type":"player_action"',
    b'"type":1',
    b'"visual_frame_path":"frames/frame_999999.npy"',
    b'"robot":{"position":{"x":1,"x":2}}',
    b"9" * 30,
    b"[" * 70,
    b'{"a":' * 70,
]


@st.composite
def mutated_lines(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """Some real rows, each maybe cut, with tokens inserted or bytes replaced anywhere."""
    picked = draw(st.lists(st.sampled_from(lines), min_size=1, max_size=6))
    out = []
    for line in picked:
        line = bytearray(line)
        for _ in range(draw(st.integers(0, 3))):
            pos = draw(st.integers(0, len(line)))
            token = draw(st.sampled_from(TOKENS))
            if draw(st.booleans()):
                line[pos:pos] = token
            else:
                line[pos : pos + len(token)] = token
        if draw(st.integers(0, 5)) == 0:
            line = line[: draw(st.integers(0, len(line)))]
        out.append(bytes(line))
    return draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"])).join(out)


def _check_jsonl(data: bytes, max_line_bytes: int = 1 << 20) -> None:
    """Every non-empty line gives a row or at least one finding at that line, in order."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    accounted: set[int] = set()
    last = 0
    for item in iter_jsonl(io.BytesIO(data), "d.jsonl", max_line_bytes=max_line_bytes):
        if isinstance(item, Finding):
            assert_coded([item])
            if item.line is None:
                assert item.code == "JSONL_EMPTY"
                continue
        else:
            assert isinstance(item, ParsedRow) and item.kind in ("periodic", "event", "action")
            assert isinstance(item.obj, dict) and item.obj.get("type") in (
                "robot_state",
                "player_action",
            )
        assert item.line is not None and 1 <= item.line <= len(lines)
        assert item.line >= last  # in file order
        last = item.line
        accounted.add(item.line)
    expected = {
        i
        for i, line in enumerate(lines, 1)
        if line.strip() or (i == 1 and line.startswith(b"\xef\xbb\xbf"))
    }
    assert expected <= accounted


@FUZZ
@given(data=st.data())
def test_mutated_real_rows_are_rows_or_located_findings(data: st.DataObject) -> None:
    text = data.draw(mutated_lines(sample()["data.jsonl"].split(b"\n")))
    _check_jsonl(text)
    _check_jsonl(text, max_line_bytes=data.draw(st.integers(1, 2000)))


@settings(deadline=None, max_examples=60)
@given(
    depth=st.integers(60, 200_000),
    opener=st.sampled_from([b"[", b'{"a":', b'[{"a":']),
    cut=st.booleans(),
)
def test_deep_lines_never_recurse(depth: int, opener: bytes, cut: bool) -> None:
    closer = {b"[": b"]", b'{"a":': b"}", b'[{"a":': b"}]"}[opener] * depth
    line = opener * depth + b"1" + closer
    _check_jsonl(line[: len(line) // 2] if cut else line)
    meta, raw, found = parse_metadata(line, "m.json")
    assert_coded(found)
    assert meta is None and has_errors(found)


@FUZZ
@given(data=st.data())
def test_mutated_metadata_is_accepted_or_refused(data: st.DataObject) -> None:
    text = data.draw(mutated_lines(sample()["metadata.json"].split(b"\n")))
    meta, raw, found = parse_metadata(text, "m.json")
    assert_coded(found)
    assert (meta is None) == has_errors(found)
    assert raw is None or isinstance(raw, dict)
    if meta is not None:
        assert json.loads(text) == raw  # what is accepted is plain JSON, read the same


@FUZZ
@given(data=st.data())
def test_mutated_legacy_frames_json_never_raises(data: st.DataObject) -> None:
    """The legacy reader's JSON list walker: objects, or its own refusal (``_Bad``)."""
    obj = {
        "path": "frames/frame_000000.npy",
        "timestamp_ms": 1200,
        "width": 128,
        "height": 128,
        "shape": [128, 128, 3],
        "dtype": "uint8",
        "data_base64": "AAAA",
    }
    line = json.dumps([obj, obj]).encode()
    text = data.draw(mutated_lines([line]))
    try:
        objects = list(iter_frame_objects(io.BytesIO(text)))
    except UnicodeDecodeError:
        return  # as_five_file turns this into LEGACY_BAD_FRAMES
    except Exception as e:  # noqa: BLE001
        assert type(e).__name__ == "_Bad", repr(e)
        assert getattr(e, "code", None) in CODES
        return
    assert all(isinstance(o, dict) for o in objects)


# --- archives: real bundles inside mutated zip / tar / tar.gz ------------------------------------


def _archive(kind: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    members = [(f"s/{PREFIX}_{role}", data) for role, data in files.items()]
    if kind.startswith("zip"):
        method = {
            "zip": zipfile.ZIP_DEFLATED,
            "zip-stored": zipfile.ZIP_STORED,
            "zip-bzip2": zipfile.ZIP_BZIP2,
        }[kind]
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in members:
                zf.writestr(name, data)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz" if kind == "tar.gz" else "w") as tf:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


KINDS = ("zip", "zip-stored", "zip-bzip2", "tar", "tar.gz")


def _landmarks(raw: bytes, kind: str) -> list[int]:
    """Offsets where the structure lives: zip headers and central directory, tar headers."""
    if kind.startswith("zip"):
        marks = [
            i for sig in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06") for i in _find_all(raw, sig)
        ]
    elif kind == "tar":
        marks = [i for i in range(0, len(raw), 512) if raw[i + 257 : i + 262] == b"ustar"]
    else:
        marks = [0, 10, len(raw) - 8]
    return marks or [0]


def _find_all(raw: bytes, sig: bytes) -> Iterator[int]:
    i = raw.find(sig)
    while i >= 0:
        yield i
        i = raw.find(sig, i + 1)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    raw = bytearray(archives()[kind])
    marks = _landmarks(bytes(raw), kind)
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):  # at a header: the fields that steer the reader
            pos = min(draw(st.sampled_from(marks)) + draw(st.integers(0, 90)), len(raw) - 1)
        else:  # anywhere: mostly member data
            pos = draw(st.integers(0, len(raw) - 1))
        raw[pos] = draw(st.one_of(st.integers(0, 255), st.sampled_from([0, 0xFF, 0x2F, 0x2E])))
    if draw(st.integers(0, 4)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return kind, bytes(raw)


@functools.cache
def archives() -> dict[str, bytes]:
    return {kind: _archive(kind, sample()) for kind in KINDS}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-archives")


def _judge(path: Path, out: Output) -> None:
    """discover, then for every bundle found: validate it, and convert it (hashing included)
    as a batch task does. A task result of ``failed`` means an unexpected exception."""
    found = discover([str(path)])
    assert_coded(list(found.findings))
    for bundle in found.bundles:
        report = validate_bundle(bundle)
        assert_coded(list(report.findings))
        result = convert_session(bundle, out, ConvertOptions(), run_id="fuzz")
        entry = result.entry
        assert entry.status in ("converted", "rejected"), entry.reason
        assert_coded(list(entry.findings))
        if not report.ok:
            assert entry.status == "rejected"
        elif entry.status == "rejected":  # damage where validation does not read (README.md)
            assert "ARCHIVE_UNREADABLE" in {f.code for f in entry.findings}


def test_a_zip_local_name_that_is_not_its_utf8_is_unreadable(tmp_path: Path) -> None:
    """A local header whose name bytes are not the UTF-8 its flag says: zipfile raises
    UnicodeDecodeError when the member is opened; that is a damaged archive (a finding)."""
    raw = bytearray(_archive("zip", sample()))
    at = raw.find(b"PK\x03\x04")
    raw[at + 6 : at + 8] = (0x800).to_bytes(2, "little")  # flag: names are UTF-8
    raw[at + 30] = 0x80  # the first byte of the local name: not UTF-8
    path = tmp_path / "x.zip"
    path.write_bytes(bytes(raw))
    out = Output(str(tmp_path / "out"))
    _judge(path, out)
    (bundle,) = discover([str(path)]).bundles
    assert "ARCHIVE_UNREADABLE" in {f.code for f in validate_bundle(bundle).findings}


@settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_damaged_archives_give_bundles_or_findings(fuzz_dir: Path, data: st.DataObject) -> None:
    kind, raw = data.draw(damaged())
    suffix = {"zip-stored": "zip", "zip-bzip2": "zip"}.get(kind, kind)
    path = fuzz_dir / f"x.{suffix}"
    path.write_bytes(raw)
    _judge(path, Output(str(fuzz_dir / "out")))


@settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["zip", "tar", "tar.gz"]),
    raw=st.binary(max_size=2000),
    head=st.sampled_from(
        [b"", b"PK\x03\x04", b"PK\x05\x06" + bytes(18), b"\x1f\x8b\x08", b"ustar"]
    ),
)
def test_random_bytes_named_as_archives_give_findings(
    fuzz_dir: Path, kind: str, raw: bytes, head: bytes
) -> None:
    path = fuzz_dir / f"r.{kind}"
    path.write_bytes(head + raw)
    found = discover([str(path)])
    assert_coded(list(found.findings))
    assert all(
        f.severity is not Severity.ERROR or f.file.startswith(str(path)) for f in found.findings
    )
