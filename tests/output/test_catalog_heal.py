"""A damaged catalog heals or says exactly what to do (docs/output-layout.md, "When the catalog
is damaged"). A dataset of seven sessions is caught mid-run (its last three rows still in the
log, one fragment each), then damaged one way per case:

- the newest fragment cut short (to half, to nothing: what an interrupted write leaves) is left
  out and said by every reader (``read_catalog``, ``verify``), and set aside by the next
  ``convert``, which converts the session whose row it held again: then all seven verify;
- any other damage (an older fragment cut short or gone, ``catalog.parquet`` corrupt, cut short
  or empty) is ``CatalogDamagedError`` naming the file and ``reacture-convert repair OUT``:
  ``verify`` fails with it, ``convert`` refuses (exit 3) and changes nothing;
- ``repair`` then rebuilds the catalog in every case (the damaged files set aside, never
  deleted), and all seven sessions verify.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.output.catalog import Catalog, CatalogDamagedError, read_catalog
from reacture_convert.output.catalog import log as catalog_log
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.repair import repair_catalog
from tests.helpers.catalog import entry
from tests.helpers.damaged import (
    DAMAGES,
    FRAGMENT,
    N_BUNDLES,
    caught_mid_run,
    copy_dataset,
    fragment_table,
    write_bundles,
)

HEALED = [name for name, (_, _, heals) in DAMAGES.items() if heals]
DAMAGED = [name for name, (_, _, heals) in DAMAGES.items() if not heals]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heal-in")
    write_bundles(root)
    return root


@pytest.fixture(scope="module")
def converted(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("heal") / "base"
    result = CliRunner().invoke(
        cli, ["convert", str(inputs), "--out", str(out), "--scheduler", "sync", "-q"]
    )
    assert result.exit_code == 0, result.output
    return out


def damaged_copy(converted: Path, tmp_path: Path, damage: str | None) -> Path:
    out = copy_dataset(converted, tmp_path / "out")
    caught_mid_run(Output(str(out)))
    assert len(read_catalog(Output(str(out)))) == N_BUNDLES  # whole before the damage
    if damage is not None:
        DAMAGES[damage][0](out)
    return out


def catalog_files(out: Path) -> dict[str, str]:
    files = [out / "catalog.parquet", *sorted((out / ".catalog").glob("*"))]
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.exists()
    }


def convert(inputs: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["convert", str(inputs), "--out", str(out), "--scheduler", "sync"]
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("damage", HEALED)
def test_the_newest_fragment_cut_short_is_left_out_said_and_healed_by_convert(
    converted: Path,
    inputs: Path,
    tmp_path: Path,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = damaged_copy(converted, tmp_path, damage)
    output = Output(str(out))
    said = f"catalog: dropped an incomplete fragment {FRAGMENT[3]} left by an interrupted run"
    notes: list[str] = []
    assert len(read_catalog(output, notes)) == N_BUNDLES - 1  # its row is lost
    assert len(notes) == 1 and notes[0].startswith(said)
    notes = []
    assert verify_dataset(output, notes=notes) == (N_BUNDLES - 1, [])
    assert notes and notes[0].startswith(said)
    assert (out / FRAGMENT[3]).exists()  # readers change nothing

    with caplog.at_level(logging.WARNING, "reacture_convert.catalog"):
        code, text = convert(inputs, out)
    assert code == 0, text
    assert said in caplog.text
    assert "1 converted, 6 skipped" in text  # the session whose row was lost, again
    assert not (out / FRAGMENT[3]).exists()
    assert [p.name for p in (out / ".damaged").glob(f"*/{FRAGMENT[3]}")] == [Path(FRAGMENT[3]).name]
    assert verify_dataset(output, sources=True) == (N_BUNDLES, [])
    caplog.clear()
    with caplog.at_level(logging.WARNING, "reacture_convert.catalog"):
        assert convert(inputs, out)[0] == 0
    assert said not in caplog.text  # said once: the later runs see a whole catalog


@pytest.mark.parametrize("damage", HEALED)
def test_a_run_that_loads_the_catalog_sets_the_cut_fragment_aside_and_says_so(
    converted: Path, tmp_path: Path, damage: str
) -> None:
    out = damaged_copy(converted, tmp_path, damage)
    catalog = Catalog.load(Output(str(out)))
    assert len(catalog.notes) == 1 and FRAGMENT[3] in catalog.notes[0]
    assert len(catalog.rows()) == N_BUNDLES - 1
    assert not (out / ".catalog").exists() or not any((out / ".catalog").iterdir())
    catalog.flush(final=True)
    assert Catalog.load(Output(str(out))).notes == []


@pytest.mark.parametrize("damage", DAMAGED)
def test_other_damage_stops_naming_the_file_and_the_repair(
    converted: Path, inputs: Path, tmp_path: Path, damage: str
) -> None:
    out = damaged_copy(converted, tmp_path, damage)
    output = Output(str(out))
    _, file, _ = DAMAGES[damage]
    repair = f"reacture-convert repair {out}"
    with pytest.raises(CatalogDamagedError) as raised:
        read_catalog(output)
    assert file in str(raised.value) and repair in str(raised.value)

    checked, problems = verify_dataset(output)
    assert checked == 0 and problems and problems[0].session == "catalog"
    assert file in problems[0].what and repair in problems[0].what

    before = catalog_files(out)
    code, text = convert(inputs, out)
    assert code == 3, text
    assert file in text and repair in text and "Traceback" not in text
    assert catalog_files(out) == before  # nothing changed


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_repair_rebuilds_every_damaged_catalog_so_that_verify_passes(
    converted: Path, tmp_path: Path, damage: str
) -> None:
    out = damaged_copy(converted, tmp_path, damage)
    output = Output(str(out))
    _, file, _ = DAMAGES[damage]
    before = catalog_files(out)

    plan = repair_catalog(output, dry_run=True)
    assert plan.changed and any(d.startswith(file) for d in plan.damage)
    assert plan.rows == N_BUNDLES and plan.set_aside == ()
    assert catalog_files(out) == before and not (out / ".damaged").exists()

    done = repair_catalog(output)
    assert done.rows == N_BUNDLES and done.derived == plan.derived
    assert verify_dataset(output, sources=True) == (N_BUNDLES, [])
    assert not (out / ".catalog").exists()
    aside = {p.split("/", 2)[2] for p in done.set_aside}  # .damaged/<when>/<path>
    assert aside == set(before)  # every old catalog file kept, none deleted
    for rel, digest in before.items():
        (kept,) = (out / ".damaged").glob(f"*/{rel}")
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    again = repair_catalog(output)
    assert not again.changed and again.set_aside == ()  # nothing left to do


def test_a_hole_that_a_compaction_made_meanwhile_is_read_again_not_reported(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader reads catalog.parquet; a run compacts (folds fragments 1-3 in, deletes them)
    and logs fragment 4; the reader lists the log and sees a hole after the position it read:
    the file's position moved on, so it reads again instead of reporting a missing fragment."""
    out = damaged_copy(converted, tmp_path, None)
    output = Output(str(out))
    real = catalog_log.read_compacted
    calls: list[int] = []

    def racing(o: Output) -> catalog_log.Compacted:
        read = real(o)
        calls.append(read.seq)
        if len(calls) == 1:
            monkeypatch.setattr(catalog_log, "read_compacted", real)  # the run's own reads
            Catalog.load(o)  # the compaction (writes seq 3, then deletes 1-3)
            catalog_log.write_fragment(
                o, 4, fragment_table([entry("elsewhere", "rejected", prefix="reacture_9")])
            )
            monkeypatch.setattr(catalog_log, "read_compacted", racing)
        return read

    monkeypatch.setattr(catalog_log, "read_compacted", racing)
    rows = read_catalog(output)
    assert calls == [0, 3]  # read again, once
    assert len(rows) == N_BUNDLES + 1
