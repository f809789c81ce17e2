"""``verify``'s per-session count of shard samples: index.json says how many samples each
session has in the shards; a count that is wrong while every shard's own size, sha256, sample
count and sessions hold (and the total adds up) is found by that check alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import Problem, verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions

A, B = "reacture_1795600000001", "reacture_1795600000002"


def test_a_session_sample_count_moved_to_another_session_is_found(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    bundles = [str(make_bundle(n_frames=n, seed=n, prefix=p)) for n, p in ((5, A), (3, B))]
    out = Output(str(tmp_path / "out"))
    assert run_convert(bundles, out, ConvertOptions(formats=("zarr", "wds")), scheduler="sync").ok
    assert verify_dataset(out) == (2, [])
    path = tmp_path / "out" / "wds" / "index.json"
    index = json.loads(path.read_text())
    assert [(s["session"], s["samples"]) for s in index["sessions"]] == [(A, 5), (B, 3)]
    index["sessions"][0]["samples"] = 4  # one of A's samples now said to be B's:
    index["sessions"][1]["samples"] = 4  # the total and every shard's entry still hold
    path.write_text(json.dumps(index, indent=2) + "\n")

    checked, problems = verify_dataset(out)
    assert checked == 2
    # (today this check alone sees it: the shards' own entries and the total still hold)
    assert (
        Problem(A, "wds: the shards hold 5 samples of this session, index.json says 4") in problems
    )
    assert (
        Problem(B, "wds: the shards hold 3 samples of this session, index.json says 4") in problems
    )
    done = CliRunner().invoke(cli, ["verify", str(tmp_path / "out")])
    assert done.exit_code != 0 and "index.json says 4" in done.output
