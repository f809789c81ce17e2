"""``Output.fault``: which errors mean OUT's storage failed (the run stops, exit 3) and which are
a bundle's (its session fails, the batch goes on). The real faults, in a real run, are in
tests/run/test_storage_faults.py; this is the table of what each kind of error becomes."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from reacture_convert.errors import (
    AccessDeniedError,
    DiskFullError,
    InputError,
    StorageError,
)
from reacture_convert.output.storage import Output


def _client_error(operation: str, code: str = "AccessDenied") -> PermissionError:
    """What s3fs raises for a refused request: a PermissionError caused by botocore's error."""
    cause = ClientError({"Error": {"Code": code, "Message": "Access Denied"}}, operation)
    try:
        raise PermissionError("Access Denied") from cause
    except PermissionError as e:
        return e


OUT = "/data/out"
CASES = [
    # (id, OUT, the error, what it becomes: a class, or None for "the bundle's")
    ("disk-full", OUT, OSError(errno.ENOSPC, "No space left on device"), DiskFullError),
    ("quota", OUT, OSError(errno.EDQUOT, "Disk quota exceeded"), DiskFullError),
    ("disk-full-elsewhere", OUT, OSError(errno.ENOSPC, "full", "/tmp/x"), DiskFullError),
    ("read-only", OUT, OSError(errno.EROFS, "Read-only file system", "/x"), AccessDeniedError),
    (
        "denied-in-out",
        OUT,
        PermissionError(errno.EACCES, "Permission denied", f"{OUT}/.staging/r/s/rows"),
        AccessDeniedError,
    ),
    (
        "denied-by-pyarrow",
        OUT,
        OSError(errno.EACCES, f"Failed to open local file '{OUT}/rows/s.parquet'. Detail: ..."),
        AccessDeniedError,
    ),
    ("denied-input", OUT, PermissionError(errno.EACCES, "denied", "/in/b/f.npy"), None),
    ("not-a-folder", OUT, NotADirectoryError(errno.ENOTDIR, "no", f"{OUT}/zarr/s.zarr"), None),
    ("input-io", OUT, OSError(errno.EIO, "I/O error", "/in/b/f.npy"), None),
    ("bad-input", OUT, InputError("truncated"), None),
    ("a-bug", OUT, ValueError("bad value"), None),
    ("s3-put-refused", "s3://datasets/x", _client_error("PutObject"), AccessDeniedError),
    ("s3-upload-refused", "s3://datasets/x", _client_error("UploadPart"), AccessDeniedError),
    ("s3-read-refused", "s3://datasets/x", _client_error("GetObject"), None),
]


@pytest.mark.parametrize(
    ("out_url", "error", "becomes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_what_each_error_means_for_the_run(
    out_url: str, error: BaseException, becomes: type[StorageError] | None
) -> None:
    out = Output(out_url)
    fault = out.fault(error)
    if becomes is None:
        assert fault is None
        return
    assert type(fault) is becomes
    assert fault.output == out_url
    message = str(fault)
    assert message.startswith(f"{out_url}: ") and "run the same command again" in message
    assert out.fault(fault) is fault  # said once, not wrapped again
    named = getattr(error, "filename", None)
    if named:
        assert f"(writing {named})" in message and fault.path == named


def test_a_fault_keeps_what_it_is_across_processes(tmp_path: Path) -> None:
    """A Dask worker's fault reaches the driver pickled: still OUT's, with its file."""
    out = Output(str(tmp_path))
    fault = out.fault(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f")))
    assert fault is not None
    again = pickle.loads(pickle.dumps(fault))
    assert (type(again), str(again), again.path, again.output) == (
        DiskFullError,
        str(fault),
        fault.path,
        str(tmp_path),
    )


def test_a_full_local_staging_of_a_bucket_out_says_how_to_move_it() -> None:
    """Sessions into S3 staged on this machine's disk (``stage_dir``): that disk full is named,
    and the fix is more room there or TMPDIR elsewhere, not another --out."""
    out = Output("s3://datasets/x", stage_dir="/tmp/reacture-convert-parts-0/ab12")
    full = OSError(errno.ENOSPC, "No space left on device", f"{out.stage_dir}/.staging/r/s/f")
    fault = out.fault(full)
    assert type(fault) is DiskFullError
    assert f"(writing {full.filename})" in str(fault) and "TMPDIR" in str(fault)
    assert "TMPDIR" not in str(Output("s3://datasets/x").fault(full))
