"""Job files: every shipped pipeline loads, bad ones say what is wrong, the CLI overrides them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.errors import ConfigError
from reacture_convert.run.jobs import Job, load_job
from tests.helpers.paths import REPO, SAMPLE_DIR

PIPELINES = sorted((REPO / "pipelines").glob("*.toml"))

GOOD = """
[job]
inputs = ["in"]
out = "out"
"""


def write_job(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_pipelines_folder_is_not_empty() -> None:
    assert {p.name for p in PIPELINES} >= {"default.toml", "archive.toml", "cloud-training.toml"}


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_every_shipped_pipeline_loads(path: Path) -> None:
    job = load_job(path)
    assert isinstance(job, Job) and job.name == path.stem
    assert job.inputs and job.out and job.options.formats
    assert job.description  # each example says what it is for


def test_default_pipeline_is_the_documented_one() -> None:
    job = load_job(REPO / "pipelines" / "default.toml")
    assert (job.inputs, job.out, job.scheduler) == (("data/incoming",), "data/converted", "auto")
    assert job.options.formats == ("zarr",) and job.on_error == "continue"


def test_example_pipelines_cover_cloud_training_and_archive() -> None:
    cloud = load_job(REPO / "pipelines" / "cloud-training.toml")
    assert cloud.options.formats == ("wds",) and cloud.out.startswith("s3://")
    assert cloud.options.wds.shard_size == 256 * 2**20
    assert cloud.options.wds.shuffle_seed is not None
    archive = load_job(REPO / "pipelines" / "archive.toml")
    assert archive.options.formats == ("zarr",) and archive.options.zarr.shard_frames


BAD_JOBS = [
    ("unknown-table", GOOD + "[zar]\nchunk_frames = 64\n", "unknown table(s) zar"),
    ("unknown-key", GOOD + "workerz = 4\n", "unknown key(s) workerz in [job]"),
    ("unknown-zarr-key", GOOD + "[zarr]\nchunk = 64\n", "unknown key(s) chunk in [zarr]"),
    ("table-not-table", "job = 3\n", "[job] must be a table"),
    (
        "bad-format",
        GOOD + 'formats = ["zarr", "hdf5"]\n',
        "[job] formats: unknown output format 'hdf5'",
    ),
    ("empty-formats", GOOD + "formats = []\n", "[job] formats: no output format"),
    ("formats-not-list", GOOD + "formats = 3\n", "formats must be names like"),
    ("bad-on-error", GOOD + 'on_error = "ignore"\n', "on_error must be one of continue, stop"),
    ("missing-inputs", '[job]\nout = "out"\n', "inputs is empty"),
    ("empty-inputs", '[job]\ninputs = []\nout = "out"\n', "inputs is empty"),
    ("inputs-not-strings", '[job]\ninputs = [1, 2]\nout = "out"\n', "inputs must be a list"),
    ("inputs-not-list", '[job]\ninputs = 3\nout = "out"\n', "inputs must be a list"),
    ("missing-out", '[job]\ninputs = ["in"]\n', "out is missing"),
    (
        "bad-size",
        GOOD + '[wds]\nshard_size = "256 potatoes"\n',
        "'256 potatoes' is not a size like 256MiB",
    ),
    ("size-not-number", GOOD + "[wds]\nshard_size = 1.5\n", "1.5 is not a size"),
    ("negative-size", GOOD + '[wds]\nshard_size = "-5MB"\n', "at least 1 byte"),
    ("zero-size", GOOD + "[wds]\nshard_size = 0\n", "[wds] shard_size: 0 is too small"),
    ("bad-codec", GOOD + '[zarr]\ncodec = "gzip"\n', "unknown Zarr codec 'gzip'"),
    (
        "bad-shards",
        GOOD + "[zarr]\nchunk_frames = 64\nshard_frames = 100\n",
        "multiple of --chunk-frames",
    ),
    (
        "chunk-not-int",
        GOOD + '[zarr]\nchunk_frames = "64"\n',
        "[zarr] chunk_frames: must be a whole number, not '64'",
    ),
    ("bad-encoding", GOOD + '[wds]\nencoding = "jpeg"\n', "unknown WebDataset encoding 'jpeg'"),
    ("bad-scheduler", GOOD + 'scheduler = "thread"\n', "unknown scheduler 'thread'"),
    ("bad-workers", GOOD + "workers = 0\n", "workers must be a whole number >= 1"),
    ("workers-not-int", GOOD + 'workers = "four"\n', "workers must be a whole number"),
    ("force-not-bool", GOOD + 'force = "yes"\n', "[job] force: must be true or false"),
    (
        "storage-not-table",
        GOOD + '[storage]\ninput = "anon"\n',
        "[storage.input] must be a table of fsspec options",
    ),
    ("not-toml", "[job\ninputs = \n", "not valid TOML"),
    ("not-utf8", b"\xff\xfe[job]", "not valid TOML"),
]


@pytest.mark.parametrize("text, message", [b[1:] for b in BAD_JOBS], ids=[b[0] for b in BAD_JOBS])
def test_bad_job_file_is_a_config_error_naming_the_problem(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as info:
        load_job(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_job_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such job file"):
        load_job(tmp_path / "nope.toml")


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write_job(
        tmp_path,
        """
[job]
inputs = ["a", "b"]
out = "file-out"
formats = ["zarr"]
scheduler = "processes"
workers = 4
on_error = "continue"

[wds]
shard_size = "1MB"
shuffle = 1

[storage.input]
anon = true
""",
    )
    job = load_job(
        path,
        {
            "inputs": ("x",),
            "out": "cli-out",
            "formats": "wds,zarr",
            "scheduler": "sync",
            "workers": None,
            "on_error": "stop",
            "shuffle": 7,
            "input_options": {"anon": False},
            "force": None,
        },
    )
    assert job.inputs == ("x",) and job.out == "cli-out"
    assert job.options.formats == ("wds", "zarr") and job.scheduler == "sync"
    assert job.workers == 4  # not given on the command line: the file's value
    assert job.on_error == "stop" and job.options.force is False
    assert job.options.wds.shuffle_seed == 7 and job.options.wds.shard_size == 10**6
    assert job.options.input_options == {"anon": False}


def test_a_single_input_string_is_one_input(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path, '[job]\ninputs = "data/incoming"\nout = "o"\n'))
    assert job.inputs == ("data/incoming",)


def test_cli_run_overrides_the_job_file(tmp_path: Path) -> None:
    out = tmp_path / "converted"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(REPO / "pipelines" / "default.toml"),
            "--input",
            str(SAMPLE_DIR),
            "--out",
            str(out),
            "--format",
            "wds",
            "--scheduler",
            "sync",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out"] == str(out)
    assert summary["counts"] == {"converted": 1}
    assert summary["sessions"][0]["source"] == str(SAMPLE_DIR)
    assert (out / "wds" / "index.json").is_file()
    assert not (out / "zarr").exists()  # the file's formats = ["zarr"] was overridden


def test_cli_run_on_error_stop_from_the_job_file(tmp_path: Path) -> None:
    bundles = tmp_path / "in"
    for k in range(3):
        folder = bundles / f"b{k}"
        folder.mkdir(parents=True)
        for f in SAMPLE_DIR.iterdir():
            name = f.name.replace(SAMPLE_DIR.name, f"reacture_17956000003{k:02d}")
            data = f.read_bytes()
            (folder / name).write_bytes(
                data[:-100] if k == 0 and name.endswith("frames.npy") else data
            )
    job = write_job(
        tmp_path,
        f"""
[job]
inputs = ["{bundles}"]
out = "{tmp_path / "out"}"
scheduler = "sync"
on_error = "stop"
""",
    )
    result = CliRunner().invoke(cli, ["run", str(job), "--json"], catch_exceptions=False)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"rejected": 1}
    assert summary["stopped"] == "on_error=stop: 2 bundle(s) not started"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + 'on_error = "ignore"\n', "on_error must be one of"),
        ("[job\n", "not valid TOML"),
    ],
    ids=["bad-value", "not-toml"],
)
def test_cli_run_with_a_bad_job_file_exits_3_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_job(tmp_path, text, "broken-job.toml")
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 3
    assert f"Error: {path}: " in result.stderr
    assert message in result.stderr
