"""open_dataset (issue 6): every session of the converted real fixtures reads back exactly what
its bundle holds (frames, timestamps, rows, alignment, metadata), lazily, from a folder or a URL;
frame labels from the tables and from the WebDataset samples both equal the labels computed
straight from the sources."""

from __future__ import annotations

import json
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from reacture_convert.errors import OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.dataset import open_dataset
from reacture_convert.read.labels import KEYS, MOMENTARY_ACTIONS, FrameLabels
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from tests.helpers.real import REAL_BUNDLES, convert_real_bundles
from tests.helpers.sources import Source, expected_labels, read_source

pytestmark = pytest.mark.zarr_compat  # sessions opened with zarr-python, folder and URL

SESSIONS = sorted(p.name for p in REAL_BUNDLES)


def assert_labels(labels: FrameLabels, expected: dict[int, dict[str, Any]]) -> None:
    assert sorted(labels.frame_index.tolist()) == sorted(expected)
    for k, f in enumerate(labels.frame_index.tolist()):
        e = expected[f]
        assert labels.row_index[k] == e["row_index"]
        assert labels.keys[k].tolist() == e["keys"], f"frame {f}"
        assert labels.actions[k].tolist() == e["actions"], f"frame {f}"
        for name in ("battery", "damage", "health", "timestamp_ms"):
            assert getattr(labels, name)[k] == e[name], f"frame {f} {name}"
        for name in ("position", "velocity", "accelerometer"):
            assert getattr(labels, name)[k].tolist() == e[name], f"frame {f} {name}"


def iter_shard_json(out: Path) -> Iterator[dict[str, Any]]:
    for shard in json.loads((out / "wds" / "index.json").read_text())["shards"]:
        with tarfile.open(out / "wds" / shard["url"]) as tar:
            for info in tar:
                if info.name.endswith(".json"):
                    member = tar.extractfile(info)
                    assert member is not None
                    yield json.loads(member.read())


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every real fixture converted once for this module, Zarr + Parquet + shards."""
    return convert_real_bundles(tmp_path_factory.mktemp("dataset") / "out")


@pytest.fixture(scope="module")
def sources() -> dict[str, Source]:
    return {p.name: read_source(p) for p in REAL_BUNDLES}


# --- tests ----------------------------------------------------------------------------------------
def test_sessions_are_the_converted_ones_sorted(converted: Path) -> None:
    ds = open_dataset(str(converted))
    assert ds.sessions == tuple(SESSIONS)
    assert all(name in ds for name in SESSIONS) and "reacture_0" not in ds
    assert [e.status for e in ds.catalog] == ["converted"] * len(SESSIONS)
    assert ds.wds_index is not None and ds.wds_index.total_samples == sum(
        len(read_source(p).timestamps) for p in REAL_BUNDLES
    )


def test_skipped_sessions_stay_readable(converted: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(converted, copy)
    summary = run_convert(
        [str(p) for p in REAL_BUNDLES], Output(str(copy)), ConvertOptions(), scheduler="sync"
    )
    assert summary.counts == {"skipped": len(SESSIONS)}
    ds = open_dataset(copy)
    assert ds.sessions == tuple(SESSIONS)
    assert ds[SESSIONS[0]].frames.shape[0] > 0


@pytest.mark.parametrize("session", SESSIONS)
def test_session_reads_back_its_bundle(
    converted: Path, sources: dict[str, Source], session: str
) -> None:
    src = sources[session]
    s = open_dataset(str(converted))[session]
    assert s.frames.shape == src.frames.shape and s.frames.dtype == np.uint8
    assert np.array_equal(s.frames[:], src.frames)
    assert np.array_equal(s.frames_dask().compute(), src.frames)
    assert s.timestamps.dtype == np.float32
    assert s.timestamps.tobytes() == src.timestamps.astype("<f4").tobytes()
    assert s.rows.num_rows == len(src.rows)
    assert s.rows["row_index"].to_pylist() == list(range(len(src.rows)))
    assert s.alignment["frame_index"].to_pylist() == list(range(len(src.timestamps)))
    assert s.metadata == src.metadata
    assert s.attrs["session"] == session
    assert s.orientation == "bottom-up"
    assert s.n_frames == len(src.timestamps)


def test_nothing_is_read_before_it_is_asked_for(converted: Path) -> None:
    ds = open_dataset(str(converted))
    s = ds[SESSIONS[0]]
    assert ds[SESSIONS[0]] is s
    lazy = ("_zarr", "timestamps", "rows", "alignment", "labels", "attrs")
    assert not any(name in s.__dict__ for name in lazy)
    rows = s.rows
    assert s.rows is rows and "_zarr" not in s.__dict__ and "alignment" not in s.__dict__


@pytest.mark.parametrize("session", SESSIONS)
def test_labels_from_tables_equal_the_sources(
    converted: Path, sources: dict[str, Source], session: str
) -> None:
    labels = open_dataset(str(converted))[session].labels
    assert labels.session == session
    assert labels.keys.shape == (len(labels), len(KEYS))
    assert labels.actions.shape == (len(labels), len(MOMENTARY_ACTIONS))
    assert_labels(labels, expected_labels(sources[session]))


def test_labels_from_shard_samples_equal_the_sources(
    converted: Path, sources: dict[str, Source]
) -> None:
    expected = {s: expected_labels(src) for s, src in sources.items()}
    seen = 0
    for meta in iter_shard_json(converted):
        one_label = FrameLabels.from_sample_json(meta)
        assert_labels(
            one_label, {meta["frame_index"]: expected[meta["session"]][meta["frame_index"]]}
        )
        seen += 1
    assert seen == sum(len(e) for e in expected.values())


def test_destroy_comes_from_the_interval_not_the_periodic_flag(converted: Path) -> None:
    ds = open_dataset(str(converted))
    destroy = KEYS.index("destroy")
    total = sum(int(ds[s].labels.keys[:, destroy].sum()) for s in ds.sessions)
    flags = sum(
        pc.sum(pc.struct_field(ds[s].rows["key_presses"], "destroy")).as_py() or 0
        for s in ds.sessions
    )
    assert flags == 0  # the game never sets it
    assert total == 3  # 1 + 2 destroy_rubble actions in the real fixtures (fixtures README)


def test_open_dataset_over_a_url(converted: Path, sources: dict[str, Source]) -> None:
    fs = fsspec.filesystem("memory")
    root = f"/ds-{uuid.uuid4().hex}"
    fs.put(str(converted), root, recursive=True)
    try:
        ds = open_dataset(f"memory://{root}")
        assert ds.sessions == tuple(SESSIONS)
        s = ds[SESSIONS[0]]
        assert np.array_equal(s.frames[:], sources[SESSIONS[0]].frames)
        local = pq.read_table(converted / "rows" / f"{SESSIONS[0]}.parquet")
        assert s.rows.equals(local)
        assert_labels(s.labels, expected_labels(sources[SESSIONS[0]]))
    finally:
        fs.rm(root, recursive=True)


@pytest.mark.parametrize(
    ("what", "error", "message"),
    [
        ("no-catalog", OutputError, "no catalog.parquet here"),
        ("unknown-session", KeyError, "is not a converted session"),
        ("wds-only", KeyError, "is not a converted session"),
    ],
    ids=["no-catalog", "unknown-session", "wds-only"],
)
def test_bad_requests_say_what_is_wrong(
    converted: Path, tmp_path: Path, what: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        if what == "no-catalog":
            open_dataset(tmp_path)
        elif what == "unknown-session":
            open_dataset(converted)["reacture_0"]
        else:
            out = tmp_path / "wds-only"
            run_convert(
                [str(REAL_BUNDLES[0])],
                Output(str(out)),
                ConvertOptions(formats=("wds",)),
                scheduler="sync",
            )
            open_dataset(out)[REAL_BUNDLES[0].name]
