"""``storage_error``: what a filesystem or object-store client raises becomes an error of the
hierarchy whose message names the path and says what to do (botocore's own exception classes,
as s3fs raises them)."""

from __future__ import annotations

import errno

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from reacture_convert.errors import (
    AccessDeniedError,
    BucketNotFoundError,
    CredentialsError,
    DiskFullError,
    EndpointError,
    InputError,
    StorageError,
    storage_error,
    storage_errors,
)


def _s3fs_style(translated: OSError, code: str) -> OSError:
    """An OSError raised from a botocore ClientError, as s3fs translates them."""
    try:
        try:
            raise ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")
        except ClientError as e:
            raise translated from e
    except OSError as e:
        return e


NO_BUCKET = FileNotFoundError(errno.ENOENT, "The specified bucket does not exist")
CASES = [
    (NoCredentialsError(), CredentialsError, ("AWS_ACCESS_KEY_ID", "--storage-option key=")),
    (
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b"),
        EndpointError,
        ("http://127.0.0.1:1/b", "endpoint_url"),
    ),
    (_s3fs_style(NO_BUCKET, "NoSuchBucket"), BucketNotFoundError, ("create it",)),
    (
        _s3fs_style(PermissionError(errno.EACCES, "Access Denied"), "AccessDenied"),
        AccessDeniedError,
        ("credentials' access",),
    ),  # fmt: skip
    (PermissionError(errno.EACCES, "Permission denied"), AccessDeniedError, ("permissions",)),
    (OSError(errno.EROFS, "Read-only file system"), AccessDeniedError, ("read-only",)),
    (OSError(errno.ENOSPC, "No space left on device"), DiskFullError, ("free some space",)),
]


@pytest.mark.parametrize(("raised", "cls", "says"), CASES, ids=lambda x: getattr(x, "kind", ""))
def test_a_storage_failure_says_where_and_what_to_do(
    raised: BaseException, cls: type[StorageError], says: tuple[str, ...]
) -> None:
    e = storage_error(raised, "s3://bucket/x")
    assert type(e) is cls and e is not None
    assert str(e).startswith("s3://bucket/x: ") and e.path == "s3://bucket/x"
    for text in says:
        assert text in str(e)
    assert "\n" not in str(e)


def test_the_file_an_error_names_wins_over_the_url() -> None:
    raised = PermissionError(
        errno.EACCES, "Permission denied", "/data/out/stats.json.tmp-" + "a" * 32
    )
    e = storage_error(raised, "/data/out")
    assert e is not None and e.path == "/data/out/stats.json"


def test_other_errors_pass_unchanged() -> None:
    assert storage_error(ValueError("x"), "p") is None
    assert storage_error(InputError("a bundle"), "p") is None  # says it already
    assert storage_error(OSError(errno.EIO, "I/O error"), "p") is None
    with pytest.raises(DiskFullError) as caught, storage_errors("/out"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
