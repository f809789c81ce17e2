"""Dataset statistics (issue 6): over the converted real fixtures, every number equals a
straightforward numpy computation on the source bundles' JSON rows and frames; stats.json
round-trips and is reproducible; the text report names every field."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reacture_convert.errors import OutputError
from reacture_convert.read.labels import KEYS, MOMENTARY_ACTIONS
from reacture_convert.read.stats import (
    STATS,
    Stats,
    _Moments,
    compute_stats,
    format_stats,
    read_stats,
    write_stats,
)
from tests.helpers.real import REAL_BUNDLES, convert_real_bundles
from tests.helpers.sources import Source, expected_labels, read_source

APPROX = {"rel": 1e-9, "abs": 1e-12}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_real_bundles(tmp_path_factory.mktemp("stats") / "out")


@pytest.fixture(scope="module")
def sources() -> dict[str, Source]:
    return {p.name: read_source(p) for p in REAL_BUNDLES}


@pytest.fixture(scope="module")
def stats(converted: Path) -> Stats:
    return compute_stats(converted)


def periodic_rows(sources: dict[str, Source]) -> list[dict[str, Any]]:
    return [r for src in sources.values() for r in src.rows if "visual_frame_path" in r]


def leaves(obj: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of a JSON value with its dotted name (list elements pooled as ``a[]``)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{name}.{k}" if name else k)
    elif isinstance(obj, list):
        for v in obj:
            yield from leaves(v, f"{name}[]")
    else:
        yield name, obj


def test_numeric_fields_equal_numpy_over_the_periodic_rows(
    stats: Stats, sources: dict[str, Source]
) -> None:
    values: dict[str, list[float]] = defaultdict(list)
    for row in periodic_rows(sources):
        for name, v in leaves(row):
            if isinstance(v, int | float) and not isinstance(v, bool):
                values[name].append(float(v))
    assert set(stats.fields) == set(values)
    assert "sensors.victims[].distance" in stats.fields and "battery" in stats.fields
    for name, vs in values.items():
        x = np.array(vs)
        got = stats.fields[name]
        assert got.count == x.size, name
        assert got.mean == pytest.approx(x.mean(), **APPROX), name
        assert got.std == pytest.approx(x.std(), **APPROX), name
        assert (got.min, got.max) == (x.min(), x.max()), name
    assert stats.periodic_rows == len(periodic_rows(sources))


def test_key_and_flag_frequencies_equal_the_rows(stats: Stats, sources: dict[str, Source]) -> None:
    rows = periodic_rows(sources)
    flags: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        for name, v in leaves(row):
            if isinstance(v, bool):
                flags[name].append(v)
    keys = {
        n.removeprefix("key_presses."): v for n, v in flags.items() if n.startswith("key_presses.")
    }
    others = {n: v for n, v in flags.items() if not n.startswith("key_presses.")}
    assert set(stats.key_presses) == set(keys) and set(stats.flags) == set(others)
    for got, want in ((stats.key_presses, keys), (stats.flags, others)):
        for name, vs in want.items():
            assert got[name].count == sum(vs) and got[name].total == len(rows), name
            assert got[name].fraction == np.mean(vs)
    assert stats.key_presses["destroy"].count == 0  # the periodic flag is always false


def test_label_frequencies_count_the_frame_intervals(
    stats: Stats, sources: dict[str, Source]
) -> None:
    labels = [lab for src in sources.values() for lab in expected_labels(src).values()]
    for k, name in enumerate(KEYS):
        assert stats.keys[name].count == sum(lab["keys"][k] for lab in labels), name
        assert stats.keys[name].total == len(labels)
    for k, name in enumerate(MOMENTARY_ACTIONS):
        assert stats.actions[name].count == sum(lab["actions"][k] for lab in labels), name
    assert stats.keys["destroy"].count == 3


def test_frame_channels_equal_numpy_over_the_source_frames(
    stats: Stats, sources: dict[str, Source]
) -> None:
    frames = np.concatenate([src.frames for src in sources.values()])
    blank = frames.reshape(len(frames), -1).max(axis=1) == 0
    fr = stats.frames
    assert fr is not None
    assert (fr.n_frames, fr.blank_frames) == (len(frames), int(blank.sum()))
    for subset, mean, std in (
        (frames, fr.mean, fr.std),
        (frames[~blank], fr.mean_nonblank, fr.std_nonblank),
    ):
        assert mean is not None and std is not None
        for c in range(3):
            x = subset[..., c].astype(np.float64) / 255
            assert mean[c] == pytest.approx(x.mean(), **APPROX)
            assert std[c] == pytest.approx(x.std(), **APPROX)


def test_stats_json_round_trips_and_is_reproducible(converted: Path, stats: Stats) -> None:
    path = write_stats(converted, stats)
    assert path == str(converted / STATS)
    first = (converted / STATS).read_bytes()
    assert read_stats(converted) == stats
    write_stats(converted, compute_stats(converted))
    assert (converted / STATS).read_bytes() == first
    assert b"NaN" not in first


def test_without_frames_and_for_chosen_sessions(
    converted: Path, sources: dict[str, Source]
) -> None:
    name = REAL_BUNDLES[0].name
    some = compute_stats(converted, [name], frames=False)
    assert some.frames is None and some.sessions == (name,)
    assert some.periodic_rows == len(periodic_rows({name: sources[name]}))


def test_format_stats_lists_every_field_and_the_channels(stats: Stats) -> None:
    text = format_stats(stats)
    assert text.startswith(f"{len(REAL_BUNDLES)} session(s), {stats.periodic_rows} periodic rows")
    for name in stats.fields:
        assert f"\n{name} " in text
    assert "mean (0-1)" in text and "non-blank std (0-1)" in text and "destroy" in text


def read_foreign_stats(tmp: Path) -> Stats | None:
    (tmp / STATS).write_text('{"format": "something-else"}')
    return read_stats(tmp)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (compute_stats, "no catalog.parquet here"),
        (read_foreign_stats, "not a reacture-stats version 1 file"),
    ],
    ids=["no-catalog", "foreign-stats-json"],
)
def test_bad_outputs_say_what_to_do(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        make(tmp_path)


@given(st.lists(st.lists(st.floats(-1e6, 1e6), max_size=20), min_size=1, max_size=6))
def test_moments_merged_over_parts_equal_numpy_over_the_whole(parts: list[list[float]]) -> None:
    acc = _Moments()
    for part in parts:
        acc.add(np.array(part, dtype=np.float64))
    whole = np.array([v for part in parts for v in part], dtype=np.float64)
    got = acc.result()
    assert got.count == whole.size
    if whole.size:
        assert got.mean == pytest.approx(whole.mean(), rel=1e-9, abs=1e-6)
        assert got.std == pytest.approx(whole.std(), rel=1e-7, abs=1e-6)
        assert (got.min, got.max) == (whole.min(), whole.max())
    else:
        assert got.mean is None
