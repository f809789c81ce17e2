"""``--where``: the filter over the catalog's columns selects exactly the rows it says, and a bad
filter is a ``ConfigError`` naming the place and what was expected (nothing is ever evaluated as
Python)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.errors import ConfigError
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.catalog.entry import entries_table
from reacture_convert.output.catalog.where import filter_table

ROWS = [
    CatalogEntry(
        "a", "/in/x", "a", "converted", n_frames=5, blank_frames=5, reason=None,
        converted_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    ),
    CatalogEntry(
        "b", "/in/x", "b", "skipped", n_frames=9, blank_frames=0, reason="it's fine",
        converted_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    ),
    CatalogEntry("c", "/in/y", "c", "converted", n_frames=12, blank_frames=None),
]  # fmt: skip
TABLE = entries_table(ROWS)


def selected(where: str) -> list[str]:
    return [str(s) for s in filter_table(TABLE, where).column("session").to_pylist()]


@pytest.mark.parametrize(
    ("where", "want"),
    [
        ("blank_frames = n_frames", ["a"]),
        ("session in ('a', 'c')", ["a", "c"]),
        ("session not in ('a')", ["b", "c"]),
        ("session IN ('b') OR n_frames > 10", ["b", "c"]),
        ("n_frames >= 9 and not source = '/in/y'", ["b"]),
        ("not (n_frames < 6 or n_frames > 10)", ["b"]),
        ("blank_frames is null", ["c"]),
        ("blank_frames is not null and blank_frames != 0", ["a"]),
        ("reason = 'it''s fine'", ["b"]),
        ('reason = "it\'s fine"', ["b"]),
        ("converted_at < '2026-02-01'", ["a"]),
        ("converted_at >= '2026-02-01T00:00:00Z'", ["b"]),
        ("n_frames = 9.0", ["b"]),
        ("5 < n_frames", ["b", "c"]),
        ("status <> 'converted'", ["b"]),
        ("session = 'a' and 1 = 1 or false = false", None),  # 1 = 1: no column: refused
    ],
)
def test_a_filter_selects_exactly_its_rows(where: str, want: list[str] | None) -> None:
    if want is None:
        with pytest.raises(ConfigError, match="needs a column"):
            selected(where)
        return
    assert selected(where) == want


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("", "an empty filter"),
        ("nosuch = 1", "no column 'nosuch'"),
        ("n_frames <", "expected a column or a value"),
        ("n_frames = 'x'", "cannot be compared with n_frames"),
        ("outputs = 3", "cannot be compared with outputs"),
        ("session in ('a'", "expected ',' or ')'"),
        ("session in 'a'", "expected '(' after 'in'"),
        ("session not = 'a'", "expected 'in' after 'not'"),
        ("session is 1", "expected null"),
        ("session = 'a' extra", "unexpected 'extra'"),
        ("session = 'a'; import os", "unexpected character"),
        ("__import__('os') = 1", "no column '__import__'"),
        ("(session = 'a'", "expected ')'"),
        ("session n_frames", "expected a comparison"),
    ],
)
def test_a_bad_filter_says_where_and_what(where: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        selected(where)
    assert says in str(caught.value) and "--where" in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(
    low=st.integers(-1, 14),
    names=st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=4),
)
def test_filters_agree_with_python(low: int, names: list[str]) -> None:
    quoted = ", ".join(f"'{n}'" for n in names) or "'none'"
    got = selected(f"n_frames > {low} or session in ({quoted})")
    want = [e.session for e in ROWS if (e.n_frames or 0) > low or e.session in names]
    assert got == want


def test_any_table_of_catalog_columns_can_be_filtered() -> None:
    table = pa.table({"session": ["a", "b"], "files": [3, 4]})  # a column added later
    assert filter_table(table, "files > 3").column("session").to_pylist() == ["b"]
