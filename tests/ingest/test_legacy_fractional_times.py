"""A legacy four-file export whose frame times have a fraction (``"timestamp_ms": 1200.375``;
JSON numbers need not be integers): the times are kept exactly (as float32, like
timestamps.npy), not rounded or truncated, and the outputs are those of the five-file bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from reacture_convert.output.storage import Output
from reacture_convert.read.session import open_session
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.testing.synth import BundleSpec, write_bundle, write_legacy_bundle

S = "reacture_1795600000011"
FRACTIONS = np.array([0.375, 0.5, 0.25, 0.875, 0.125, 0.75], dtype="<f4")


def test_fractional_legacy_frame_times_are_kept_exactly(tmp_path: Path) -> None:
    five = write_bundle(tmp_path / "five", BundleSpec(n_frames=6, seed=2, prefix=S))
    ts_path = five / f"{S}_timestamps.npy"
    header = ts_path.read_bytes()[:129]
    times = np.fromfile(ts_path, "<f4", offset=129) + FRACTIONS
    ts_path.write_bytes(header + times.tobytes())
    legacy = write_legacy_bundle(five, tmp_path / "legacy")
    assert b'"timestamp_ms":1200.375' in (legacy / f"{S}_frames.json").read_bytes()

    got = {}
    for name, bundle in (("legacy", legacy), ("five", five)):
        out = Output(str(tmp_path / "out" / name))
        assert run_convert([str(bundle)], out, scheduler="sync").ok
        assert verify_dataset(out, sources=True) == (1, [])
        stored = np.asarray(open_session(out, S).timestamps[:])
        table = pq.read_table(tmp_path / "out" / name / "frames" / f"{S}.parquet")
        assert stored.astype("<f4").tobytes() == times.tobytes()
        assert table["timestamp_ms"].to_numpy().tobytes() == times.tobytes()
        got[name] = (tmp_path / "out" / name / "frames" / f"{S}.parquet").read_bytes()
    assert got["legacy"] == got["five"]
