"""Outputs deleted by hand come back: a re-run over the same bundles sees that a session's
catalog row names an output that is gone, converts that session again (not ``skipped``), and
writes exactly the bytes of the first run; ``verify`` then passes."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions

BOTH = ConvertOptions(formats=("zarr", "wds"))
A, B = "reacture_1795600000001", "reacture_1795600000002"


def digests(out: Path) -> dict[str, str]:
    """sha256 of every output file (not the catalog, which records times), by relative path."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in ("zarr", "rows", "frames", "wds")
        for p in sorted((out / d).rglob("*"))
        if p.is_file()
    }


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize(
    "victim",
    [f"zarr/{A}.zarr", f"rows/{A}.parquet", f"frames/{A}.parquet", "wds/*.tar"],
    ids=["zarr-group", "rows", "frames-table", "shard"],
)
def test_an_output_deleted_by_hand_is_written_again_exactly(
    make_bundle: Callable[..., Path], tmp_path: Path, victim: str
) -> None:
    bundles = [str(make_bundle(n_frames=n, seed=n, prefix=p)) for n, p in ((7, A), (4, B))]
    root = tmp_path / "out"
    out = Output(str(root))
    assert run_convert(bundles, out, BOTH, scheduler="sync").ok
    before = digests(root)
    gone = sorted(root.glob(victim))
    assert gone
    for path in gone:
        _remove(path)
    assert digests(root) != before

    result = run_convert(bundles, out, BOTH, scheduler="sync")
    assert result.ok
    assert digests(root) == before
    assert verify_dataset(out, sources=True) == (2, [])
    status = {e.session: e.status.value for e in result.entries}  # what this run did
    if victim.startswith("wds/"):  # the shard set is written again from the sessions' tars
        assert status == {A: "skipped", B: "skipped"}
    else:  # the damaged session is converted again, the other one is left alone
        assert status == {A: "converted", B: "skipped"}
