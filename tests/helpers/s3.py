"""A local S3-compatible server: moto's server mode in its own process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import s3fs


@dataclass(frozen=True)
class S3:
    """moto's server: its endpoint, and an s3fs filesystem talking to it."""

    endpoint: str
    fs: s3fs.S3FileSystem
    pid: int = 0  # the server's process

    @property
    def options(self) -> dict[str, Any]:
        return {"client_kwargs": {"endpoint_url": self.endpoint}}

    @property
    def cli_options(self) -> list[str]:
        return ["--storage-option", f"client_kwargs.endpoint_url={self.endpoint}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"moto_server did not start:\n{tail}") from None
            time.sleep(0.05)


@contextmanager
def moto_server(tmp: Path) -> Iterator[S3]:
    """moto's server on a free port (logging into ``tmp``), fake credentials in the environment
    (inherited by Dask's worker processes), buckets ``raw`` and ``datasets``."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        _wait_http(f"{endpoint}/moto-api/", proc, log)
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_EC2_METADATA_DISABLED", "true")
            fs = s3fs.S3FileSystem(
                client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True
            )
            fs.mkdir("raw")
            fs.mkdir("datasets")
            yield S3(endpoint, fs, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
