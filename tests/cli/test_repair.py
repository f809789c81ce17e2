"""``reacture-convert repair`` end to end: a dataset converted with ``--format zarr,wds`` whose
catalog is damaged is rebuilt from its committed outputs and then verifies; ``--dry-run``
changes no byte; exit 0 when repaired or when nothing was wrong, 3 when it cannot. The same on
the local S3 server: a run heals the newest log fragment cut short, and repair rebuilds a
catalog with a fragment gone. What the commands say goes to a real process's output."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output, lock_output
from reacture_convert.read.verify import verify_dataset
from tests.helpers.damaged import (
    DAMAGES,
    FRAGMENT,
    N_BUNDLES,
    caught_mid_run,
    copy_dataset,
    write_bundles,
)
from tests.helpers.s3 import S3

CLI = [sys.executable, "-m", "reacture_convert"]
SAMPLES = sum(6 + k for k in range(N_BUNDLES))  # every frame is a sample


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repair-in")
    write_bundles(root)
    return root


@pytest.fixture(scope="module")
def converted(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven sessions with ``--format zarr,wds``, the last three rows still in the log."""
    out = tmp_path_factory.mktemp("repair") / "base"
    code, text = invoke(
        "convert", inputs, "--out", out, "--format", "zarr,wds", "--scheduler", "sync", "-q"
    )
    assert code == 0, text
    caught_mid_run(Output(str(out)))
    (out / ".lock").unlink()  # a dataset at rest, as copied or uploaded
    return out


def damaged(converted: Path, to: Path, *damages: str) -> Path:
    out = copy_dataset(converted, to)
    for d in damages:
        DAMAGES[d][0](out)
    return out


def every_file(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


ALL_EXACT = (
    f"{N_BUNDLES} session(s) and 1 shard(s) of {SAMPLES} samples checked (outputs): all exact"
)


def test_repair_rebuilds_a_damaged_catalog_and_verify_then_passes(
    converted: Path, tmp_path: Path
) -> None:
    out = damaged(
        converted, tmp_path / "out", "catalog.parquet footer corrupt", "middle fragment deleted"
    )
    code, text = invoke("verify", out)
    assert code == 1 and "catalog.parquet" in text and f"reacture-convert repair {out}" in text

    before = every_file(out)
    code, text = invoke("repair", out, "--dry-run")
    assert code == 0, text
    assert "DAMAGED catalog.parquet" in text and f"DAMAGED {FRAGMENT[2]}: missing" in text
    assert "would rebuild the catalog: 7 rows" in text and "nothing was changed" in text
    assert every_file(out) == before  # the dry run changed no byte

    code, text = invoke("repair", out)
    assert code == 0, text
    assert "catalog rebuilt: 7 rows" in text and "set aside: .damaged/" in text
    code, text = invoke("verify", out, "--sources")
    assert code == 0 and ALL_EXACT.replace("(outputs)", "(outputs and sources)") in text, text
    # re-derived rows carry the digests of the verified files, which verify then checks
    notes: list[str] = []
    assert verify_dataset(Output(str(out)), notes=notes) == (N_BUNDLES, [])
    assert not any("no digests" in n for n in notes), notes
    rows = read_catalog(Output(str(out)))
    assert all(e.files for e in rows if e.status.is_live)
    assert {f.path for e in rows for f in e.files} >= {f"rows/{e.session}.parquet" for e in rows}
    kept = {p.split("/", 2)[2] for p in every_file(out) if p.startswith(".damaged/")}
    assert kept == {"catalog.parquet", FRAGMENT[1], FRAGMENT[3]}  # set aside, none deleted

    code, text = invoke("repair", out, "--json")
    assert code == 0 and json.loads(text)["changed"] is False  # nothing left to do


def test_repair_exits_3_when_it_cannot(converted: Path, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    code, text = invoke("repair", empty)
    assert code == 3 and "not a converted dataset" in text
    out = damaged(converted, tmp_path / "out", "middle fragment cut to half")
    with lock_output(Output(str(out))):  # another run holds OUT
        code, text = invoke("repair", out)
    assert code == 3, text
    assert (out / FRAGMENT[2]).exists() and not (out / ".damaged").exists()


def test_verify_and_convert_say_that_they_dropped_a_cut_fragment(
    converted: Path, inputs: Path, tmp_path: Path
) -> None:
    out = damaged(converted, tmp_path / "out", "trailing fragment cut to half")
    said = f"catalog: dropped an incomplete fragment {FRAGMENT[3]} left by an interrupted run"
    verify = subprocess.run([*CLI, "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0 and said in verify.stderr, verify.stderr
    convert = subprocess.run(
        [*CLI, "convert", str(inputs), "--out", str(out), "--format", "zarr,wds", "-q"],
        capture_output=True,
        text=True,
    )
    assert convert.returncode == 0 and said in convert.stderr, convert.stderr
    assert "Traceback" not in convert.stderr
    code, text = invoke("verify", out)
    assert code == 0 and ALL_EXACT in text, text


# --- on the local S3 server -------------------------------------------------------------------


def upload(moto_s3: S3, local: Path, name: str) -> str:
    moto_s3.fs.put(str(local) + "/", f"datasets/{name}/", recursive=True)
    moto_s3.fs.invalidate_cache()
    return f"s3://datasets/{name}"


def test_a_run_on_the_bucket_heals_the_cut_fragment(
    moto_s3: S3, converted: Path, inputs: Path, tmp_path: Path
) -> None:
    local = damaged(converted, tmp_path / "out", "trailing fragment empty")
    url = upload(moto_s3, local, "heal-trailing")
    code, text = invoke("verify", url, *moto_s3.cli_options)
    assert code == 0 and f"{N_BUNDLES - 1} session(s)" in text, text
    code, text = invoke(
        "convert", inputs, "--out", url, "--format", "zarr,wds", "--scheduler", "sync",
        *moto_s3.cli_options,
    )  # fmt: skip
    assert code == 0 and "1 converted, 6 skipped" in text, text
    moto_s3.fs.invalidate_cache()
    names = moto_s3.fs.find("datasets/heal-trailing")
    assert not [n for n in names if n.startswith("datasets/heal-trailing/.catalog/")]
    aside = [n.split("/.damaged/", 1)[1] for n in names if "/.damaged/" in n]
    assert [n.split("/", 1)[1] for n in aside] == [FRAGMENT[3]]  # set aside, not deleted
    code, text = invoke("verify", url, *moto_s3.cli_options)
    assert code == 0 and ALL_EXACT in text, text


def test_repair_on_the_bucket(moto_s3: S3, converted: Path, inputs: Path, tmp_path: Path) -> None:
    local = damaged(converted, tmp_path / "out", "middle fragment deleted")
    url = upload(moto_s3, local, "repair-missing")
    code, text = invoke("verify", url, *moto_s3.cli_options)
    assert code == 1 and f"{FRAGMENT[2]}: missing" in text, text
    code, text = invoke(
        "convert", inputs, "--out", url, "--scheduler", "sync", *moto_s3.cli_options
    )
    assert code == 3 and f"reacture-convert repair {url}" in text, text
    code, text = invoke("repair", url, *moto_s3.cli_options)
    assert code == 0 and "catalog rebuilt: 7 rows" in text, text
    code, text = invoke("verify", url, *moto_s3.cli_options)
    assert code == 0 and ALL_EXACT in text, text
    moto_s3.fs.invalidate_cache()
    aside = [n for n in moto_s3.fs.find("datasets/repair-missing") if "/.damaged/" in n]
    assert sorted(n.rsplit("/", 1)[-1] for n in aside) == sorted(
        ["catalog.parquet", Path(FRAGMENT[1]).name, Path(FRAGMENT[3]).name]
    )
