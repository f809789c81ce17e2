"""data.jsonl into Arrow columns: each line decoded once, in C++, and validated in that decode.

``scan_rows`` reads the same stream as ``jsonl.iter_jsonl`` and reports the same findings, but
hands rows over in blocks of Arrow columns instead of one dict per row. A line takes the fast
path when it is shaped like the game's rows; every other line takes ``jsonl.line_items`` (the
exact, slower path that names every problem), so findings never differ between the two readers.

The fast path, per block of lines:

1. cheap byte tests pick the candidates: a line whose first ``"type":"`` is ``robot_state`` or
   ``player_action``, with no backslash (escapes) and no ``null`` (an explicit
   null is not an absent field), is valid UTF-8, and holds no float written with an integral
   value (``1.0``, ``1.00``, ``1e2``: the rows table keeps their JSON type in ``extra``);
2. ``pyarrow.json`` decodes the candidates with an explicit schema (the rows table's columns; a
   player_action's integer ``timestamp`` renamed to ``timestamp_ms`` first), refusing unknown
   fields, repeated keys and values of the wrong JSON type; a refused block is narrowed down to
   the lines at fault;
3. ``rowshape`` finishes the proof of shape over the columns, by the row Structs, and sends the
   rows that would have findings (or need ``extra``) to the exact path.

Decoding runs in C++ without the GIL, on a helper thread, while the next block is read.
"""

from __future__ import annotations

import re
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Final

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from reacture_convert.arrow import bool_array, empty_table
from reacture_convert.findings import Finding
from reacture_convert.ingest.jsonl import (
    MAX_DEPTH,
    MAX_LINE_BYTES,
    ParsedRow,
    RowLine,
    iter_row_line_runs,
    line_items,
)
from reacture_convert.ingest.rowshape import shape_differs, would_have_findings
from reacture_convert.ingest.schema import ROW_TYPES, ROWS_SCHEMA

__all__ = ["KINDS", "PARSED_SCHEMA", "RowBlock", "scan_rows"]

KINDS: Final = ("periodic", "event", "action")  # RowBlock.kind codes index this
_KIND_CODE: Final = {name: code for code, name in enumerate(KINDS)}
# The rows table's columns that come straight from the JSON object (the rest are computed).
PARSED_SCHEMA: Final = pa.schema(
    [
        f
        for f in ROWS_SCHEMA
        if f.name not in ("session", "row_index", "kind", "frame_index", "extra")
    ]
)
BLOCK_ROWS: Final = 4096
BLOCK_BYTES: Final = 8 << 20
# Blocks decoded at once in the background: pyarrow.json runs without the GIL, so on a rows-heavy
# file two decoders keep two cores busy while this thread reads and checks the next block.
DECODERS: Final = 2

_TYPE_KEY: Final = b'"type":"'
_TS_NUMBER: Final = re.compile(rb'"timestamp":(?=[-0-9])')  # player_action's integer clock
_PA_CLOCK: Final = b'{"timestamp":'
_PA_CLOCK_AS: Final = b'{"timestamp_ms":'
_REFUSED: Final = (b"\\", b"null")  # escapes; null (an explicit null is not an absent field)
_INTEGRAL_FLOAT: Final = re.compile(rb"\.0+[,}\] \t\r]")  # 1.0, 1.00 as a JSON number
_EXPONENT: Final = re.compile(rb"-?[0-9][0-9.]*[eE][-+]?[0-9]+")


@dataclass(frozen=True, slots=True)
class RowBlock:
    """Consecutive rows of data.jsonl, in file order, and the findings about their lines.

    Per row (arrays of equal length): ``row_index`` (0-based among non-empty lines), ``line``
    (1-based), ``kind`` (a code into ``KINDS``), ``timestamp_ms`` (robot_state ``timestamp_ms``
    or player_action ``timestamp``; valid where ``has_timestamp``) and ``frame_index`` (-1:
    none). The rows themselves: ``parsed`` holds the fast rows' columns (``PARSED_SCHEMA``) at
    positions ``fast_at``; ``slow`` the decoded objects of the others, at ``slow_at``.
    ``findings`` are in line order, complete (no cap); ``last_line`` is the last line read.
    """

    findings: tuple[Finding, ...]
    row_index: npt.NDArray[np.int64]
    line: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]
    timestamp_ms: npt.NDArray[np.int64]
    has_timestamp: npt.NDArray[np.bool_]
    frame_index: npt.NDArray[np.int64]
    parsed: pa.Table
    fast_at: npt.NDArray[np.int64]
    slow: tuple[ParsedRow, ...]
    slow_at: npt.NDArray[np.int64]
    last_line: int

    def __len__(self) -> int:
        return len(self.row_index)


# --- candidates and decoding ----------------------------------------------------------------------
def _line_of(starts: npt.NDArray[np.int64], positions: list[int]) -> npt.NDArray[np.int64]:
    """The line (index into ``starts``, the lines' offsets in the joined block) of each byte."""
    found: npt.NDArray[np.int64] = np.searchsorted(starts, np.asarray(positions), side="right") - 1
    return found


def _lines_holding(joined: bytes, starts: npt.NDArray[np.int64], mark: bytes) -> list[int]:
    if mark not in joined:
        return []
    at = [m.start() for m in re.finditer(re.escape(mark), joined)]
    lines: list[int] = _line_of(starts, at).tolist()
    return lines


def _integral_float_lines(
    raws: list[bytes], joined: bytes, starts: npt.NDArray[np.int64]
) -> set[int]:
    """Lines holding a float with an integral value: ``1.0``, ``1.00`` or an exponent like
    ``1e2`` (a non-integral exponent such as ``2.5e-05`` is fine)."""
    found = set(_line_of(starts, [m.start() for m in _INTEGRAL_FLOAT.finditer(joined)]).tolist())
    data = np.frombuffer(joined, np.uint8)
    # a digit followed by e or E: the e's first (one pass), then whether a digit is before each
    before_e = np.flatnonzero((data[1:] | np.uint8(32)) == ord("e"))
    exponents = before_e[(data[before_e] - np.uint8(48)) < 10]
    if exponents.size:
        for i in set(_line_of(starts, exponents.tolist()).tolist()) - found:
            if any(float(token).is_integer() for token in _EXPONENT.findall(raws[i])):
                found.add(i)
    return found


def _row_type(raw: bytes) -> int:
    """1 for a robot_state line, 2 for a player_action line, 0 when unsure. The first ``"type":"``
    decides: any other (a repeated key, a nested field) is refused by the decoder, and none can
    sit in a string value without a backslash (such lines take the exact path)."""
    at = raw.find(_TYPE_KEY)
    if at < 0:
        return 0
    value = raw[at + len(_TYPE_KEY) : at + len(_TYPE_KEY) + 14]
    if value.startswith(b'robot_state"'):
        return 1
    return 2 if value == b'player_action"' else 0


def _fast_lines(raws: list[bytes]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(lines worth decoding on the fast path, which of the lines are player_action)."""
    n = len(raws)
    joined = b"\n".join(raws)
    lengths = np.fromiter(map(len, raws), np.int64, n)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    kind = np.fromiter(map(_row_type, raws), np.int8, n)
    action = kind == 2
    fast = (kind > 0) & (np.frombuffer(joined, np.uint8)[starts] == ord("{"))
    for mark in _REFUSED:
        fast[_lines_holding(joined, starts, mark)] = False
    fast[list(_integral_float_lines(raws, joined, starts))] = False
    if not joined.isascii():  # pyarrow.json takes strings as bytes: invalid UTF-8 gets through
        for i, raw in enumerate(raws):
            if fast[i] and not raw.isascii():
                try:
                    raw.decode()
                except UnicodeDecodeError:
                    fast[i] = False
    return fast, action


def _as_parsed(raw: bytes, action: bool) -> bytes:
    """A line as ``PARSED_SCHEMA`` reads it: a player_action's ``timestamp`` renamed."""
    if not action:
        return raw
    if raw.startswith(_PA_CLOCK):  # where the game writes it
        return _PA_CLOCK_AS + raw[len(_PA_CLOCK) :]
    return _TS_NUMBER.sub(b'"timestamp_ms":', raw, count=1)


def _read_json(lines: list[bytes]) -> pa.Table | None:
    """Lines (already ``_as_parsed``) decoded with ``PARSED_SCHEMA``; None when pyarrow refuses
    any of them, or reads another number of rows (two objects on one line)."""
    import pyarrow.json as pj

    if not lines:
        return None
    data = b"\n".join(lines)
    try:
        table = pj.read_json(
            pa.py_buffer(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1)),
            parse_options=pj.ParseOptions(
                explicit_schema=PARSED_SCHEMA, unexpected_field_behavior="error"
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return table if table.num_rows == len(lines) else None


_DECODERS: Final = {
    action: msgspec.json.Decoder(cls)
    for action, cls in ((False, ROW_TYPES["robot_state"]), (True, ROW_TYPES["player_action"]))
}


def _narrow(
    raws: list[bytes], parsed: list[bytes], action: list[bool]
) -> tuple[list[int], pa.Table | None]:
    """After pyarrow refused a batch: (positions that decode, their table), found first by
    msgspec against the row Structs, then by halves, down to the lines at fault."""
    keep: list[int] = []
    for i, raw in enumerate(raws):
        try:
            _DECODERS[action[i]].decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue
        keep.append(i)
    return _bisect(parsed, keep)


def _bisect(parsed: list[bytes], keep: list[int]) -> tuple[list[int], pa.Table | None]:
    if not keep:
        return [], None
    table = _read_json([parsed[i] for i in keep])
    if table is not None:
        return keep, table
    if len(keep) == 1:
        return [], None
    half = len(keep) // 2
    left, right = _bisect(parsed, keep[:half]), _bisect(parsed, keep[half:])
    tables = [t for t in (left[1], right[1]) if t is not None]
    if not tables:
        return [], None
    return left[0] + right[0], pa.concat_tables(tables)


# --- blocks ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Pending:
    """Lines read for the next block: their row indices, line numbers and bytes."""

    indices: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    findings: list[tuple[int, Finding]] = field(default_factory=list)  # about whole lines
    n_bytes: int = 0
    last_line: int = 0

    def add(self, rows: Sequence[RowLine]) -> None:
        if not rows:
            return
        indices, lines, raws = zip(*rows, strict=True)
        self.indices.extend(indices)
        self.lines.extend(lines)
        self.raws.extend(raws)
        self.n_bytes += sum(map(len, raws))
        self.last_line = lines[-1]

    def full(self, block_rows: int) -> bool:
        return len(self.raws) >= block_rows or self.n_bytes >= BLOCK_BYTES


@dataclass(slots=True)
class _Prepared:
    """A block's lines with its fast candidates picked, ready for the decoder."""

    pending: _Pending
    picked: npt.NDArray[np.int64]  # line positions of the candidates
    action: npt.NDArray[np.bool_]  # per line: player_action
    parsed: list[bytes]  # the candidates as PARSED_SCHEMA reads them


def _prepare(pending: _Pending) -> _Prepared:
    fast, action = _fast_lines(pending.raws)
    picked = np.flatnonzero(fast)
    acts = action[picked].tolist()
    parsed = [_as_parsed(pending.raws[i], a) for i, a in zip(picked.tolist(), acts, strict=True)]
    return _Prepared(pending, picked, action, parsed)


def _finish(prep: _Prepared, table: pa.Table | None, file: str, max_depth: int) -> RowBlock:
    """The block from its decoded candidates (``table``: None when pyarrow refused them)."""
    raws, picked = prep.pending.raws, prep.picked
    if table is None and len(picked):
        decoded, table = _narrow(
            [raws[i] for i in picked], prep.parsed, prep.action[picked].tolist()
        )
        picked = picked[np.asarray(decoded, dtype=np.int64)]
    is_action = prep.action[picked]
    frames = np.zeros(0, dtype=np.int64)
    periodic = np.zeros(0, dtype=bool)
    if table is None:
        table, picked = empty_table(PARSED_SCHEMA), picked[:0]
    else:
        bad = shape_differs(table, is_action)
        suspect, frames, periodic = would_have_findings(table, is_action, [raws[i] for i in picked])
        good = ~(bad | suspect)
        if not good.all():
            table = table.filter(bool_array(good))
            picked, is_action, frames, periodic = (
                picked[good],
                is_action[good],
                frames[good],
                periodic[good],
            )
    return _assemble(prep.pending, picked, table, is_action, frames, periodic, file, max_depth)


def _assemble(
    pending: _Pending,
    picked: npt.NDArray[np.int64],
    table: pa.Table,
    is_action: npt.NDArray[np.bool_],
    frames: npt.NDArray[np.int64],
    periodic: npt.NDArray[np.bool_],
    file: str,
    max_depth: int,
) -> RowBlock:
    """Rows in line order: the fast ones from ``table``, the others through ``line_items``."""
    n_lines = len(pending.raws)
    slow_lines = np.ones(n_lines, dtype=bool)
    slow_lines[picked] = False
    found: list[tuple[int, int, Finding]] = [(ln, 0, f) for ln, f in pending.findings]
    slow: list[ParsedRow] = []
    slow_pos: list[int] = []
    for i in np.flatnonzero(slow_lines).tolist():
        at_line = pending.lines[i]
        items = line_items(pending.raws[i], pending.indices[i], file, at_line, max_depth)
        for item in items:
            if isinstance(item, Finding):
                found.append((at_line, 1, item))
            else:
                slow.append(item)
                slow_pos.append(i)
    found.sort(key=lambda x: (x[0], x[1]))
    # positions among the block's rows (lines that gave no row are not rows)
    is_row = ~slow_lines
    is_row[slow_pos] = True
    rank = np.cumsum(is_row) - 1
    n = int(is_row.sum())
    fast_at = rank[picked]
    slow_at = rank[np.asarray(slow_pos, dtype=np.int64)]
    row_index = np.empty(n, np.int64)
    line = np.empty(n, np.int64)
    row_index[fast_at] = np.asarray(pending.indices, np.int64)[picked]
    line[fast_at] = np.asarray(pending.lines, np.int64)[picked]
    kind = np.empty(n, np.int8)
    kind[fast_at] = np.where(is_action, 2, np.where(periodic, 0, 1))
    ts = np.zeros(n, np.int64)
    has_ts = np.zeros(n, dtype=bool)
    if len(picked):
        ts_col = table.column("timestamp_ms").combine_chunks()
        ts[fast_at] = np.frombuffer(ts_col.buffers()[1], np.int64)[
            ts_col.offset : ts_col.offset + len(ts_col)
        ]
        has_ts[fast_at] = True
    frame_index = np.full(n, -1, np.int64)
    frame_index[fast_at] = frames
    for at, row in zip(slow_at.tolist(), slow, strict=True):
        row_index[at], line[at] = row.row_index, row.line or 0
        kind[at] = _KIND_CODE[row.kind]
        if row.timestamp_ms is not None:
            ts[at], has_ts[at] = row.timestamp_ms, True
        if row.frame_index is not None:
            frame_index[at] = row.frame_index
    return RowBlock(
        findings=tuple(f for _, _, f in found),
        row_index=row_index,
        line=line,
        kind=kind,
        timestamp_ms=ts,
        has_timestamp=has_ts,
        frame_index=frame_index,
        parsed=table,
        fast_at=fast_at,
        slow=tuple(slow),
        slow_at=slow_at,
        last_line=pending.last_line,
    )


def _pending_blocks(
    stream: IO[bytes], file: str, max_line_bytes: int, block_rows: int
) -> Iterator[_Pending]:
    pending = _Pending()
    for run in iter_row_line_runs(stream, file, max_line_bytes=max_line_bytes):
        rows = [item for item in run if type(item) is tuple]
        if len(rows) < len(run):  # findings about whole lines among them: one by one
            for item in run:
                if isinstance(item, Finding):
                    at = sys.maxsize if item.line is None else item.line  # JSONL_EMPTY: last
                    pending.findings.append((at, item))
                    pending.last_line = max(pending.last_line, item.line or 0)
                else:
                    pending.add([item])
                    if pending.full(block_rows):
                        yield pending
                        pending = _Pending(last_line=pending.last_line)
            continue
        while rows:
            room = block_rows - len(pending.raws)
            pending.add(rows[:room])
            rows = rows[room:]
            if pending.full(block_rows):
                yield pending
                pending = _Pending(last_line=pending.last_line)
    if pending.raws or pending.findings:
        yield pending


def scan_rows(
    stream: IO[bytes],
    file: str,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_depth: int = MAX_DEPTH,
    block_rows: int = BLOCK_ROWS,
    background: bool = True,
) -> Iterator[RowBlock]:
    """Blocks of rows of a data.jsonl stream, in file order, with exactly the findings
    ``iter_jsonl`` gives (a file-level ``JSONL_EMPTY`` comes in a last, empty block).

    With ``background``, decoding (C++, without the GIL) runs on ``DECODERS`` helper threads,
    up to that many blocks behind the reading and checking of the next block, so they overlap
    on the cores; blocks are still handed over in file order."""
    if not background:
        for pending in _pending_blocks(stream, file, max_line_bytes, block_rows):
            prep = _prepare(pending)
            yield _finish(prep, _read_json(prep.parsed), file, max_depth)
        return
    ahead: deque[tuple[_Prepared, Future[pa.Table | None]]] = deque()
    with ThreadPoolExecutor(DECODERS, thread_name_prefix="reacture-rows") as decoder:
        for pending in _pending_blocks(stream, file, max_line_bytes, block_rows):
            prep = _prepare(pending)
            ahead.append((prep, decoder.submit(_read_json, prep.parsed)))
            if len(ahead) > DECODERS:
                done, table = ahead.popleft()
                yield _finish(done, table.result(), file, max_depth)
        while ahead:
            done, table = ahead.popleft()
            yield _finish(done, table.result(), file, max_depth)
