"""Opening a dataset in an object store that cannot be read says what to do: the library's
readers (not only the command line) turn the object-store client's failures into the
project's ``StorageError``s. Against a closed port on 127.0.0.1 and moto's server with no
credentials anywhere."""

from __future__ import annotations

import socket

import pytest

from reacture_convert.errors import CredentialsError, EndpointError
from reacture_convert.read.dataset import open_dataset
from tests.helpers.s3 import S3


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("closed port", EndpointError, "cannot connect to the object store"),
        ("no credentials", CredentialsError, "no credentials found"),
    ],
)
def test_an_object_store_that_cannot_be_read_says_what_to_do(
    moto_s3: S3,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    error: type[Exception],
    message: str,
) -> None:
    endpoint = moto_s3.endpoint
    if case == "closed port":
        with socket.socket() as s:  # a port that was free: nothing listens there
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    else:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    options = {
        "client_kwargs": {"endpoint_url": endpoint},
        "config_kwargs": {"retries": {"max_attempts": 1}},
        "skip_instance_cache": True,
    }
    with pytest.raises(error, match=message):
        open_dataset("s3://datasets/anything", storage_options=options)
