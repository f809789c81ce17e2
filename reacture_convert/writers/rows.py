"""data.jsonl rows -> ``rows/<session>.parquet``, losslessly.

Each row becomes one record of ``ROWS_SCHEMA``, and what the typed columns cannot represent
exactly goes to ``extra`` (the rules, and ``rebuild_row``, the way back: ``formats.rows``).

Rows come in two forms. Blocks scanned by ``ingest.rowscan`` carry their rows shaped like the
game's as Arrow columns already decoded with this schema (no ``extra``: nothing is left over);
only their other rows, and rows decoded one by one (``ParsedRow``), are split field by field in
Python, and their records are encoded as JSON lines and decoded by ``pyarrow.json`` with the
records' schema (the JSON numbers are the same doubles; ``pa.array`` would also do, but it
imports pandas). Row groups hold ``ROWS_BATCH`` rows, encoded on a helper thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.arrow import numeric_array, repeated_string, string_array
from reacture_convert.formats.rows import EXACT_INT, ROW_FIELDS, STRING_LEADING
from reacture_convert.ingest.jsonl import ParsedRow
from reacture_convert.ingest.rowscan import KINDS, RowBlock
from reacture_convert.ingest.schema import ROW_TYPES, ROWS_SCHEMA

__all__ = [
    "ROWS_BATCH",
    "RowsWriter",
    "block_records",
    "iter_record_batches",
    "write_rows",
]

ROWS_BATCH: Final = 4096

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

_RECORD_TYPE: Final = pa.struct([f for f in ROWS_SCHEMA if f.name != "session"])
_RECORDS_SCHEMA: Final = pa.schema(list(_RECORD_TYPE))
_MAX_RUNS: Final = 64  # runs of fast and slow rows interleaved by slicing (else a take)
_NO_PATCH: Final = object()


# --- splitting a row into typed columns and an exact patch ---------------------------------------
def _split_scalar(value: Any, t: pa.DataType) -> tuple[Any, Any]:
    """``(typed value or None, patch or _NO_PATCH)`` for a scalar column."""
    if pa.types.is_float64(t):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, value
        if isinstance(value, float):
            integral = value.is_integer() and abs(value) <= EXACT_INT
            return value, (value if integral else _NO_PATCH)  # keep a float a float
        if abs(value) <= EXACT_INT:
            return value, _NO_PATCH
        return None, value  # beyond 2**53: kept exactly in extra
    if pa.types.is_int64(t):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (value, _NO_PATCH) if ok and _INT64_MIN <= value <= _INT64_MAX else (None, value)
    if pa.types.is_string(t):
        return (value, _NO_PATCH) if isinstance(value, str) else (None, value)
    if pa.types.is_boolean(t):
        return (value, _NO_PATCH) if isinstance(value, bool) else (None, value)
    raise TypeError(f"no split rule for Arrow type {t}")


def _split_struct(value: dict[str, Any], t: pa.StructType) -> tuple[dict[str, Any], Any]:
    typed: dict[str, Any] = {}
    patch: dict[str, Any] = {}
    for key, item in value.items():
        idx = t.get_field_index(key)
        if idx < 0:
            patch[key] = item
            continue
        typed[key], sub = _split(item, t.field(idx).type)
        if sub is not _NO_PATCH:
            patch[key] = sub
    return typed, (patch if patch else _NO_PATCH)


def _split_list(value: list[Any], t: pa.ListType) -> tuple[list[Any] | None, Any]:
    item_type = t.value_type
    typed: list[Any] = []
    patches: list[Any] = []
    for item in value:
        if item is None:  # a null element is representable in a list
            typed.append(None)
            patches.append({})
            continue
        if pa.types.is_struct(item_type) and not isinstance(item, dict):
            return None, value  # an element that does not fit: keep the whole list in extra
        sub_typed, sub = _split(item, item_type)
        if sub is not _NO_PATCH and not isinstance(sub, dict):
            return None, value
        typed.append(sub_typed)
        patches.append({} if sub is _NO_PATCH else sub)
    return typed, (patches if any(patches) else _NO_PATCH)


def _split(value: Any, t: pa.DataType) -> tuple[Any, Any]:
    """Split a JSON value against column type ``t`` into its typed part and its exact patch."""
    if value is None:
        return None, None  # an explicit null, distinct from an absent field
    if pa.types.is_struct(t):
        return _split_struct(value, t) if isinstance(value, dict) else (None, value)
    if pa.types.is_list(t):
        return _split_list(value, t) if isinstance(value, list) else (None, value)
    return _split_scalar(value, t)


def _record_split(row: ParsedRow) -> dict[str, Any]:
    """The record of any row: typed columns plus the ``extra`` patch."""
    is_action = row.obj["type"] == "player_action"
    clock = "timestamp" if is_action else "timestamp_ms"
    rec: dict[str, Any] = {
        "row_index": row.row_index,
        "kind": row.kind,
        "frame_index": row.frame_index,
    }
    patch: dict[str, Any] = {}
    for key, value in row.obj.items():
        if key == clock:
            col, t = "timestamp_ms", pa.int64()
        elif key in STRING_LEADING:
            col, t = key, pa.string()
        elif key in ROW_FIELDS and not (is_action and key == "timestamp"):
            col, t = key, ROW_FIELDS[key]
        else:  # unknown, or a name the leading columns use for something else
            patch[key] = value
            continue
        rec[col], sub = _split(value, t)
        if sub is not _NO_PATCH:
            patch[key] = sub
    rec["extra"] = msgspec.json.encode(patch).decode() if patch else None
    return rec


def _check_type(row: ParsedRow) -> None:
    row_type = row.obj.get("type")
    if not isinstance(row_type, str) or row_type not in ROW_TYPES:
        raise ValueError(f"row {row.row_index}: type {row_type!r} is not a known row type")


def _records(rows: Sequence[ParsedRow]) -> pa.Table:
    """Records (``ROWS_SCHEMA`` without ``session``) of decoded rows, split exactly."""
    import pyarrow.json as pj

    for row in rows:
        _check_type(row)
    records = [_record_split(row) for row in rows]
    try:
        data = b"\n".join(msgspec.json.encode(r) for r in records)
        table = pj.read_json(
            pa.py_buffer(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1)),
            parse_options=pj.ParseOptions(
                explicit_schema=_RECORDS_SCHEMA, unexpected_field_behavior="error"
            ),
        )
        return pa.Table.from_arrays(table.columns, schema=_RECORDS_SCHEMA)
    except (msgspec.EncodeError, UnicodeEncodeError, pa.ArrowInvalid):  # e.g. a lone surrogate
        return pa.Table.from_batches(
            [pa.RecordBatch.from_struct_array(pa.array(records, type=_RECORD_TYPE))]
        )


def block_records(block: RowBlock) -> pa.Table:
    """Records of a scanned block, in row order: the fast rows' columns as decoded (no
    ``extra``), the other rows through the exact split."""
    fast_at = block.fast_at
    n_fast = len(fast_at)
    parsed = block.parsed
    frames = block.frame_index[fast_at]
    computed = {
        "row_index": numeric_array(block.row_index[fast_at], pa.int64()),
        "kind": string_array([KINDS[k] for k in block.kind[fast_at].tolist()]),
        "frame_index": numeric_array(frames, pa.int32(), valid=frames >= 0),
        "extra": pa.nulls(n_fast, pa.string()),
    }
    fast = pa.Table.from_arrays(
        [computed[f.name] if f.name in computed else parsed.column(f.name) for f in _RECORD_TYPE],
        schema=_RECORDS_SCHEMA,
    )
    if not block.slow:
        return fast
    slow = _records(block.slow)
    if not n_fast:
        return slow
    return _interleave(fast, fast_at, slow, block.slow_at)


def _interleave(
    a: pa.Table, a_at: npt.NDArray[np.int64], b: pa.Table, b_at: npt.NDArray[np.int64]
) -> pa.Table:
    """The rows of ``a`` and ``b`` at their positions: slices of each in turn when they come in
    a few runs (the common case: a few odd rows), else one ``take``."""
    at = np.concatenate([a_at, b_at])
    source = np.concatenate([np.zeros(len(a_at), np.int8), np.ones(len(b_at), np.int8)])
    order = np.argsort(at, kind="stable")
    source = source[order]
    starts = np.flatnonzero(np.diff(source, prepend=-1))
    if len(starts) > _MAX_RUNS:
        return pa.concat_tables([a, b]).take(numeric_array(order, pa.int64()))
    ends = np.append(starts[1:], len(source))
    taken = [0, 0]
    parts: list[pa.Table] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        which = int(source[start])
        parts.append((a, b)[which].slice(taken[which], end - start))
        taken[which] += end - start
    return pa.concat_tables(parts)


def _record_batch(records: pa.Table, session: str) -> pa.RecordBatch:
    records = records.combine_chunks()
    columns = [c.chunks[0] if c.num_chunks else pa.nulls(0, c.type) for c in records.columns]
    session_col = repeated_string(session, records.num_rows)
    return pa.RecordBatch.from_arrays([session_col, *columns], schema=ROWS_SCHEMA)


def iter_record_batches(
    rows: Iterable[ParsedRow], session: str, batch_rows: int = ROWS_BATCH
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``ROWS_SCHEMA``, ``batch_rows`` rows each (the last may be shorter)."""
    pending: list[ParsedRow] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= batch_rows:
            yield _record_batch(_records(pending), session)
            pending = []
    if pending:
        yield _record_batch(_records(pending), session)


def write_rows(
    rows: Iterable[ParsedRow | RowBlock],
    session: str,
    sink: str | IO[bytes],
    *,
    filesystem: Any = None,
) -> int:
    """Stream ``rows`` (decoded rows, or blocks from ``ingest.rowscan.scan_rows``) into one
    Parquet file (zstd); returns the number of rows written.

    Memory is bounded by a batch or two. The same rows give byte-identical files: no
    timestamps are written, and row groups follow the fixed batch size. ``filesystem`` is a
    pyarrow or fsspec filesystem for a path ``sink``.
    """
    with RowsWriter(sink, session, filesystem=filesystem) as writer:
        for item in rows:
            if isinstance(item, RowBlock):
                writer.add_block(item)
            else:
                writer.add(item)
    return writer.count


class RowsWriter:
    """The push form of ``write_rows``: ``add`` rows one by one or ``add_block`` scanned
    blocks (as a validator reads them), ``close`` at the end. Row groups of ``batch_rows``
    rows; with ``background``, encoded and written on a helper thread while the next rows are
    read (Parquet encoding runs in C++ without the GIL). Memory bounded by a batch or two."""

    def __init__(
        self,
        sink: str | IO[bytes],
        session: str,
        *,
        filesystem: Any = None,
        batch_rows: int = ROWS_BATCH,
        background: bool = True,
    ) -> None:
        self.session = session
        self.batch_rows = batch_rows
        self.rows: list[ParsedRow] = []  # added one by one, not yet records
        self.records: list[pa.Table] = []
        self.n_records = 0
        self.count = 0
        self.writer = pq.ParquetWriter(
            sink, ROWS_SCHEMA, filesystem=filesystem, compression="zstd", write_statistics=True
        )
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="reacture-parquet") if background else None
        )
        self._writing: Future[None] | None = None

    def add(self, row: ParsedRow) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            self._take_rows()
            self._flush(self.batch_rows)

    def add_block(self, block: RowBlock) -> None:
        self._take_rows()
        if len(block):
            self.records.append(block_records(block))
            self.n_records += len(block)
        self._flush(self.batch_rows)

    def _take_rows(self) -> None:
        if self.rows:
            self.records.append(_records(self.rows))
            self.n_records += len(self.rows)
            self.rows = []

    def _flush(self, at_least: int) -> None:
        """Write whole batches while ``at_least`` records wait (all of them when 1)."""
        while self.n_records >= max(1, at_least):
            table = pa.concat_tables(self.records)
            n = min(self.batch_rows, table.num_rows)
            batch = _record_batch(table.slice(0, n), self.session)
            rest = table.slice(n)
            self.records = [rest] if rest.num_rows else []
            self.n_records -= n
            self._wait()
            if self._pool is None:
                self.writer.write_batch(batch)
            else:
                self._writing = self._pool.submit(self.writer.write_batch, batch)
            self.count += n

    def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def close(self) -> int:
        try:
            self._take_rows()
            self._flush(1)
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self.writer.close()
        return self.count

    def abort(self) -> None:
        """Stop without writing what is pending (the file is to be thrown away)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.writer.close()

    def __enter__(self) -> RowsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()
