"""Hugging Face ``datasets`` reads what we write: the real recordings' shards through its
``webdataset`` builder (streaming and not), and a converted folder through its dataset cards.

Sources are read without project code (``np.fromfile``, ``json.loads``); the labels are compared
through ``FrameLabels``: from the sample as ``datasets`` hands it out, and from the rows table.
No network: the Hub is switched off for the whole module.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["HF_DATASETS_OFFLINE"] = "1"  # read by datasets when it is imported
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from reacture_convert.formats.wds.sample_json import SAMPLE_TYPE  # noqa: E402
from reacture_convert.read.labels import FrameLabels  # noqa: E402
from reacture_convert.run.convert import ConvertOptions  # noqa: E402
from reacture_convert.writers.webdataset import WdsOptions  # noqa: E402
from tests.helpers.real import REAL_BUNDLES, convert_real_bundles  # noqa: E402
from tests.helpers.sources import same_row  # noqa: E402

DATA_OFFSET = 129


@pytest.fixture(scope="module", params=["npy", "webp", "webp-gzip", "npy-gzip"])
def out(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The real recordings converted with --format zarr,wds, frames as .npy (an array to
    ``datasets``) and as lossless .webp (an image); ``-gzip``: in compressed shards
    (``.tar.gz``, one gzip member flushed every run of samples)."""
    encoding, _, compression = request.param.partition("-")
    wds = WdsOptions(encoding=encoding, compression=compression or "none")
    options = ConvertOptions(formats=("zarr", "wds"), wds=wds)
    return convert_real_bundles(tmp_path_factory.mktemp("hf") / "out", options)


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "hf-cache")


def shard_files(out: Path) -> list[str]:
    index = json.loads((out / "wds" / "index.json").read_text())
    return [str(out / "wds" / s["url"]) for s in index["shards"]]


@functools.cache
def sources() -> dict[str, tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]]:
    """frames, timestamps and rows of every real bundle, by session name (read once)."""
    found = {}
    for folder in REAL_BUNDLES:
        prefix = next(folder.glob("*_metadata.json")).name[: -len("_metadata.json")]
        frames = np.fromfile(folder / f"{prefix}_frames.npy", np.uint8, offset=DATA_OFFSET)
        ts = np.fromfile(folder / f"{prefix}_timestamps.npy", "<f4", offset=DATA_OFFSET)
        lines = (folder / f"{prefix}_data.jsonl").read_bytes().split(b"\n")
        found[prefix] = (frames.reshape(-1, 128, 128, 3), ts, [json.loads(x) for x in lines])
    return found


def picture(sample: dict[str, Any]) -> np.ndarray:
    """The frame as ``datasets`` hands it out: an array (``.npy``) or a PIL image (``.webp``,
    which must be the lossless RGB picture)."""
    if "npy" in sample:
        assert "webp" not in sample
        return np.asarray(sample["npy"], dtype=np.uint8)
    image = sample["webp"]
    assert image.format == "WEBP" and image.mode == "RGB", (image.format, image.mode)
    return np.asarray(image)


def check_samples(samples: Iterator[dict[str, Any]], decode: bool) -> int:
    """Every sample equals its source frame, row, events, time and labels; returns the count."""
    src = sources()
    periodic_rows = {
        session: [j for j, r in enumerate(rows) if "visual_frame_path" in r]
        for session, (_, _, rows) in src.items()
    }
    rows_labels = {}
    seen = 0
    for s in samples:
        meta = json.loads(s["json"]) if decode else s["json"]
        session, i = meta["session"], meta["frame_index"]
        frames, ts, rows = src[session]
        assert s["__key__"] == f"{session}/{i:06d}"
        assert np.array_equal(picture(s), frames[i])
        assert np.float32(meta["timestamp_ms"]).tobytes() == ts[i].tobytes()
        periodic = periodic_rows[session]
        j, prev = periodic[i], (periodic[i - 1] if i else -1)
        assert meta["row_index"] == j and same_row(meta["row"], rows[j])
        assert [e["row_index"] for e in meta["events"]] == list(range(prev + 1, j))
        assert all(same_row(e, rows[e["row_index"]]) for e in meta["events"])
        if session not in rows_labels:
            table = pq.read_table(Path(s["__url__"]).parent.parent / "rows" / f"{session}.parquet")
            rows_labels[session] = FrameLabels.from_tables(session, table, ts)
        want, got = rows_labels[session], FrameLabels.from_sample_json(meta)
        for name in ("row_index", "timestamp_ms", "keys", "actions", "battery", "position"):
            assert np.array_equal(getattr(got, name)[0], getattr(want, name)[i], equal_nan=True)
        seen += 1
    return seen


def total_frames() -> int:
    return sum(len(f) for f, _, _ in sources().values())


def test_every_sample_json_has_the_one_structure(out: Path) -> None:
    """What broke ``datasets`` ("Unable to merge: Field json has incompatible types"): each
    sample's JSON alone infers an Arrow schema that unifies with every other sample's, and every
    sample fits ``SAMPLE_TYPE`` without loss."""
    import webdataset

    metas = [
        json.loads(s["json"]) for s in webdataset.WebDataset(shard_files(out), shardshuffle=False)
    ]
    assert len(metas) == total_frames()
    inferred = [pa.Table.from_pylist([m]) for m in metas]
    merged = pa.concat_tables(inferred, promote_options="default").schema
    typed = pa.array(metas, type=SAMPLE_TYPE)
    assert typed.to_pylist() == metas  # every key present, every value of its declared type
    assert pa.schema(SAMPLE_TYPE).names == merged.names
    for field in merged:  # nothing inferred contradicts the declared type
        declared = SAMPLE_TYPE.field(field.name).type
        assert (
            pa.concat_tables(
                [
                    pa.table({"x": pa.array([], declared)}),
                    pa.table({"x": pa.array([], field.type)}),
                ],
                promote_options="default",
            )
            .schema.field("x")
            .type.equals(declared)
        )


def test_webdataset_builder_streams_every_sample(out: Path, cache: str) -> None:
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": shard_files(out)},
        split="train",
        streaming=True,
        cache_dir=cache,
    )
    assert check_samples(iter(ds), decode=False) == total_frames()


def test_webdataset_builder_loads_every_sample_with_the_cards_features(
    out: Path, cache: str
) -> None:
    """Not streaming, ``datasets`` types every column from the first five samples, whose
    ``sensors.victims`` are empty lists and whose events lack most fields: JSON cannot say their
    types, so they come from ``wds/README.md`` (what ``load_dataset(OUT/wds)`` uses)."""
    features = datasets.load_dataset_builder(str(out / "wds"), cache_dir=cache).info.features
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": shard_files(out)},
        split="train",
        features=features,
        cache_dir=cache,
    )
    assert len(ds) == total_frames()
    assert ds.features == features  # the card's types, the picture's uint8 array included
    if "npy" in ds.column_names:  # the array read as one, not as 49,152 Python ints (~20x)
        ds = ds.with_format("numpy", columns=["npy"], output_all_columns=True)
    assert check_samples(iter(ds), decode=False) == total_frames()


# the encoding: the builder tests above take both; .webp here, as loading .npy samples into
# datasets' Arrow cache is slow (nested lists of 49,152 values a sample: ~10x the time)
@pytest.mark.parametrize("out", ["webp", "webp-gzip"], indirect=True)
@pytest.mark.parametrize("streaming", [False, True], ids=["loaded", "streaming"])
def test_load_dataset_understands_the_converted_folder(
    out: Path, cache: str, streaming: bool
) -> None:
    rows = datasets.load_dataset(str(out), split="train", streaming=streaming, cache_dir=cache)
    frames = datasets.load_dataset(
        str(out), "frames", split="train", streaming=streaming, cache_dir=cache
    )
    samples = datasets.load_dataset(
        str(out / "wds"), split="train", streaming=streaming, cache_dir=cache
    )
    want_rows = sum(pq.read_metadata(p).num_rows for p in (out / "rows").glob("*.parquet"))
    got_rows = list(rows)
    assert len(got_rows) == want_rows and {r["session"] for r in got_rows} == set(sources())
    assert sorted((r["session"], r["row_index"]) for r in got_rows) == sorted(
        (s, k) for s, (_, _, src) in sources().items() for k in range(len(src))
    )
    got_frames = list(frames)
    assert len(got_frames) == total_frames()
    assert sum(r["blank"] for r in got_frames) == 371  # two of the three recordings are black
    assert check_samples(iter(samples), decode=False) == total_frames()
