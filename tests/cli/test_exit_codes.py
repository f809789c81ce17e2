"""The one exit-code table, command by command: every error a user can cause (object store
without credentials, a wrong endpoint, a missing bucket, permission denied, a full disk, a
missing path, a bad option, an unknown session) ends in at most two lines on stderr, no
traceback, one JSON error document on stdout with ``--json``, and the table's exit code.

Each case runs the real command in a subprocess; the object-store cases talk to the local moto
server (``moto_s3``): without credentials (the AWS variables cleared), on a closed port, or
naming a bucket that does not exist.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reacture_convert.output.storage import Output
from reacture_convert.run.batch import run_convert
from tests.helpers.faults import small_tmpfs, unprivileged
from tests.helpers.s3 import S3

SAMPLE = Path(__file__).resolve().parents[2] / "sample"


@dataclass(frozen=True)
class Case:
    """One command line (words; ``{name}`` placeholders filled in by the test), how it runs,
    and the exit code and error kind the table gives it."""

    id: str
    args: str
    code: int
    kind: str
    env: str = "s3"  # s3: credentials set; bare: no AWS variables at all
    needs: str = ""  # "unprivileged": permission bits must bind; "tmpfs": a small filesystem
    leaves_nothing: str = ""  # a path (placeholder) that must not exist afterwards


MOTO = "--storage-option client_kwargs.endpoint_url={endpoint}"
# (one attempt: botocore retries a refused connection with back-off, 8-17 s a command, and the
# message is the same)
CLOSED = (
    "--storage-option client_kwargs.endpoint_url=http://127.0.0.1:{closed} "
    "--storage-option config_kwargs.retries.max_attempts=1"
)
BARE, UNPRIVILEGED, TMPFS = "bare", "unprivileged", "tmpfs"

CASES = [
    # --- object store: no credentials -------------------------------------------------------
    Case("validate-no-credentials", f"validate s3://raw/incoming/ {MOTO}", 3, "no_credentials",
         BARE),
    Case("convert-no-credentials", f"convert {{sample}} --out s3://datasets/x {MOTO}", 3,
         "no_credentials", BARE),
    Case("verify-no-credentials", f"verify s3://datasets/x {MOTO}", 3, "no_credentials", BARE),
    Case("watch-no-credentials", f"watch s3://raw/incoming/ --once --out {{tmp}}/w {MOTO}", 3,
         "no_credentials", BARE),
    # --- object store: a wrong endpoint (nothing listens) ------------------------------------
    Case("validate-endpoint", f"validate s3://raw/incoming/ {CLOSED}", 3, "endpoint"),
    Case("convert-endpoint", f"convert {{sample}} --out s3://datasets/x {CLOSED}", 3, "endpoint"),
    Case("stats-endpoint", f"stats s3://datasets/x {CLOSED}", 3, "endpoint"),
    # --- object store: a bucket that does not exist ------------------------------------------
    Case("convert-no-bucket", f"convert {{sample}} --out s3://nosuch-bucket/x {MOTO}", 3,
         "no_bucket"),
    Case("run-no-bucket", f"run {{job}} --out s3://nosuch-bucket/x {MOTO}", 3, "no_bucket"),
    Case("show-no-bucket", f"show s3://nosuch-bucket/x --html {{tmp}}/r {MOTO}", 1, "not_found",
         leaves_nothing="{tmp}/r"),
    # --- permission denied -------------------------------------------------------------------
    Case("convert-read-only-out", "convert {sample} --out {readonly}", 3, "output",
         needs=UNPRIVILEGED),
    Case("stats-read-only-dataset", "stats {readonly}", 3, "permission", needs=UNPRIVILEGED),
    Case("show-read-only-report", "show {ds} --html {readonly}/report", 3, "permission",
         needs=UNPRIVILEGED),
    # --- disk full ---------------------------------------------------------------------------
    Case("stats-disk-full", "stats {full}/ds", 3, "disk_full", needs=TMPFS),
    Case("show-disk-full", "show {ds} --html {full}/report", 3, "disk_full", needs=TMPFS),
    # --- a path that is not there ------------------------------------------------------------
    Case("verify-missing", "verify {tmp}/nope", 1, "not_found"),
    Case("stats-missing", "stats {tmp}/nope", 1, "not_found"),
    Case("show-missing", "show {tmp}/nope --html {tmp}/r", 1, "not_found",
         leaves_nothing="{tmp}/r"),
    Case("watch-missing", "watch {tmp}/nope --once --out {tmp}/w", 1, "not_found",
         leaves_nothing="{tmp}/w"),
    Case("run-missing-job", "run {tmp}/nope.toml", 3, "config"),
    Case("show-unknown-session", "show {ds} nosuchsession --html {tmp}/r", 2, "unknown_name",
         leaves_nothing="{tmp}/r"),
    # --- a bad option ------------------------------------------------------------------------
    Case("validate-bad-option", "validate {sample} --nosuch", 2, "usage"),
    Case("convert-bad-value", "convert {sample} --out {tmp}/o --chunk-frames 0", 2, "usage",
         leaves_nothing="{tmp}/o"),
    Case("run-bad-value", "run {job} --workers 0", 2, "usage"),
    Case("watch-bad-value", "watch {sample} --out {tmp}/w --poll 0s", 2, "usage",
         leaves_nothing="{tmp}/w"),
    Case("verify-bad-option", "verify {ds} --frames", 2, "usage"),
    # --- an OUT a run may not write into (the library's check: the command makes no other) ---
    Case("convert-out-is-a-file", "convert {sample} --out {job}", 2, "usage"),
    Case("watch-out-is-a-file", "watch {sample} --once --out {job}", 2, "usage"),
    Case("run-out-holds-other-files", "run {job} --out {ds}/..", 2, "usage"),
    Case("stats-missing-argument", "stats", 2, "usage"),
    Case("show-missing-option", "show {ds}", 2, "usage"),
]  # fmt: skip


@dataclass(frozen=True)
class Places:
    tmp: Path
    ds: Path  # a converted dataset
    job: Path  # a job file converting the sample


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Places:
    tmp = tmp_path_factory.mktemp("exit-codes")
    ds = tmp / "ds"
    assert run_convert([str(SAMPLE)], Output(str(ds)), scheduler="sync").ok
    job = tmp / "job.toml"
    job.write_text(f'[job]\ninputs = ["{SAMPLE}"]\nout = "{tmp / "job-out"}"\nscheduler = "sync"\n')
    return Places(tmp, ds, job)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once we return: nothing listens there


def _read_only_copy(ds: Path, to: Path) -> Path:
    shutil.copytree(ds, to)
    for folder, _, files in os.walk(to):
        for name in files:
            os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for folder, _, _ in os.walk(to):
        os.chmod(folder, 0o555)
    return to


@pytest.fixture
def full_disk(tmp_path: Path, places: Places) -> Iterator[Path]:
    """A 1 MiB tmpfs holding a converted dataset, then filled to the last byte."""
    with small_tmpfs(tmp_path / "full", "1m") as mount:
        shutil.copytree(places.ds, mount / "ds")
        with open(mount / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
            for _ in range(1 << 12):
                f.write(b"\0" * 4096)
        yield mount


def _env(kind: str, s3: S3, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "COLUMNS": "200",
    }
    env.pop("REACTURE_DEBUG", None)
    if kind == "s3":
        env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        env["AWS_DEFAULT_REGION"] = "us-east-1"
    return env


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_an_error_ends_in_two_lines_json_and_the_tables_code(
    case: Case, moto_s3: S3, places: Places, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fill = {
        "sample": str(SAMPLE),
        "ds": str(places.ds),
        "job": str(places.job),
        "tmp": str(tmp_path),
        "endpoint": moto_s3.endpoint,
        "closed": str(_closed_port()),
    }
    prefix: list[str] = []
    if case.needs == "unprivileged":
        prefix = unprivileged()
        fill["readonly"] = str(_read_only_copy(places.ds, tmp_path / "readonly"))
    if case.needs == "tmpfs":
        fill["full"] = str(request.getfixturevalue("full_disk"))
    args = [a.format(**fill) for a in case.args.split()]
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "reacture_convert", *args, "--json"],
        env=_env(case.env, moto_s3, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert 1 <= len(err) <= 2, proc.stderr
    assert err[0].startswith("Error: "), proc.stderr
    assert proc.returncode == case.code, proc.stderr
    lines = proc.stdout.strip().splitlines()
    doc = json.loads(lines[-1])  # watch prints JSON lines: the error is the last
    assert doc["error"]["code"] == case.code and doc["error"]["kind"] == case.kind, doc
    assert doc["error"]["message"] in proc.stderr
    if case.leaves_nothing:
        assert not Path(case.leaves_nothing.format(**fill)).exists()


def test_debug_shows_the_traceback(places: Places, tmp_path: Path) -> None:
    """``--debug`` (or REACTURE_DEBUG=1) adds the traceback; the code stays the table's."""
    base = [sys.executable, "-m", "reacture_convert"]
    missing = ["stats", str(tmp_path / "nope")]
    by_flag = subprocess.run([*base, "--debug", *missing], capture_output=True, text=True)
    env = os.environ | {"REACTURE_DEBUG": "1"}
    by_env = subprocess.run([*base, *missing], capture_output=True, text=True, env=env)
    for proc in (by_flag, by_env):
        assert proc.returncode == 1 and "Traceback" in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("Error: "), proc.stderr


def test_the_table_is_in_the_help() -> None:
    from click.testing import CliRunner

    from reacture_convert.cli import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for line in ("Exit codes", "no credentials", "disk full", '{"error"', "REACTURE_DEBUG"):
        assert line in result.output, result.output


def _interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt  # what SIGINT raises in the main thread


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("where", ["starting", "running"])
def test_ctrl_c_outside_a_run_ends_in_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str, as_json: bool
) -> None:
    """Ctrl-C while the options are checked (which imports the converter) or inside a command
    without its own handling: one line and exit 130, not click's "Aborted!" and exit 1."""
    from click.testing import CliRunner

    from reacture_convert.cli import cli, common
    from reacture_convert.read import verify

    if where == "starting":
        monkeypatch.setattr(common.FORMATS, "parse", _interrupt)
        args = ["convert", str(tmp_path), "--out", str(tmp_path / "out"), "--format", "zarr"]
    else:
        monkeypatch.setattr(verify, "verify_dataset", _interrupt)
        args = ["verify", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, *(["--json"] if as_json else [])])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted; nothing is lost: run the same command again"
    if as_json:
        assert json.loads(result.stdout)["error"]["kind"] == "interrupted"
    assert not (tmp_path / "out").exists()
