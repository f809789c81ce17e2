"""What the commands say and how they exit at the edges: no bundle, a missing path, a dataset
with shards only, a watcher with nothing to do (README "Exit codes")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from reacture_convert.cli import cli
from tests.helpers.paths import REPO, SAMPLE_DIR

CLI = [sys.executable, "-m", "reacture_convert"]


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_no_bundle_found_exits_1_for_validate_and_convert(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["validate", empty], ["convert", empty, "--out", tmp_path / "out"]):
        code, text = invoke(*args)
        assert code == 1, text
        assert "no bundle found" in text
    assert not (tmp_path / "out").exists()


def test_a_dataset_with_shards_only_says_what_it_checked_and_what_it_lacks(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert invoke("convert", SAMPLE_DIR, "--out", out, "--format", "wds", "-q")[0] == 0
    code, text = invoke("verify", out)
    assert code == 0 and "0 session(s) and 1 shard(s) of 92 samples checked" in text, text
    code, text = invoke("stats", out)
    assert code == 3, text
    assert "WebDataset shards only" in text and "--format zarr" in text


def test_show_has_json(tmp_path: Path) -> None:
    code, text = invoke("show", SAMPLE_DIR, "--html", tmp_path / "report", "--json")
    assert code == 0, text
    doc = json.loads(text)
    assert doc["index"] == str(tmp_path / "report" / "index.html")
    assert [p["session"] for p in doc["pages"]] == [SAMPLE_DIR.name]
    assert all(Path(f).is_file() for f in doc["files"])


def test_every_command_takes_json() -> None:
    """The README promises --json on every command."""
    for name, command in cli.commands.items():  # type: ignore[attr-defined]
        assert "as_json" in {p.name for p in command.params}, name


def watch_once(*args: str | Path) -> tuple[int, list[dict[str, object]]]:
    proc = subprocess.run(
        [*CLI, "watch", *map(str, args), "--once", "--json", "--settle", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_watch_once_on_a_missing_path_exits_1_like_convert(tmp_path: Path) -> None:
    """A missing input is refused before OUT is touched (no folder, lock or card)."""
    code, events = watch_once(tmp_path / "nope", "--out", tmp_path / "w")
    assert code == 1
    assert [e["error"]["kind"] for e in events] == ["not_found"]
    assert not (tmp_path / "w").exists()


def test_watch_once_says_what_is_still_incomplete(tmp_path: Path) -> None:
    upload = tmp_path / "in" / "r"
    upload.mkdir(parents=True)
    for f in SAMPLE_DIR.glob("*_metadata.json"):
        (upload / f.name).write_bytes(f.read_bytes())
    code, events = watch_once(tmp_path / "in", "--out", tmp_path / "w")
    assert code == 0  # an upload in progress is not an error (yet)
    (stopped,) = [e for e in events if e["event"] == "stopped"]
    assert stopped["waiting"] == 1
    result = subprocess.run(
        [*CLI, "watch", str(tmp_path / "in"), "--out", str(tmp_path / "w"), "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert "1 upload(s) still incomplete" in result.stdout, result.stdout


def test_watch_started_event_tells_workers_from_sessions_in_flight(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    code, events = watch_once(
        tmp_path / "in", "--out", tmp_path / "w", "--scheduler", "threads", "--workers", "2"
    )
    assert code == 0
    (started,) = [e for e in events if e["event"] == "started"]
    assert started["workers"] == 2  # threads that run sessions
    assert started["in_flight"] == 2  # at most --workers sessions at once
    assert "2 threads" in str(started["scheduler"])
