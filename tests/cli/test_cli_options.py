"""One meaning per option value: the command line and job files parse through ``run.options``.

A bad size or duration says the same thing on the command line (a usage error, exit 2) and in
a job file (a bad job file, exit 3); the same values given as flags or as job-file keys write
the same dataset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reacture_convert.cli import cli
from reacture_convert.errors import ConfigError
from reacture_convert.run.options import parse_duration, parse_size
from tests.helpers.paths import SAMPLE_DIR

# (as written, what the message says)
BAD_SIZES = [
    ("0", "at least 1 byte"),
    ("0.5", "at least 1 byte"),
    ("-5MB", "at least 1 byte"),
    ("256 potatoes", "is not a size like 256MiB, 500MB or 1000000"),
    ("5k", "is not a size"),
    ("MiB", "is not a size"),
    ("inf", "is not a size"),
    ("", "is not a size"),
]
BAD_DURATIONS = [
    ("-1s", "is not a duration like 5s, 500ms, 10m or 1h"),
    ("1d", "is not a duration"),
    ("5 sec", "is not a duration"),
    ("s", "is not a duration"),
    ("five", "is not a duration"),
    ("", "is not a duration"),
]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def run_job(tmp_path: Path, text: str) -> tuple[Path, Result]:
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\ninputs = ["{tmp_path}"]\nout = "{tmp_path / "out"}"\n{text}')
    return job, invoke("run", str(job))


def config_error(parse: object, value: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(value)  # type: ignore[operator]
    return str(info.value)


@pytest.mark.parametrize("value, message", BAD_SIZES, ids=[v or "empty" for v, _ in BAD_SIZES])
def test_a_bad_size_is_the_same_error_on_the_command_line_and_in_a_job_file(
    tmp_path: Path, value: str, message: str
) -> None:
    error = config_error(parse_size, value)
    assert message in error
    flag = invoke("convert", str(tmp_path), "--out", str(tmp_path / "out"), "--shard-size", value)
    assert flag.exit_code == 2, flag.output
    assert f"Invalid value for '--shard-size': {error}" in flag.output
    job, from_file = run_job(tmp_path, f'[wds]\nshard_size = "{value}"\n')
    assert from_file.exit_code == 3, from_file.output
    assert f"Error: {job}: [wds] shard_size: {error}" in from_file.stderr


@pytest.mark.parametrize(
    "value, message", BAD_DURATIONS, ids=[v or "empty" for v, _ in BAD_DURATIONS]
)
@pytest.mark.parametrize("key", ["settle", "poll", "incomplete_timeout"])
def test_a_bad_duration_is_the_same_error_on_the_command_line_and_in_a_job_file(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    error = config_error(parse_duration, value)
    assert message in error
    option = "--" + key.replace("_", "-")
    flag = invoke("watch", str(tmp_path), "--out", str(tmp_path / "out"), option, value)
    assert flag.exit_code == 2, flag.output
    assert f"Invalid value for '{option}': {error}" in flag.output
    job, from_file = run_job(tmp_path, f'watch = true\n{key} = "{value}"\n')
    assert from_file.exit_code == 3, from_file.output
    assert f"Error: {job}: [job] {key}: {error}" in from_file.stderr


def test_a_zero_poll_is_refused_by_both(tmp_path: Path) -> None:
    flag = invoke("watch", str(tmp_path), "--out", str(tmp_path / "out"), "--poll", "0s")
    assert flag.exit_code == 2 and "poll must be more than 0 seconds" in flag.output
    _, from_file = run_job(tmp_path, 'watch = true\npoll = "0s"\n')
    assert from_file.exit_code == 3 and "poll must be more than 0 seconds" in from_file.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("convert", "IN", "--out", "OUT", "--format", "zarr,hdf5"),
        ("run", "JOB", "--format", "hdf5"),
    ],
    ids=["convert", "run"],
)
def test_an_unknown_format_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[job]\ninputs = ["in"]\nout = "out"\n')
    subst = {"IN": str(tmp_path), "OUT": str(tmp_path / "out"), "JOB": str(job)}
    result = invoke(*(subst.get(a, a) for a in args))
    assert result.exit_code == 2, result.output
    assert (
        "Invalid value for '--format': unknown output format 'hdf5'; choose one or more of "
        "zarr (Zarr + rows + alignment table), wds (WebDataset shards)" in result.output
    )


@pytest.mark.parametrize(
    "command", ["validate", "convert", "watch", "verify", "stats", "show", "run"]
)
def test_a_bad_storage_option_is_a_usage_error_for_every_command(
    tmp_path: Path, command: str
) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[job]\ninputs = ["in"]\nout = "out"\n')
    args = {
        "convert": [str(tmp_path), "--out", str(tmp_path / "out")],
        "watch": [str(tmp_path), "--out", str(tmp_path / "out")],
        "show": [str(tmp_path), "--html", str(tmp_path / "report")],
        "run": [str(job)],
    }.get(command, [str(tmp_path)])
    result = invoke(command, *args, "--storage-option", "anon")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--storage-option': 'anon': expected KEY=VALUE" in result.output


def test_flags_and_job_file_keys_write_the_same_dataset(tmp_path: Path) -> None:
    flags = [
        "--format",
        "zarr,wds",
        "--chunk-frames",
        "16",
        "--shard-frames",
        "32",
        "--codec",
        "lz4",
        "--shard-size",
        "1MB",
        "--shuffle",
        "7",
        "--frame-encoding",
        "png",
        "--scheduler",
        "sync",
        "-q",
    ]
    by_flags = tmp_path / "flags"
    result = invoke("convert", str(SAMPLE_DIR), "--out", str(by_flags), *flags)
    assert result.exit_code == 0, result.output
    job = tmp_path / "job.toml"
    by_file = tmp_path / "file"
    job.write_text(f"""
[job]
inputs = ["{SAMPLE_DIR}"]
out = "{by_file}"
formats = ["zarr", "wds"]
scheduler = "sync"

[zarr]
chunk_frames = 16
shard_frames = 32
codec = "lz4"

[wds]
shard_size = "1MB"
shuffle = 7
encoding = "png"
""")
    result = invoke("run", str(job), "-q")
    assert result.exit_code == 0, result.output
    files = {
        p.relative_to(by_flags)
        for p in by_flags.rglob("*")
        if p.is_file() and p.parts[len(by_flags.parts)] in ("zarr", "rows", "frames", "wds")
    }
    assert any(f.parts[0] == "wds" and f.suffix == ".tar" for f in files)
    assert files == {
        p.relative_to(by_file)
        for p in by_file.rglob("*")
        if p.is_file() and p.parts[len(by_file.parts)] in ("zarr", "rows", "frames", "wds")
    }
    assert [
        f for f in sorted(files) if (by_flags / f).read_bytes() != (by_file / f).read_bytes()
    ] == []
