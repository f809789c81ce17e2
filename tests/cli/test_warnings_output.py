"""What ``convert`` and ``validate`` say of findings in text: each kind of warning once per
converted session, in words; a finding once, never twice; a bundle file given on its own named
for what it is and judged with its bundle."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from reacture_convert.cli import cli
from reacture_convert.ingest.discover import discover
from tests.helpers.paths import SAMPLE_DIR

PREFIX = SAMPLE_DIR.name


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def session_lines(output: str) -> list[str]:
    """The indented lines under the first session's line."""
    lines = output.splitlines()
    body = []
    for line in lines[1:]:
        if not line.startswith(" "):
            break
        body.append(line.strip())
    return body


def test_convert_says_the_samples_frames_are_all_blank(tmp_path: Path) -> None:
    result = run("convert", str(SAMPLE_DIR), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"converted {PREFIX}  (92 frames)")
    warnings = session_lines(result.output)
    codes = [line.split()[1] for line in warnings]
    assert sorted(codes) == ["FRAMES_BLANK", "TS_CADENCE", "TS_GAP"]  # warnings; not the infos
    blank = next(line for line in warnings if "FRAMES_BLANK" in line)
    assert "all 92 frames are blank" in blank


def test_each_kind_of_warning_is_said_once_per_session(
    tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    """Four pauses: four TS_GAP findings in the catalog, one line in the summary."""
    make_bundle("b", n_frames=40, pauses=((8, 3000), (16, 3000), (24, 3000), (32, 3000)))
    result = run("convert", str(tmp_path / "bundles"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    gaps = [line for line in session_lines(result.output) if " TS_GAP " in f" {line} "]
    assert len(gaps) == 1 and gaps[0].endswith("(and 3 more like it)"), result.output
    assert "between frames 7 and 8" in gaps[0]


def test_a_fake_zip_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.zip").write_text("not a zip at all\n")
    result = run("convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output.count("File is not a zip file") == 1, result.output
    validated = run("validate", str(tmp_path / "in"))
    assert validated.output.count("File is not a zip file") == 1, validated.output


def test_validating_one_file_of_a_bundle_judges_its_bundle(tmp_path: Path) -> None:
    frames = SAMPLE_DIR / f"{PREFIX}_frames.npy"
    result = run("validate", str(frames))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        f"{frames} is the frames.npy of bundle {PREFIX!r}; validated with the 4 other file(s)"
    )
    assert "BUNDLE_MISSING_FILE" not in result.output
    assert f"valid   {PREFIX}  (92 frames, 173 rows)" in result.output
    found = discover([str(frames)])
    assert [len(b.files) for b in found.bundles] == [5] and not found.bundles[0].missing


def test_a_bundle_file_alone_is_said_to_miss_the_others(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_DIR / f"{PREFIX}_frames.npy", tmp_path)
    result = run("validate", str(tmp_path / f"{PREFIX}_frames.npy"))
    assert result.exit_code == 1
    assert "validated with no other file" in result.output
    assert result.output.count("BUNDLE_MISSING_FILE") == 4
