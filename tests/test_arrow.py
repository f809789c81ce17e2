"""``reacture_convert.arrow`` builds the arrays ``pyarrow.array`` would (without importing pandas),
and converting a session, in any format, fresh or again, imports no pandas."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.arrow import array_of, numeric_array, numeric_values
from reacture_convert.output.catalog.entry import FINDING_TYPE
from reacture_convert.output.catalog.store import STORE_SCHEMA

TYPES = [
    pa.string(),
    pa.int32(),
    pa.int64(),
    pa.float64(),
    pa.bool_(),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ms", tz="UTC"),
    pa.list_(pa.string()),
    FINDING_TYPE,
    pa.list_(FINDING_TYPE),
    *(f.type for f in STORE_SCHEMA),
]


def values_of(t: pa.DataType) -> st.SearchStrategy[Any]:
    """Python values (or None) of Arrow type ``t``, as a catalog row holds them."""
    if pa.types.is_string(t):
        value: st.SearchStrategy[Any] = st.text()
    elif pa.types.is_int32(t):
        value = st.integers(-(2**31), 2**31 - 1)
    elif pa.types.is_integer(t):
        value = st.integers(-(2**63), 2**63 - 1)
    elif pa.types.is_floating(t):
        value = st.floats(allow_nan=False)
    elif pa.types.is_boolean(t):
        value = st.booleans()
    elif pa.types.is_timestamp(t):
        value = st.datetimes(
            min_value=dt.datetime(1900, 1, 1),
            max_value=dt.datetime(2200, 1, 1),
            timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-5))]),
        )
    elif pa.types.is_list(t):
        value = st.lists(values_of(t.value_type), max_size=4)
    else:
        value = st.fixed_dictionaries({f.name: values_of(f.type) for f in t})
    return st.one_of(st.none(), value)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), t=st.sampled_from(TYPES))
def test_array_of_equals_pyarrow_array(data: st.DataObject, t: pa.DataType) -> None:
    values = data.draw(st.lists(values_of(t), max_size=12))
    got = array_of(values, t)
    got.validate(full=True)
    assert got.equals(pa.array(values, t))


def test_numeric_values_is_the_arrays_numbers() -> None:
    array = numeric_array(np.arange(10), pa.int64()).slice(3, 4)
    assert numeric_values(array).tolist() == [3, 4, 5, 6]
    indices = pc.sort_indices(numeric_array(np.array([3.0, 1.0, 2.0]), pa.float64()))
    assert numeric_values(pa.chunked_array([indices])).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="nulls"):
        numeric_values(numeric_array(np.arange(2), pa.int64(), valid=np.array([True, False])))


PROBE = """
import json, sys
from reacture_convert.cli import cli
try:
    cli.main(args=sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.mark.parametrize("fmt", ["zarr", "wds", "zarr,wds"])
def test_converting_imports_no_pandas(
    make_bundle: Callable[..., Path], tmp_path: Path, fmt: str
) -> None:
    """pandas costs 0.15-0.25 s to import; a run that converts (then re-runs, loading the
    catalog it wrote) in this process never needs it."""
    src = make_bundle(n_frames=5)
    for _ in range(2):
        args = ["convert", str(src), "--out", str(tmp_path / "out"), "--format", fmt]
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args, "--quiet", "--scheduler", "sync"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "pandas" not in json.loads(done.stdout.strip().splitlines()[-1])
