"""ingest.rowscan: the columnar reader gives exactly what the dict reader (iter_jsonl) gives.

Same findings (codes, messages, lines, order), same rows with the same facts (row_index, line,
kind, clock, frame), and the same rows Parquet bytes, on the real fixtures, on every bad line of
the table in tests/helpers/jsonl.py and on random files built from mutated and re-spelled real
rows. Rows shaped like the game's take the fast path.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.findings import Finding
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.rowscan import KINDS, RowBlock, scan_rows
from reacture_convert.writers.rows import write_rows
from tests.helpers.jsonl import BAD_CASES
from tests.helpers.rows import spelled

RowFacts = tuple[int, int, str, int | None, int | None]


def by_dicts(data: bytes) -> tuple[list[Finding], list[RowFacts], list[ParsedRow]]:
    items = list(iter_jsonl(io.BytesIO(data), "data.jsonl"))
    rows = [i for i in items if isinstance(i, ParsedRow)]
    facts = [(r.row_index, r.line or 0, r.kind, r.timestamp_ms, r.frame_index) for r in rows]
    return [i for i in items if isinstance(i, Finding)], facts, rows


def by_blocks(data: bytes, **kw: Any) -> tuple[list[Finding], list[RowFacts], list[RowBlock]]:
    blocks = list(scan_rows(io.BytesIO(data), "data.jsonl", **kw))
    facts = [
        (
            int(b.row_index[i]),
            int(b.line[i]),
            KINDS[b.kind[i]],
            int(b.timestamp_ms[i]) if b.has_timestamp[i] else None,
            int(b.frame_index[i]) if b.frame_index[i] >= 0 else None,
        )
        for b in blocks
        for i in range(len(b))
    ]
    return [f for b in blocks for f in b.findings], facts, blocks


def parquet(items: list[ParsedRow] | list[RowBlock]) -> bytes:
    buf = io.BytesIO()
    write_rows(items, "s", buf)
    return buf.getvalue()


def assert_same(data: bytes, **kw: Any) -> list[RowBlock]:
    """Both readers agree on ``data``: findings, row facts and Parquet bytes."""
    findings, facts, rows = by_dicts(data)
    got_findings, got_facts, blocks = by_blocks(data, **kw)
    assert got_findings == findings
    assert got_facts == facts
    assert parquet(blocks) == parquet(rows)
    return blocks


def test_real_fixture_is_read_the_same_and_all_fast(real_bundle: Path) -> None:
    data = next(real_bundle.glob("*_data.jsonl")).read_bytes()
    blocks = assert_same(data)
    assert sum(len(b) for b in blocks) > 100
    assert all(not b.slow for b in blocks)  # every row the game wrote takes the fast path


@pytest.mark.parametrize("lines", [c[1] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_lines_give_the_same_findings(lines: list[bytes]) -> None:
    assert_same(b"\n".join(lines))


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("block_rows", [1, 3, 4096])
def test_blocks_and_threads_do_not_change_anything(
    real_bundle: Path, block_rows: int, background: bool
) -> None:
    data = next(real_bundle.glob("*_data.jsonl")).read_bytes()
    lines = data.split(b"\n")
    # empty lines, a bad line and an odd row across block boundaries
    lines[2:2] = [b"", b"{not json", lines[5].replace(b'"battery":', b'"battery":1.0,"b":', 1)]
    assert_same(b"\n".join(lines), block_rows=block_rows, background=background)


def test_files_without_rows() -> None:
    for data in (b"", b"\n", b"\n\n  \n", b"\xef\xbb\xbf"):
        assert_same(data)


@settings(max_examples=150, deadline=None)
@given(st.lists(spelled(), min_size=1, max_size=6), st.integers(1, 4))
def test_any_file_is_read_the_same(lines: list[bytes], block_rows: int) -> None:
    assert_same(b"\n".join(lines), block_rows=block_rows)
