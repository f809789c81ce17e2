"""The ``validate`` command: what it prints, its JSON, its exit codes."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from reacture_convert.cli import cli
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.validate import validate_bundle
from tests.helpers.real import REAL

MakeBundle = Callable[..., Path]
REAL_PREFIXES = ["reacture_1795637238001", "reacture_1795637693305", "reacture_1795637148842"]
FINDING_KEYS = {"severity", "code", "file", "line", "frame", "message"}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def sections(output: str) -> dict[str, tuple[str, list[str]]]:
    """Bundle prefix -> (its line, the indented finding lines under it)."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith((" ", "\t")):
            if current is not None:
                current.append(line.strip())
            continue
        current = None
        words = line.split()
        if len(words) >= 2 and words[0] in ("valid", "INVALID"):
            current = []
            out[words[1]] = (line, current)
    return out


def library_codes(path: Path) -> dict[str, list[str]]:
    return {
        b.prefix: sorted(f.code for f in validate_bundle(b).findings)
        for b in discover([str(path)]).bundles
    }


def three_bundles(make_bundle: MakeBundle, broken: int | None = None) -> Path:
    """A folder of three synthetic bundles; the ``broken`` one has a truncated frames.npy."""
    for i in range(3):
        prefix = f"reacture_179560000000{i}"
        folder = make_bundle(name=f"s{i}", prefix=prefix, seed=i)
        if i == broken:
            frames = folder / f"{prefix}_frames.npy"
            frames.write_bytes(frames.read_bytes()[:-1])
    return folder.parent


def test_real_fixtures_are_valid_one_line_per_bundle_then_its_findings() -> None:
    result = run("validate", str(REAL))
    assert result.exit_code == 0, result.output
    found = sections(result.stdout)
    assert sorted(found) == sorted(REAL_PREFIXES)
    want = library_codes(REAL)
    for prefix, (head, lines) in found.items():
        assert head.startswith("valid") and "INVALID" not in head
        assert sorted(line.split()[1] for line in lines) == want[prefix]
    first = found["reacture_1795637693305"][0]
    assert "279 frames" in first and "416 rows" in first
    assert any(
        line.startswith("warning TS_GAP") and "[frame 123]" in line
        for line in found["reacture_1795637693305"][1]
    )
    assert "3 bundle(s): 3 valid, 0 invalid" in result.stdout


def test_json_has_every_bundle_and_located_findings() -> None:
    result = run("validate", "--json", str(REAL))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert sorted(b["prefix"] for b in doc["bundles"]) == sorted(REAL_PREFIXES)
    want = library_codes(REAL)
    for b in doc["bundles"]:
        assert b["valid"] is True
        assert b["findings"], b["prefix"]
        assert all(set(f) == FINDING_KEYS for f in b["findings"])
        assert all(f["severity"] in ("error", "warning", "info") for f in b["findings"])
        assert sorted(f["code"] for f in b["findings"]) == want[b["prefix"]]
    by_prefix = {b["prefix"]: b for b in doc["bundles"]}
    pause = [
        f
        for f in by_prefix["reacture_1795637693305"]["findings"]
        if f["code"] == "TS_GAP" and f["frame"] == 123
    ]
    assert pause and pause[0]["file"] == "reacture_1795637693305_timestamps.npy"
    order = [
        f
        for f in by_prefix["reacture_1795637693305"]["findings"]
        if f["code"] == "ROWS_NOT_TIME_ORDERED"
    ]
    assert [(f["line"], f["frame"]) for f in order] == [(2, None)]
    assert by_prefix["reacture_1795637693305"]["n_frames"] == 279


def test_one_broken_bundle_exits_1_and_names_the_code(make_bundle: MakeBundle) -> None:
    result = run("validate", str(three_bundles(make_bundle, broken=1)))
    assert result.exit_code == 1, result.output
    found = sections(result.stdout)
    assert [found[f"reacture_179560000000{i}"][0].split()[0] for i in range(3)] == [
        "valid",
        "INVALID",
        "valid",
    ]
    assert any(
        line.startswith("error") and "NPY_TRUNCATED" in line
        for line in found["reacture_1795600000001"][1]
    )
    assert "3 bundle(s): 2 valid, 1 invalid" in result.stdout


def test_json_of_a_broken_bundle(make_bundle: MakeBundle) -> None:
    result = run("validate", "--json", str(three_bundles(make_bundle, broken=0)))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [b["valid"] for b in doc["bundles"]] == [False, True, True]
    errors = [f for f in doc["bundles"][0]["findings"] if f["severity"] == "error"]
    assert [(f["code"], f["file"]) for f in errors] == [
        ("NPY_TRUNCATED", "reacture_1795600000000_frames.npy")
    ]


def test_valid_synthetic_folder_exits_0(make_bundle: MakeBundle) -> None:
    result = run("validate", str(three_bundles(make_bundle)))
    assert result.exit_code == 0, result.output
    assert "3 bundle(s): 3 valid, 0 invalid" in result.stdout


def test_no_argument_is_a_usage_error() -> None:
    result = run("validate")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_missing_path_exits_1_with_input_not_found(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "INPUT_NOT_FOUND" in result.output and "nowhere" in result.output


def test_empty_folder_exits_1_and_says_no_bundle(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1
    assert "no bundle found" in result.output


def test_refused_archive_member_fails_the_run_but_the_bundle_is_valid(
    make_bundle: MakeBundle, tmp_path: Path
) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(make_bundle().iterdir()):
            zf.write(p, "inner/" + p.name)
        zf.writestr(zipfile.ZipInfo("../evil"), b"boom")
    result = run("validate", str(archive))
    assert result.exit_code == 1
    assert sections(result.stdout)["reacture_1795600000000"][0].startswith("valid")
    assert "ARCHIVE_UNSAFE_PATH" in result.stdout and "../evil" in result.stdout
    doc = json.loads(run("validate", "--json", str(archive)).stdout)
    assert [b["valid"] for b in doc["bundles"]] == [True]
    assert [f["code"] for f in doc["findings"]] == ["ARCHIVE_UNSAFE_PATH"]


def test_corrupt_archive_member_is_reported_not_a_traceback(
    make_bundle: MakeBundle, tmp_path: Path
) -> None:
    good = three_bundles(make_bundle)
    archive = tmp_path / "upload.zip"
    prefix = "reacture_1795600000009"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(make_bundle(name="z", prefix=prefix).iterdir()):
            zf.write(p, p.name)
    member = f"{prefix}_frames.npy"
    with zipfile.ZipFile(archive) as zf:
        offset = zf.getinfo(member).header_offset + 30 + len(member) + 4096
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = run("validate", str(good / "s0"), str(archive), str(good / "s2"))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # an exit code, not a crash
    found = sections(result.stdout)
    assert [
        found[p][0].split()[0] for p in ("reacture_1795600000000", prefix, "reacture_1795600000002")
    ] == ["valid", "INVALID", "valid"]
    assert any("ARCHIVE_UNREADABLE" in line for line in found[prefix][1])
