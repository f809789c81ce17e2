"""A bundle whose very first JSONL row is frame 0's periodic row (no game_start or event
before it): row index 0 is a row like any other. The alignment table points frame 0 at row 0
(not at "no row"), ``verify`` proves it, and frame 0's labels come from row 0."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reacture_convert.output.storage import Output
from reacture_convert.read.sources.zarr import ZarrSource
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.catalog import forget_digests

S = "reacture_1795600000012"


def test_a_periodic_row_at_row_index_0_is_aligned(tmp_path: Path) -> None:
    bundle = write_bundle(
        tmp_path / "b", BundleSpec(n_frames=4, seed=5, prefix=S, events_per_frame=0)
    )
    data = bundle / f"{S}_data.jsonl"
    lines = data.read_text().split("\n")
    while json.loads(lines[0]).get("visual_frame_path") is None:  # game_start and the rest
        lines.pop(0)
    first = json.loads(lines[0])
    assert first["visual_frame_path"] == "frames/frame_000000.npy"
    data.write_text("\n".join(lines))
    meta_path = bundle / f"{S}_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["data_stats"]["total_samples"] = len(lines)  # the metadata counts the rows
    meta_path.write_text(json.dumps(meta, indent=2))

    out = Output(str(tmp_path / "out"))
    assert run_convert([str(bundle)], out, scheduler="sync").ok
    table = pq.read_table(tmp_path / "out" / "frames" / f"{S}.parquet")
    assert table["row_index"].to_pylist() == [0, 1, 2, 3]
    assert verify_dataset(out, sources=True) == (1, [])
    (batch,) = list(ZarrSource(out).iter_batches(8))
    assert batch["frame_index"].tolist() == [0, 1, 2, 3]
    assert batch["timestamp_ms"][0] == first["timestamp_ms"]
    assert batch["battery"][0, 0] == first["battery"]

    # frames 0 and 1 pointed at each other's rows: verify names both, row 0 included
    path = tmp_path / "out" / "frames" / f"{S}.parquet"
    swapped = table.set_column(
        table.schema.get_field_index("row_index"),
        table.schema.field("row_index"),
        pa.array([1, 0, 2, 3], pa.int64()),
    )
    pq.write_table(swapped, path, compression="zstd")
    checked, problems = verify_dataset(out)
    assert len(problems) == 1 and problems[0].what.startswith(f"frames/{S}.parquet: ")
    forget_digests(str(tmp_path / "out"))  # the derived check alone (a catalog without digests)
    checked, problems = verify_dataset(out)
    said = [str(p) for p in problems]
    assert checked == 1
    assert f"{S}: frame 0: row_index 1 is not its periodic row" in said
    assert f"{S}: frame 1: row_index 0 is not its periodic row" in said
