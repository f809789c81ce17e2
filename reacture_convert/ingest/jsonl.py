"""Strict, streaming parser for data.jsonl and a parser for metadata.json.

``iter_jsonl`` reads a byte stream in bounded chunks (any object with ``read(n)``: local files,
fsspec files, archive members), splits it on ``b"\\n"`` only, and yields, for every line, the
findings about it followed by a ``ParsedRow`` when the line is a JSON object with a usable
``type``. Rows with errors are still yielded so that callers can keep counting; the findings say
which file and which 1-based line is wrong, and how.

The common case is made cheap: msgspec decodes in C; nesting depth is bounded before decoding by
counting brackets; duplicate keys (which msgspec drops silently, keeping the last) are detected
by comparing key-token counts of the raw line and of the re-encoded object, and only when they
differ is the line re-read with an exact duplicate check; a row's shape is proved by
``msgspec.convert`` against its Struct, and only rows that fail it are walked in Python to name
every problem with its JSON path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import IO, Any, Final, cast

import msgspec

from reacture_convert.findings import Finding, finding
from reacture_convert.ingest.schema import (
    PERIODIC_EVENT,
    ROW_TYPES,
    Metadata,
    ShapeProblem,
    check_shape,
    is_exact_shape,
    json_type_name,
)

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_DEPTH",
    "FRAME_REF_RE",
    "PERCENT_FIELDS",
    "DAMAGE_AMOUNT_EVENTS",
    "ParsedRow",
    "iter_jsonl",
    "iter_row_lines",
    "iter_row_line_runs",
    "RowLine",
    "line_items",
    "parse_metadata",
]

MAX_LINE_BYTES: Final = 1 << 20
MAX_DEPTH: Final = 64
FRAME_REF_RE: Final = re.compile(r"^frames/frame_(\d{6,})\.npy$")

_CHUNK: Final = 1 << 16
_FAILED: Final = object()  # "this line gave no value" (a finding says why)
_BOM: Final = b"\xef\xbb\xbf"
_INT32_MAX: Final = 2**31 - 1
_MAX_LISTED: Final = 8  # problems named in one finding's message
# Ranges the game promises. ``damage`` holds the damage *amount* in these events' rows.
PERCENT_FIELDS: Final = ("battery", "health", "fuel")
DAMAGE_AMOUNT_EVENTS: Final = frozenset({"collision_damage", "damage_from_zone"})

# A JSON string token (linear: each step consumes one char or one escape pair).
_STRING_RE: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_QUOTE_THEN_SPACE: Final = (b'" ', b'"\t', b'"\r')  # possible whitespace before a key's colon
_BRACKETS_ONLY: Final = bytes(c for c in range(256) if c not in b"[]{}")
_DEPTH_STEP: Final = [0] * 256
for _c in b"[{":
    _DEPTH_STEP[_c] = 1
for _c in b"]}":
    _DEPTH_STEP[_c] = -1


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One decoded data.jsonl row.

    ``row_index`` is the 0-based index of the row among the file's non-empty lines: the line
    number minus one, unless empty lines (a warning) were skipped before it. ``line`` is the
    exact 1-based line number (None for rows not built by ``iter_jsonl``).
    """

    row_index: int
    kind: str  # "periodic" | "event" | "action"
    timestamp_ms: int | None  # robot_state: timestamp_ms; player_action: timestamp
    frame_index: int | None  # the number in visual_frame_path (periodic rows)
    obj: dict[str, Any]  # the decoded JSON object, exactly as in the file
    line: int | None = None


# --- lines --------------------------------------------------------------------------------------
def _iter_line_chunks(
    stream: IO[bytes], max_line_bytes: int
) -> Iterator[tuple[int, list[bytes | None]]]:
    """The lines of each chunk read: ``(1-based number of the first, contents)``; content is None
    for an over-long line.

    Memory stays bounded by ``max_line_bytes`` plus one chunk: the tail of an over-long line is
    dropped as it is read. A final line without ``\\n`` is a line; a final ``\\n`` ends the last
    line and does not start an empty one.
    """
    lineno = 0
    pending: list[bytes] = []
    pending_len = 0
    too_long = False
    while chunk := stream.read(_CHUNK):
        parts = chunk.split(b"\n")
        if len(parts) > 1:
            first = parts[0]
            if too_long or pending_len + len(first) > max_line_bytes:
                done: list[bytes | None] = [None]
            else:
                done = [b"".join((*pending, first)) if pending else first]
            pending, pending_len, too_long = [], 0, False
            middle: list[bytes | None] = list(parts[1:-1])
            if middle and max(map(len, parts[1:-1])) > max_line_bytes:
                middle = [p if len(p) <= max_line_bytes else None for p in parts[1:-1]]
            done += middle
            yield lineno + 1, done
            lineno += len(done)
        tail = parts[-1]
        if tail and not too_long:
            pending.append(tail)
            pending_len += len(tail)
            if pending_len > max_line_bytes:
                pending, too_long = [], True
    if pending_len or too_long:
        yield lineno + 1, [None if too_long else b"".join(pending)]


def _iter_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(1-based line number, content)`` for every line (see ``_iter_line_chunks``)."""
    for first, lines in _iter_line_chunks(stream, max_line_bytes):
        yield from enumerate(lines, first)


# --- decoding -----------------------------------------------------------------------------------
def _depth(raw: bytes) -> int:
    """Maximum nesting depth of ``[``/``{`` outside strings (C-speed scans, no recursion)."""
    brackets = _STRING_RE.sub(b"", raw).translate(None, _BRACKETS_ONLY)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets), initial=0))


def _duplicate_keys(raw: bytes, obj: Any) -> list[str]:
    """JSON paths of repeated keys in ``raw``: a cheap proof of none, the exact check if unsure.

    Without ``\\u`` escapes and whitespace before colons, every key contributes one ``":`` and
    every other ``":`` sits in a string as ``\\":``, which survives re-encoding one for one; so the
    counts agree exactly when decoding dropped nothing.
    """
    if (
        b"\\u" not in raw
        and not any(mark in raw for mark in _QUOTE_THEN_SPACE)
        and raw.count(b'":') == msgspec.json.encode(obj).count(b'":')
    ):
        return []
    return _duplicate_key_paths(raw)


class _PairsDict(dict[str, Any]):
    """A dict that remembers which keys its JSON object repeated."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _PairsDict:
    d = _PairsDict(pairs)
    seen: set[str] = set()
    d.duplicates = []
    for key, _ in pairs:
        if key in seen:
            d.duplicates.append(key)
        seen.add(key)
    return d


def _duplicate_key_paths(raw: bytes) -> list[str]:
    """JSON paths of every repeated key (the exact, slower check)."""
    out: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, _PairsDict):
            out.extend(f"{path}.{k}" for k in value.duplicates)
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    try:
        walk(json.loads(raw, object_pairs_hook=_pairs_hook), "$")
    except ValueError:  # e.g. an integer beyond Python's int-from-str digit limit
        pass
    return out


def _decode(raw: bytes, file: str, line: int, max_depth: int) -> tuple[list[Finding], Any]:
    """Decode one non-empty line; on failure the value is ``_FAILED`` and a finding says why."""
    if raw.count(b"{") + raw.count(b"[") > max_depth and (depth := _depth(raw)) > max_depth:
        msg = f"nests {depth} levels deep; at most {max_depth} are allowed"
        return [finding("JSONL_TOO_DEEP", file, msg, line=line)], _FAILED
    try:
        return [], msgspec.json.decode(raw)
    except UnicodeDecodeError as e:
        return [_bad_utf8(file, line, e)], _FAILED
    except RecursionError:
        msg = f"nests deeper than allowed (at most {max_depth} levels)"
        return [finding("JSONL_TOO_DEEP", file, msg, line=line)], _FAILED
    except msgspec.DecodeError as e:
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as ue:
                return [_bad_utf8(file, line, ue)], _FAILED
        return [finding("JSONL_BAD_JSON", file, f"not valid JSON: {e}", line=line)], _FAILED


def _bad_utf8(file: str, line: int, e: UnicodeDecodeError) -> Finding:
    msg = f"not valid UTF-8: {e.reason} at byte {e.start}"
    return finding("JSONL_BAD_UTF8", file, msg, line=line)


# --- rows ---------------------------------------------------------------------------------------
def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown if len(items) <= _MAX_LISTED else f"{shown}; and {len(items) - _MAX_LISTED} more"


def _as_int(value: Any) -> int | None:
    """``value`` when it is a JSON integer that fits int64, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def _number(value: Any) -> float | None:
    """``value`` when it is a JSON number, else None (bool is not a number here)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _kind(obj: dict[str, Any]) -> str:
    if obj["type"] == "player_action":
        return "action"
    return "periodic" if "visual_frame_path" in obj else "event"


def _frame_index(obj: dict[str, Any], file: str, line: int) -> tuple[int | None, list[Finding]]:
    path = obj.get("visual_frame_path")
    if not isinstance(path, str):
        return None, []  # absent, or a wrong type / null that the shape check reports
    m = FRAME_REF_RE.match(path)
    if m is None or int(m.group(1)) > _INT32_MAX:
        msg = f"visual_frame_path {path!r} does not name a frame (frames/frame_NNNNNN.npy)"
        return None, [finding("FRAME_REF_BAD", file, msg, line=line)]
    return int(m.group(1)), []


def _shape_findings(obj: dict[str, Any], kind: str, file: str, line: int) -> list[Finding]:
    """ROW_SCHEMA / ROW_NULL / ROW_UNKNOWN_FIELD for one row (Python walk only when needed)."""
    cls = ROW_TYPES[obj["type"]]
    periodic = kind == "periodic"
    problems: list[ShapeProblem] = []
    if not is_exact_shape(obj, cls):
        problems = check_shape(obj, cls, nulls_anywhere=periodic)
    if kind == "event" and obj.get("event") == PERIODIC_EVENT:  # a periodic row without its frame
        problems.append(ShapeProblem("missing", "$.visual_frame_path", "a string"))
    nulls = [p for p in problems if p.kind == "null"]
    wrong = [p for p in problems if p.kind in ("wrong", "missing")]
    if not periodic:  # elsewhere a null in a known field is a wrong type
        wrong = [p for p in problems if p.kind in ("wrong", "missing", "null")]
    unknown = [p for p in problems if p.kind == "unknown"]
    out: list[Finding] = []
    if wrong:
        out.append(finding("ROW_SCHEMA", file, _listed([str(p) for p in wrong]), line=line))
    if periodic and nulls:
        msg = "null in a periodic row: " + _listed([p.path for p in nulls])
        out.append(finding("ROW_NULL", file, msg, line=line))
    if unknown:
        msg = "fields not in the schema (kept in `extra`): " + _listed([p.path for p in unknown])
        out.append(finding("ROW_UNKNOWN_FIELD", file, msg, line=line))
    return out


def _range_findings(obj: dict[str, Any], file: str, line: int) -> list[Finding]:
    """battery/health/fuel within 0..100 and damage within 0..1 (robot_state rows)."""
    bad: list[str] = []
    for name in PERCENT_FIELDS:
        v = _number(obj.get(name))
        if v is not None and not 0 <= v <= 100:
            bad.append(f"$.{name} = {v} is outside 0..100")
    v = _number(obj.get("damage"))
    event = obj.get("event")
    amount = isinstance(event, str) and event in DAMAGE_AMOUNT_EVENTS
    if v is not None and not 0 <= v <= 1 and not amount:
        bad.append(f"$.damage = {v} is outside 0..1")
    return [finding("ROW_OUT_OF_RANGE", file, _listed(bad), line=line)] if bad else []


def _row(
    obj: dict[str, Any], row_index: int, file: str, line: int
) -> tuple[list[Finding], ParsedRow]:
    kind = _kind(obj)
    findings = _shape_findings(obj, kind, file, line)
    frame_index: int | None = None
    if kind == "periodic":
        frame_index, ref_findings = _frame_index(obj, file, line)
        findings += ref_findings
    if kind == "action":
        timestamp_ms = _as_int(obj.get("timestamp"))
    else:
        timestamp_ms = _as_int(obj.get("timestamp_ms"))
        findings += _range_findings(obj, file, line)
    return findings, ParsedRow(row_index, kind, timestamp_ms, frame_index, obj, line)


RowLine = tuple[int, int, bytes]
"""``(row_index, 1-based line number, content)`` of a line that may hold a row."""


def iter_row_line_runs(
    stream: IO[bytes], file: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Sequence[Finding | RowLine]]:
    """``iter_row_lines`` a chunk at a time: the items of the lines of each chunk read."""
    n_rows = 0
    for first, lines in _iter_line_chunks(stream, max_line_bytes):
        if first > 1 and all(raw is not None and raw[:1] == b"{" for raw in lines):
            k = len(lines)  # the common case: every line a candidate row
            whole = cast(list[bytes], lines)
            yield list(zip(range(n_rows, n_rows + k), range(first, first + k), whole, strict=True))
            n_rows += k
            continue
        items: list[Finding | RowLine] = []
        for line, raw in enumerate(lines, first):
            if line == 1 and raw is not None and raw.startswith(_BOM):
                msg = "starts with a UTF-8 byte-order mark (EF BB BF); the game writes none"
                items.append(finding("JSONL_BOM", file, msg, line=1))
                raw = raw[len(_BOM) :]
            if raw is not None and not raw.strip():
                items.append(finding("JSONL_EMPTY_LINE", file, "empty line skipped", line=line))
                continue
            row_index = n_rows
            n_rows += 1
            if raw is None:
                msg = f"longer than {max_line_bytes} bytes; skipped"
                items.append(finding("JSONL_LINE_TOO_LONG", file, msg, line=line))
                continue
            items.append((row_index, line, raw))
        yield items
    if n_rows == 0:
        msg = "no rows: the file is empty or holds only empty lines"
        yield [finding("JSONL_EMPTY", file, msg)]


def iter_row_lines(
    stream: IO[bytes], file: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Finding | RowLine]:
    """The findings about whole lines (BOM, empty, too long, an empty file) and, for every other
    line, ``(row_index, line number, content)``, in file order: what every row reader starts from.
    """
    for items in iter_row_line_runs(stream, file, max_line_bytes=max_line_bytes):
        yield from items


def line_items(
    raw: bytes, row_index: int, file: str, line: int, max_depth: int = MAX_DEPTH
) -> list[ParsedRow | Finding]:
    """The findings about one non-empty line, then its row when it has a usable type."""
    findings, obj = _decode(raw, file, line, max_depth)
    if obj is _FAILED:
        return list(findings)
    if not isinstance(obj, dict):
        msg = f"a JSON {json_type_name(obj)}, not an object"
        return [finding("JSONL_NOT_OBJECT", file, msg, line=line)]
    if paths := _duplicate_keys(raw, obj):
        msg = "repeated keys (the last value is kept): " + _listed(paths)
        findings.append(finding("JSONL_DUPLICATE_KEY", file, msg, line=line))
    row_type = obj.get("type")
    if not isinstance(row_type, str) or row_type not in ROW_TYPES:
        shown = "no 'type'" if "type" not in obj else f"type {row_type!r}"
        msg = f"{shown}; expected 'robot_state' or 'player_action'"
        return [*findings, finding("ROW_UNKNOWN_TYPE", file, msg, line=line)]
    row_findings, row = _row(obj, row_index, file, line)
    return [*findings, *row_findings, row]


def iter_jsonl(
    stream: IO[bytes],
    file: str,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Iterator[ParsedRow | Finding]:
    """Every finding and every usable row of a data.jsonl stream, in file order.

    A row's findings come before the row itself. ``file`` names the file in findings.
    Empty lines are skipped with a warning; a file without any row gives ``JSONL_EMPTY``.
    (``ingest.rowscan`` reads the same file into Arrow columns, with the same findings.)
    """
    for item in iter_row_lines(stream, file, max_line_bytes=max_line_bytes):
        if isinstance(item, Finding):
            yield item
        else:
            row_index, line, raw = item
            yield from line_items(raw, row_index, file, line, max_depth)


# --- metadata -----------------------------------------------------------------------------------
def parse_metadata(
    data: bytes, file: str
) -> tuple[Metadata | None, dict[str, Any] | None, list[Finding]]:
    """Decode metadata.json: ``(typed metadata, raw object, findings)``.

    The raw object is returned whenever the file is a JSON object, even if its fields are
    wrong, so that it can be kept for provenance; the typed value only when it is valid.
    The limits of data.jsonl hold here too: at most ``MAX_DEPTH`` levels of nesting (checked
    before decoding; deeper objects would overflow the stack of whoever walks them later) and
    no repeated keys (which value the game meant is ambiguous).
    """
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and (depth := _depth(data)) > MAX_DEPTH:
        msg = f"nests {depth} levels deep; at most {MAX_DEPTH} are allowed"
        return None, None, [finding("META_BAD_JSON", file, msg)]
    try:
        raw = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        return (
            None,
            None,
            [finding("META_BAD_JSON", file, f"not valid JSON: {e}", line=_error_line(data, e))],
        )
    if not isinstance(raw, dict):
        msg = f"a JSON {json_type_name(raw)}, not an object"
        return None, None, [finding("META_BAD_JSON", file, msg)]
    if paths := _duplicate_keys(data, raw):
        msg = "repeated keys (which value is meant is ambiguous): " + _listed(paths)
        return None, raw, [finding("META_BAD_JSON", file, msg)]
    try:
        return msgspec.convert(raw, Metadata, strict=True), raw, []
    except msgspec.ValidationError:
        problems = [str(p) for p in check_shape(raw, Metadata)]
        msg = _listed(problems) if problems else "does not match the metadata schema"
        return None, raw, [finding("META_SCHEMA", file, msg)]


_BYTE_RE: Final = re.compile(r"\(byte (\d+)\)")


def _error_line(data: bytes, e: Exception) -> int | None:
    """The 1-based line of a decoding error, when the error says where it is."""
    try:  # msgspec reports invalid UTF-8 without an offset (or one within a string token)
        data.decode("utf-8")
    except UnicodeDecodeError as exact:
        return data.count(b"\n", 0, exact.start) + 1
    m = _BYTE_RE.search(str(e))
    return data.count(b"\n", 0, int(m.group(1))) + 1 if m else None
