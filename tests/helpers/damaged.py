"""A converted dataset whose catalog is caught mid-run (rows still in the log), and the damage
a crash or a person can do to it: for the catalog's healing and repair tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from reacture_convert.arrow import string_array
from reacture_convert.output.catalog import read_catalog, write_catalog
from reacture_convert.output.catalog.log import write_fragment
from reacture_convert.output.catalog.store import RowStore
from reacture_convert.output.layout import fragment_name
from reacture_convert.output.storage import Output
from reacture_convert.testing.synth import BundleSpec, write_bundle

N_BUNDLES = 7
LOGGED = 3  # the last rows, one log fragment each: .catalog/000000000001..3.arrow


def write_bundles(root: Path) -> list[Path]:
    """Seven small bundles (a second or two to convert)."""
    return [
        write_bundle(
            root / f"b{k}", BundleSpec(n_frames=6 + k, seed=k, prefix=f"reacture_17956100{k:05d}")
        )
        for k in range(N_BUNDLES)
    ]


def fragment_table(rows: list[object]) -> pa.Table:
    store = RowStore()
    ids = [store.add(r) for r in rows]  # type: ignore[arg-type]
    return store.table(ids).append_column("op", string_array([None] * len(ids)))


def caught_mid_run(out: Output) -> None:
    """Rewrite a finished dataset's catalog as a run killed after logging its last ``LOGGED``
    sessions leaves it: the rows before them in catalog.parquet, each of them in a fragment."""
    rows = read_catalog(out)
    write_catalog(out, rows[:-LOGGED])
    for seq, row in enumerate(rows[-LOGGED:], start=1):
        write_fragment(out, seq, fragment_table([row]))


def copy_dataset(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _corrupt_footer(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-300:-8] = b"\xff" * 292  # the Parquet footer (thrift): "Couldn't deserialize thrift"
    path.write_bytes(bytes(data))


FRAGMENT = {k: fragment_name(k) for k in range(1, LOGGED + 1)}
# name -> (what it does to OUT, the file it damages, healed automatically?)
DAMAGES: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    "trailing fragment cut to half": (
        lambda out: _truncate(out / FRAGMENT[3], 0.5),
        FRAGMENT[3],
        True,
    ),
    "trailing fragment empty": (lambda out: _truncate(out / FRAGMENT[3], 0), FRAGMENT[3], True),
    "middle fragment cut to half": (
        lambda out: _truncate(out / FRAGMENT[2], 0.5),
        FRAGMENT[2],
        False,
    ),
    "middle fragment deleted": (lambda out: (out / FRAGMENT[2]).unlink(), FRAGMENT[2], False),
    "first fragment deleted": (lambda out: (out / FRAGMENT[1]).unlink(), FRAGMENT[1], False),
    "catalog.parquet footer corrupt": (
        lambda out: _corrupt_footer(out / "catalog.parquet"),
        "catalog.parquet",
        False,
    ),
    "catalog.parquet cut to half": (
        lambda out: _truncate(out / "catalog.parquet", 0.5),
        "catalog.parquet",
        False,
    ),
    "catalog.parquet deleted": (
        lambda out: (out / "catalog.parquet").unlink(),
        "catalog.parquet",
        False,
    ),
    "catalog.parquet empty": (
        lambda out: _truncate(out / "catalog.parquet", 0),
        "catalog.parquet",
        False,
    ),
}
