"""Smoke test of the benchmark script: ``benchmarks/run.py --quick`` on tiny inputs runs every
measurement and reports every row. No timing is asserted: the numbers of a quick run mean
nothing, and this machine is shared."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from reacture_convert.testing.synth import iter_game_frames
from tests.helpers.paths import REPO

ROW_KEYS = (
    *("1", "2", "3", "3b", "4", "5", "6a", "6b", "6c", "6d", "7a", "7b", "7c", "7d"),
    *("8a", "8b", "8c", "8d", "8e", "8f", "9a", "9b", "9c", "9d", "9e"),
)
Run = tuple[subprocess.CompletedProcess[str], Path]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/run.py as a module (a script beside its measurement modules, not part of the
    package); its groups are its attributes (``bench.rows``, ``bench.harness``...)."""
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:  # run.py puts benchmarks/ first on sys.path: later imports must not see it
        sys.path[:] = path
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One ``--quick`` run with its work folder and results in a temporary folder."""
    tmp = tmp_path_factory.mktemp("bench")
    (tmp / "work").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--workdir",
            str(tmp / "work"),
            "--results",
            str(tmp / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    return proc, tmp


def test_a_quick_run_leaves_the_recorded_results_alone(bench: ModuleType) -> None:
    """``--quick`` numbers mean nothing: without ``--results`` they go to the ignored
    ``benchmarks/out/``, never over the tracked ``benchmarks/results.md``."""
    assert bench.results_folder(True, None) == REPO / "benchmarks" / "out"
    assert bench.results_folder(False, None) == REPO / "benchmarks"
    assert bench.results_folder(True, "elsewhere") == Path("elsewhere")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "benchmarks/out/results.md"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0


def test_quick_run_succeeds_and_cleans_up(quick_run: Run) -> None:
    proc, tmp = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list((tmp / "work").iterdir()) == []  # the work folder is removed without --keep


def test_table_has_every_row(quick_run: Run) -> None:
    proc, tmp = quick_run
    table = (tmp / "results" / "results.md").read_text(encoding="utf-8")
    keys = [
        line.split("|")[1].strip()
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| #")
    ]
    assert keys == list(ROW_KEYS)
    assert "| error |" not in table
    assert table in proc.stdout  # printed as well as written


def test_json_has_every_row_with_raw_samples(quick_run: Run) -> None:
    _, tmp = quick_run
    doc = json.loads((tmp / "results" / "results.json").read_text(encoding="utf-8"))
    assert [r["key"] for r in doc["rows"]] == list(ROW_KEYS)
    assert all(r["data"] for r in doc["rows"])
    assert {"generator", "real"} <= set(doc["compression"])


def test_product_rows_round_trip_losslessly(quick_run: Run) -> None:
    """The fidelity check of measurement 3 finds the product's Parquet rows equal to the JSONL."""
    _, tmp = quick_run
    doc = json.loads((tmp / "results" / "results.json").read_text(encoding="utf-8"))
    fidelity = next(r for r in doc["rows"] if r["key"] == "3")["data"]["fidelity"]
    assert fidelity["product"]["rows_differ"] == 0
    assert fidelity["duckdb"]["rows_differ"] > 0  # the check does see what a lossy reader loses


@pytest.mark.parametrize(
    ("orig", "got", "kind"),
    [
        ({"a": 1}, {"a": 1.0}, "int → float"),
        ({"t": 5}, {"t": "5"}, "int → str"),
        ({"a": 1}, {"a": 1, "b": None}, "absent → null"),
        ({"a": 1, "b": 2}, {"a": 1}, "field dropped"),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, "key order changed"),
        ({"v": [{"x": 1}]}, {"v": []}, "list length changed"),
        ({"s": "x"}, {"s": '"x"'}, "value changed"),
    ],
    ids=["int-float", "int-str", "absent-null", "dropped", "order", "list", "value"],
)
def test_diff_values_names_each_kind_of_loss(
    bench: ModuleType, orig: object, got: object, kind: str
) -> None:
    found: Counter[tuple[str, str]] = Counter()
    bench.rows.diff_values(orig, got, "", found)
    assert kind in {k for k, _ in found}


def test_equal_rows_have_no_difference(bench: ModuleType) -> None:
    found: Counter[tuple[str, str]] = Counter()
    row = {"a": 1, "b": [1.5, {"c": True}], "d": None, "e": "x"}
    bench.rows.diff_values(row, json.loads(json.dumps(row)), "", found)
    assert not found


# --- the frame generator the benchmarks run on ------------------------------------------------
def test_game_frames_are_deterministic_and_chunk_independent() -> None:
    a = np.concatenate(list(iter_game_frames(300, seed=3, chunk=256)))
    b = np.concatenate(list(iter_game_frames(400, seed=3, chunk=70)))
    assert a.shape == (300, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b[:300])  # frame i depends on the seed and i only


def test_game_frames_are_pictures_that_move() -> None:
    f = np.concatenate(list(iter_game_frames(300, seed=5)))
    assert f.reshape(300, -1).max(axis=1).min() > 0  # no blank frame
    changed = (f[1:] != f[:-1]).reshape(299, -1).any(axis=1).mean()
    assert 0.5 < changed < 0.98  # the camera moves, and sometimes holds still (as the real timer)
    assert not np.array_equal(
        iter_game_frames(5, seed=1).__next__(), iter_game_frames(5, seed=2).__next__()
    )


def test_game_frames_compress_like_the_real_variant_fixture(bench: ModuleType) -> None:
    """zstd level 1 over 64-frame chunks: the real variant fixture gives ~63x (noise would give
    ~1x, a flat picture thousands)."""
    frames = np.concatenate(list(iter_game_frames(640, seed=1)))
    assert 40 < importlib.import_module("harness").zstd_ratio(frames) < 95


def test_blank_frames_are_zeros() -> None:
    assert not np.concatenate(list(iter_game_frames(10, seed=1, blank=True))).any()


def _measured(value: object, key: str = "") -> list[tuple[str, float]]:
    """Every number in a row's raw data, with the key it sits under (lists and dicts walked)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [(key, float(value))]
    if isinstance(value, list):
        return [x for v in value for x in _measured(v, key)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _measured(v, str(k))]
    return []


def test_every_figure_is_a_positive_finite_number(quick_run: Run) -> None:
    """A quick run's numbers mean nothing, but each must be a real measurement: no NaN, no
    infinity, no zero time or speed (a step that did nothing or failed silently)."""
    _, tmp = quick_run
    doc = json.loads((tmp / "results" / "results.json").read_text(encoding="utf-8"))
    for row in doc["rows"]:
        numbers = [(k, v) for k, v in _measured(row["data"]) if k != "fidelity"]
        assert numbers, row["key"]
        assert all(math.isfinite(v) for _, v in numbers), (row["key"], numbers)
        timed = [
            (k, v)
            for k, v in numbers
            if k.endswith(("_s", "_fps", "_mb", "mb_per_s", "ratio", "speedup", "share"))
        ]
        assert timed and all(v > 0 for _, v in timed), (row["key"], timed)


def test_shard_encodings_script_measures_every_candidate(tmp_path: Path) -> None:
    """``benchmarks/shard_encodings.py --quick`` (no reader part: that is ``make bench``'s
    kind of run) prints its table, and every candidate the writer has round-trips: the foreign
    readers open npy, png, webp and npy.gz exactly (and shards gzip'ed whole); neither opens
    npy.zst without a package."""
    rows_json = tmp_path / "rows.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "shard_encodings.py"),
            "--quick",
            "--no-reader",
            "--json",
            str(rows_json),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| dataset | encoding | picture B/fr |" in proc.stdout
    rows = json.loads(rows_json.read_text())
    found = {(r["dataset"], r["candidate"].split()[0]): r for r in rows}
    assert {d for d, _ in found} == {"real", "real variant", "variant tiled", "generated"}
    webdataset_opens = {"npy", "png", "webp", "npy.gz"}  # its gz pre-handler, then npy
    hf_opens = webdataset_opens | {"npy.xz"}  # fsspec's decompressors (.zst: with zstandard)
    if importlib.util.find_spec("zstandard") is not None:
        hf_opens.add("npy.zst")
    for (_, name), r in found.items():
        if "whole shard" in r["candidate"]:  # .tar.gz: both open compressed tar streams
            assert r["webdataset"] == r["hf"] == "exact", r
            continue
        assert r["webdataset"] == ("exact" if name in webdataset_opens else "no (bytes)"), r
        assert r["hf"] == ("exact" if name in hf_opens else "no (bytes)"), r
        assert math.isfinite(r["decode_us"]) and r["picture_bytes"] > 0
    # the real pictures: webp is within 1.5x of the Zarr frames, raw npy ~60x
    assert found[("real variant", "webp")]["vs_zarr_frames"] < 1.5
    assert found[("real variant", "npy")]["vs_zarr_frames"] > 30
