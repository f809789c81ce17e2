"""A small dataset to curate (``remove``, ``subset``): four tiny bundles, one all black, the
first three converted with ``--format zarr,wds`` into shards that span sessions and the fourth
appended; and what such a dataset holds, read back byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.formats.wds.index import read_index
from reacture_convert.formats.wds.tar import iter_tar_samples
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.stats import compute_stats, write_stats
from reacture_convert.testing.synth import BundleSpec, write_bundle

FRAMES = (10, 12, 7, 10)  # the third is all black; the fourth is appended
NAMES = tuple(f"reacture_17956200{k:05d}" for k in range(len(FRAMES)))
BLACK = NAMES[2]
OPTS = ["--format", "zarr,wds", "--shard-size", "200KB", "--scheduler", "sync", "-q"]
OUTPUT_DIRS = ("zarr", "rows", "frames", "wds")

Sample = tuple[str, dict[str, bytes]]


def invoke(*args: str | Path, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    return result.exit_code, result.output


def write_inputs(root: Path) -> list[Path]:
    return [
        write_bundle(root / f"b{k}", BundleSpec(n_frames=n, seed=k, prefix=NAMES[k], blank=k == 2))
        for k, n in enumerate(FRAMES)
    ]


def make_base(inputs: list[Path], out: Path, *, stats: bool = True) -> Path:
    """Three sessions converted, the fourth appended as new shards; stats.json written; the
    lock file gone (a dataset at rest)."""
    code, text = invoke("convert", *inputs[:3], "--out", out, *OPTS)
    assert code == 0, text
    code, text = invoke("convert", *inputs, "--out", out, *OPTS, "--append")
    assert code == 0, text
    if stats:
        write_stats(out, compute_stats(out, frames=False))
    (out / ".lock").unlink()
    return out


def copy(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to


def samples(out: Path) -> list[Sample]:
    """Every sample of the shard set, in index order, with its members' bytes."""
    index = read_index(Output(str(out)))
    assert index is not None
    found: list[Sample] = []
    for shard in index.shards:
        with open(out / "wds" / shard.url, "rb") as f:
            found += list(iter_tar_samples(f, shard.url))
    return found


def session_of(sample: Sample) -> str:
    return sample[0].split("/")[0]


def files(out: Path) -> dict[str, bytes]:
    """Every output file (Zarr, rows, frames, shards, index) by path, with its bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for d in OUTPUT_DIRS
        for p in sorted((out / d).rglob("*"))
        if p.is_file()
    }


def live(out: Path | str, storage_options: dict[str, object] | None = None) -> set[str]:
    """The sessions of the catalog's live rows."""
    catalog = read_catalog(Output(str(out), storage_options or {}))
    return {e.session or "" for e in catalog if e.status.is_live}
