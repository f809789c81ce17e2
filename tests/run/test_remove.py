"""``remove`` from a dataset converted with ``--format zarr,wds`` and an ``--append``ed shard set:
every remaining sample is byte-identical to before and in its order, no removed one is anywhere
(files, shards, index, catalog live rows, card, stats, readers), ``verify`` passes; a re-convert
of the same bytes skips the removed session as ``removed``, ``--readmit`` brings it back; a kill
(a real process, SIGKILLed at each phase of ``run.removal``) leaves the old dataset or one the
next command completes into the new one; the same on the local S3 server (one case)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.index import read_index
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.layout import REMOVING, STAGING
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.read.sources import SOURCES
from reacture_convert.read.stats import read_stats
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.removal import PHASES
from reacture_convert.run.remove import remove_sessions
from tests.helpers.curate import (
    BLACK,
    FRAMES,
    NAMES,
    OPTS,
    copy,
    files,
    invoke,
    live,
    make_base,
    samples,
    session_of,
    write_inputs,
)
from tests.helpers.s3 import S3

CLI = [sys.executable, "-m", "reacture_convert"]
GONE = NAMES[1]  # spans shards with its neighbours in the first set


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_inputs(tmp_path_factory.mktemp("remove-in"))


@pytest.fixture(scope="module")
def base(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base(inputs, tmp_path_factory.mktemp("remove") / "base")


def assert_removed(out: Path, before: Path, gone: set[str]) -> None:
    """``out`` is ``before`` without ``gone``: see the module doc."""
    kept = [s for s in samples(before) if session_of(s) not in gone]
    assert samples(out) == kept  # byte for byte, in order
    left = set(NAMES) - gone
    assert live(out) == left
    index = read_index(Output(str(out)))
    assert index is not None
    assert {s.session for s in index.sessions} == left
    assert index.total_samples == len(kept) == sum(s.samples for s in index.shards)
    assert all(not gone & set(s.sessions) for s in index.shards)
    for name in gone:
        assert not any(name in p for p in files(out)), name
        assert name not in (out / "README.md").read_text()
    assert sorted(p.name for p in (out / "wds").glob("*.tar")) == sorted(
        s.url for s in index.shards
    )
    untouched = {s.url for s in read_index(Output(str(before))).shards}  # type: ignore[union-attr]
    for url in untouched & {s.url for s in index.shards}:
        assert (out / "wds" / url).read_bytes() == (before / "wds" / url).read_bytes()
    checked, problems = verify_dataset(Output(str(out)))
    assert problems == [] and checked == len(left)
    for source in ("zarr", "wds"):
        assert set(SOURCES[source](str(out)).sessions) == left
    stats = read_stats(out)
    assert stats is not None and set(stats.sessions) == left
    assert not (out / REMOVING).exists()
    assert not (out / STAGING).exists() or not any((out / STAGING).iterdir())


def test_remove_rewrites_only_the_shards_that_held_the_session(base: Path, tmp_path: Path) -> None:
    out = copy(base, tmp_path / "out")
    before = {e.key: e for e in read_catalog(Output(str(out))) if e.session == GONE}
    result = remove_sessions(Output(str(out)), [GONE], reason="a player asked")
    assert result.sessions == (GONE,) and result.frames == FRAMES[1]
    old = read_index(Output(str(base)))
    assert old is not None
    held = [s for s in old.shards if GONE in s.sessions]
    assert result.shards_rewritten == len(held)
    assert len([s for s in held if len(s.sessions) > 1]) == 2  # shared with both neighbours
    assert_removed(out, base, {GONE})
    rows = [e for e in read_catalog(Output(str(out))) if e.session == GONE]
    assert len(rows) == 1
    row = rows[0]
    assert row.status is Status.REMOVED and not row.status.is_live and row.outputs == ()
    assert row.reason == "a player asked" and row.converted_at is not None
    assert dict(row.hashes) == dict(before[row.key].hashes)  # the source sha256s kept


def test_a_shard_that_changed_is_refused_before_anything_changes(
    base: Path, tmp_path: Path
) -> None:
    out = copy(base, tmp_path / "out")
    index = read_index(Output(str(out)))
    assert index is not None
    shard = next(s for s in index.shards if GONE in s.sessions and len(s.sessions) > 1)
    tar = out / "wds" / shard.url
    data = bytearray(tar.read_bytes())
    data[-30_000] ^= 1  # a byte of a sample's picture near the end: the tar still parses
    tar.write_bytes(bytes(data))
    before = files(out)
    catalog = (out / "catalog.parquet").read_bytes()
    with pytest.raises(OutputError, match="not written by reacture-convert"):
        remove_sessions(Output(str(out)), [GONE], reason="r")
    assert files(out) == before and (out / "catalog.parquet").read_bytes() == catalog
    assert not (out / REMOVING).exists()


def test_a_reconvert_keeps_it_out_and_readmit_brings_it_back(
    base: Path, inputs: list[Path], tmp_path: Path
) -> None:
    out = copy(base, tmp_path / "out")
    result = remove_sessions(Output(str(out)), where="blank_frames = n_frames", reason="black")
    assert result.sessions == (BLACK,)
    assert_removed(out, base, {BLACK})
    removed = files(out)
    code, text = invoke("convert", *inputs, "--out", out, *OPTS, "--append", "--json")
    assert code == 0, text
    summary = json.loads(text)
    assert summary["counts"] == {"removed": 1, "skipped": 3}
    assert [s["reason"] for s in summary["sessions"] if s["status"] == "removed"] == ["black"]
    assert files(out) == removed  # it stays out, and nothing else changed
    code, text = invoke("convert", *inputs, "--out", out, *OPTS, "--readmit", BLACK, "--append")
    assert code == 0, text
    assert live(out) == set(NAMES)
    assert verify_dataset(Output(str(out))) == (len(NAMES), [])
    back = [s for s in samples(out) if session_of(s) == BLACK]
    assert back == [s for s in samples(base) if session_of(s) == BLACK]


def test_a_watcher_keeps_it_out(base: Path, inputs: list[Path], tmp_path: Path) -> None:
    out = copy(base, tmp_path / "out")
    remove_sessions(Output(str(out)), [GONE], reason="a player asked")
    removed = files(out)
    incoming = inputs[0].parent
    code, text = invoke(
        "watch", incoming, "--out", out, "--once", "--settle", "0", "--format", "zarr,wds",
        "--scheduler", "sync", "--json",
    )  # fmt: skip
    assert code == 0, text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [e["session"] for e in events if e.get("event") == "removed"] == [GONE], text
    assert files(out) == removed


# --- kills --------------------------------------------------------------------------------------


def start_paused(phase: str, args: list[str], marker: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """``args`` in a process group of its own that stops itself at ``phase``."""
    environ = {
        **os.environ,
        **(env or {}),
        "REACTURE_PAUSE_AT": phase,
        "REACTURE_PHASE_FILE": str(marker),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    return subprocess.Popen(
        [*CLI, *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill_when_paused(proc: subprocess.Popen[bytes], phase: str, marker: Path) -> None:
    """SIGKILL the process group once it has said that it reached ``phase``."""
    deadline = time.monotonic() + 120
    try:
        while not marker.exists() or not marker.read_text().endswith("\n"):
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, f"{phase} was never reached"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert marker.read_text().startswith(phase)


def kill_at(phase: str, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> None:
    marker = tmp / f"reached-{phase}"
    kill_when_paused(start_paused(phase, args, marker, env), phase, marker)


@pytest.fixture(scope="module")
def clean(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset after a removal nobody killed."""
    out = copy(base, tmp_path_factory.mktemp("remove-clean") / "out")
    remove_sessions(Output(str(out)), [GONE], reason="r")
    return out


@pytest.fixture(scope="module")
def killed(base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy of ``base`` per phase (and one more at ``remove-delete``, for a convert), with a
    removal of GONE killed there: the processes run at once (their start dominates)."""
    root = tmp_path_factory.mktemp("remove-killed")
    cases = {phase: phase for phase in PHASES} | {
        "convert-after": "remove-delete",
        "repair-after": "remove-index",
    }
    started = {}
    for case, phase in cases.items():
        out = copy(base, root / case / "out")
        marker = root / case / "reached"
        args = ["remove", str(out), GONE, "--reason", "r", "--yes"]
        started[case] = (start_paused(phase, args, marker), phase, marker, out)
    for proc, phase, marker, _ in started.values():
        kill_when_paused(proc, phase, marker)
    return {case: out for case, (_, _, _, out) in started.items()}


@pytest.mark.parametrize("phase", PHASES)
def test_a_kill_at_each_phase_leaves_old_or_new_and_the_next_command_completes(
    base: Path, clean: Path, killed: dict[str, Path], phase: str
) -> None:
    out = killed[phase]
    committed = PHASES.index(phase) > PHASES.index("remove-commit")
    if committed:  # the catalog is the new one; the next holder of the lock finishes
        assert live(out) == set(NAMES) - {GONE}
        assert (out / REMOVING).exists()
    else:  # the old dataset, as every reader sees it
        assert live(out) == set(NAMES)
        assert (out / "catalog.parquet").read_bytes() == (base / "catalog.parquet").read_bytes()
        assert (out / "wds/index.json").read_bytes() == (base / "wds/index.json").read_bytes()
        assert samples(out) == samples(base)
        for d in ("zarr", "rows", "frames"):
            assert {k: v for k, v in files(out).items() if k.startswith(d)} == {
                k: v for k, v in files(base).items() if k.startswith(d)
            }
        assert verify_dataset(Output(str(out))) == (len(NAMES), [])
    # the next command: the same removal again (already done or not, it ends the same)
    code, text = invoke("remove", out, GONE, "--reason", "r", "--yes", "--json")
    assert code == 0, text
    marked = PHASES.index(phase) > PHASES.index("remove-mark")  # the note was written
    assert (json.loads(text)["settled"] is not None) is marked
    assert files(out) == files(clean)
    assert_removed(out, base, {GONE})


def test_a_convert_after_a_kill_completes_the_removal(
    base: Path, clean: Path, inputs: list[Path], killed: dict[str, Path]
) -> None:
    out = killed["convert-after"]
    code, text = invoke("convert", *inputs, "--out", out, *OPTS, "--append")
    assert code == 0, text
    assert files(out) == files(clean)
    assert_removed(out, base, {GONE})


def test_repair_after_a_kill_does_not_bring_the_session_back(
    base: Path, clean: Path, killed: dict[str, Path]
) -> None:
    out = killed["repair-after"]
    code, text = invoke("repair", out)  # the catalog reads: GONE's removed row says it goes
    assert code == 0 and "cut short" in text, text
    assert live(out) == set(NAMES) - {GONE}
    (out / "catalog.parquet").unlink()  # lost: the note of the removal says it goes
    code, text = invoke("repair", out)
    assert code == 0 and "cut short" in text, text
    assert live(out) == set(NAMES) - {GONE}
    code, text = invoke("remove", out, GONE, "--reason", "r", "--yes")
    assert code == 0, text
    assert live(out) == set(NAMES) - {GONE} and not any(GONE in p for p in files(out))


# --- the local S3 server ------------------------------------------------------------------------


def test_remove_on_the_bucket_survives_a_kill(moto_s3: S3, base: Path, tmp_path: Path) -> None:
    """The dataset uploaded as it is (converting on the server is the slow part, and tested by
    test_s3), then a removal killed after its commit and completed by the next command."""
    url = "s3://datasets/remove"
    opts = moto_s3.cli_options
    moto_s3.fs.put(str(base), url, recursive=True)
    moto_s3.fs.rm(f"{url}/stats.json")  # (stats follow a removal: tested on the local disk)
    output = Output(url, moto_s3.options)
    env = {"REACTURE_LEASE_SECONDS": "1"}  # the killed process's lease: taken over after 1 s
    kill_at("remove-index", ["remove", url, GONE, "--reason", "r", "--yes", *opts], tmp_path, env)
    assert live(url, moto_s3.options) == set(NAMES) - {GONE}
    code, text = invoke("remove", url, GONE, "--reason", "r", "--yes", "--json", "--wait", *opts)
    assert code == 0 and json.loads(text)["settled"]["rolled"] == "forward", text
    moto_s3.fs.invalidate_cache()
    after = tmp_path / "after"
    moto_s3.fs.get(url, str(after), recursive=True)
    assert samples(after) == [s for s in samples(base) if session_of(s) != GONE]
    assert not any(GONE in p for p in files(after))
    assert {p.name for p in (after / "wds").glob("*.tar")} == {
        s.url
        for s in read_index(output).shards  # type: ignore[union-attr]
    }
    assert verify_dataset(output) == (len(NAMES) - 1, [])
