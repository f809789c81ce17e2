"""The game's earlier four-file export: frames and their times in one JSON list.

A legacy bundle is ``<prefix>_metadata.json``, ``_data.jsonl``, ``_README.md`` and
``_frames.json``: a JSON list of ``{path, timestamp_ms, width, height, shape, dtype,
data_base64}`` objects, the raw RGB bytes base64-encoded. ``as_five_file`` reads that list as a
stream (one object in memory at a time, each capped) and writes the two .npy files the current
exporter would have written into a private temporary folder, so every later step (validation,
Zarr, Parquet, shards, reports) reads a legacy bundle exactly like a five-file one. Every frame
is checked: its index in the list, its shape and dtype, the decoded byte count. The bundle gets
a ``LEGACY_BUNDLE`` finding so nobody mistakes it for a current export.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
from numpy.lib import format as npformat

from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.bundle import BundleRef, FileRef, StorageOptions, open_file
from reacture_convert.ingest.npy import npy_bytes

__all__ = ["as_five_file", "iter_frame_objects", "MAX_OBJECT_BYTES"]

FRAME_BYTES = 128 * 128 * 3
MAX_OBJECT_BYTES = 1 << 20  # one frame object is ~66 KB of base64
_READ = 1 << 16
_FRAME_PATH = re.compile(r"(?:^|/)frame_(\d+)\.(?:npy|png)$")


class _Bad(Exception):
    def __init__(self, code: str, message: str, frame: int | None = None) -> None:
        super().__init__(message)
        self.code, self.frame = code, frame


class _Refused(ValueError):
    """Valid for Python's json module, refused here: NaN/Infinity, repeated keys."""


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        raise _Refused(f"repeated key(s) {sorted({k for k in keys if keys.count(k) > 1})}")
    return obj


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def iter_frame_objects(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Yield the objects of a top-level JSON list one by one, never holding more than one
    object (capped at ``MAX_OBJECT_BYTES``) in memory. Raises ``_Bad`` on malformed input."""
    decoder = json.JSONDecoder(object_pairs_hook=_strict_object, parse_constant=_no_constant)
    buf = ""
    pos = 0
    eof = False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = stream.read(_READ)
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk.decode("utf-8", errors="strict")
        pos = 0
        return True

    def skip_ws() -> str | None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if not more():
                return None

    if skip_ws() != "[":
        raise _Bad("LEGACY_BAD_FRAMES", "frames.json is not a JSON list")
    pos += 1
    index = 0
    first = True
    while True:
        c = skip_ws()
        if c is None:
            raise _Bad(
                "LEGACY_BAD_FRAMES", f"frames.json ends inside the list (after {index} frames)"
            )
        if c == "]":
            pos += 1
            if skip_ws() is not None:
                raise _Bad("LEGACY_BAD_FRAMES", "frames.json has data after its list")
            return
        if not first:
            if c != ",":
                raise _Bad(
                    "LEGACY_BAD_FRAMES",
                    f"expected ',' between frames {index - 1} and {index}",
                    index,
                )
            pos += 1
            skip_ws()
        first = False
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError:
                if len(buf) - pos > MAX_OBJECT_BYTES or not more():
                    raise _Bad(
                        "LEGACY_BAD_FRAMES",
                        f"frame {index} is not a complete JSON object of at most "
                        f"{MAX_OBJECT_BYTES} bytes",
                        index,
                    ) from None
            except (RecursionError, ValueError) as e:  # too deep, _Refused, a 5000-digit int
                raise _Bad("LEGACY_BAD_FRAMES", f"frame {index} is refused: {e}", index) from None
        pos = end
        if not isinstance(obj, dict):
            raise _Bad("LEGACY_BAD_FRAMES", f"frame {index} is not an object", index)
        yield obj
        index += 1


def _frame_bytes(obj: dict[str, Any], index: int) -> tuple[bytes, float]:
    shape = obj.get("shape")
    if (
        list(shape or []) != [128, 128, 3]
        or obj.get("width", 128) != 128
        or obj.get("height", 128) != 128
    ):
        raise _Bad(
            "LEGACY_BAD_FRAMES", f"frame {index}: shape {shape!r}, expected [128, 128, 3]", index
        )
    if obj.get("dtype", "uint8") != "uint8":
        raise _Bad(
            "LEGACY_BAD_FRAMES", f"frame {index}: dtype {obj.get('dtype')!r}, expected uint8", index
        )
    t = obj.get("timestamp_ms")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise _Bad("LEGACY_BAD_FRAMES", f"frame {index}: timestamp_ms {t!r} is not a number", index)
    data = obj.get("data_base64")
    if not isinstance(data, str) or len(data) > 4 * (FRAME_BYTES // 3) + 8:
        raise _Bad("LEGACY_BAD_FRAMES", f"frame {index}: data_base64 missing or too long", index)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(
            "LEGACY_BAD_FRAMES", f"frame {index}: data_base64 is not valid base64", index
        ) from None
    if len(raw) != FRAME_BYTES:
        raise _Bad(
            "LEGACY_BAD_FRAMES",
            f"frame {index}: {len(raw)} bytes decoded, expected {FRAME_BYTES}",
            index,
        )
    path = obj.get("path")
    m = _FRAME_PATH.search(path) if isinstance(path, str) else None
    if m is not None and int(m.group(1)) != index:
        raise _Bad(
            "LEGACY_BAD_FRAMES",
            f"frame {index}: its path {path!r} names frame {int(m.group(1))}",
            index,
        )
    return raw, float(t)


@contextlib.contextmanager
def as_five_file(
    bundle: BundleRef, storage_options: StorageOptions | None = None
) -> Iterator[tuple[BundleRef | None, list[Finding]]]:
    """For a legacy bundle: yield a five-file view of it (frames.npy and timestamps.npy written
    into a private temporary folder, removed afterwards) and its findings; for any other bundle,
    yield it unchanged. Yields ``(None, findings)`` when frames.json cannot be read."""
    if not bundle.is_legacy:
        yield bundle, []
        return
    ref = bundle.files["frames.json"]
    findings = [
        finding(
            "LEGACY_BUNDLE",
            ref.name,
            "legacy four-file export (frames.json with base64 frames); converted to "
            "the same outputs as a five-file bundle",
        )
    ]
    with tempfile.TemporaryDirectory(prefix="reacture-legacy-") as tmp:
        frames_path = os.path.join(tmp, f"{bundle.prefix}_frames.npy")
        ts_path = os.path.join(tmp, f"{bundle.prefix}_timestamps.npy")
        times: list[float] = []
        try:
            with open_file(ref, storage_options) as src, open(frames_path + ".data", "wb") as data:
                for index, obj in enumerate(iter_frame_objects(src)):
                    raw, t = _frame_bytes(obj, index)
                    data.write(raw)
                    times.append(t)
        except _Bad as e:
            findings.append(finding(e.code, ref.name, str(e), frame=e.frame))
            yield None, findings
            return
        except UnicodeDecodeError as e:
            findings.append(finding("LEGACY_BAD_FRAMES", ref.name, f"not UTF-8 text: {e}"))
            yield None, findings
            return
        n = len(times)
        _write_npy(frames_path, frames_path + ".data", np.dtype("|u1"), (n, 128, 128, 3))
        ts = np.asarray(times, dtype="<f4")
        with open(ts_path, "wb") as f:
            f.write(npy_bytes(ts))
        files = dict(bundle.files)
        del files["frames.json"]
        files["frames.npy"] = FileRef(frames_path, os.path.getsize(frames_path))
        files["timestamps.npy"] = FileRef(ts_path, os.path.getsize(ts_path))
        yield BundleRef(bundle.prefix, bundle.source, files), findings


def _write_npy(path: str, data_path: str, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    """A standard NPY v1.0 file from a raw data file, streamed (no whole array in memory)."""
    header = io.BytesIO()
    npformat.write_array_header_1_0(
        header, {"descr": npformat.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    with open(path, "wb") as out, open(data_path, "rb") as data:
        out.write(header.getvalue())
        while block := data.read(1 << 20):
            out.write(block)
    os.remove(data_path)
