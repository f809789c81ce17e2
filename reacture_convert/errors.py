"""One error hierarchy for the whole package.

Every message says where (a path, a line, a frame), what went wrong, and what to do about it.
Errors that a caller would naturally catch as a built-in also inherit that built-in, so
``except FileNotFoundError`` keeps working. Each class has a ``kind`` (a short stable name that
``--json`` error documents carry); an error may also carry the ``path`` it is about.

``storage_error`` turns what a filesystem or an object-store client raises (no credentials, an
endpoint that does not answer, a missing bucket, permission denied, a full disk) into a
``StorageError`` that says what to do; ``storage_errors`` is the same as a ``with`` block. The
object-store client (botocore) is optional: its exceptions are recognised by class name.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator

__all__ = [
    "is_damaged_read",
    "is_transient",
    "ReactureError",
    "InputError",
    "InputNotFoundError",
    "OutputError",
    "LockedError",
    "ConfigError",
    "OutRefusedError",
    "UnknownNameError",
    "StorageError",
    "CredentialsError",
    "EndpointError",
    "BucketNotFoundError",
    "AccessDeniedError",
    "DiskFullError",
    "error_chain",
    "storage_error",
    "storage_errors",
]


class ReactureError(Exception):
    """Base of every error this package raises on purpose. ``path``: what it is about, when
    one path or URL is."""

    kind = "error"

    def __init__(self, *args: object, path: str | None = None) -> None:
        super().__init__(*args)
        self.path = path


class InputError(ReactureError, ValueError):
    """A source (bundle, archive, file) cannot be read as what it claims to be."""

    kind = "input"


class InputNotFoundError(InputError, FileNotFoundError):
    """A path or URL given by the user does not exist."""

    kind = "not_found"


class UnknownNameError(InputError, LookupError):
    """A name given on the command line (a session) is not one the data holds."""

    kind = "unknown_name"


class OutputError(ReactureError, OSError):
    """The output dataset cannot be written or is not in the expected state."""

    kind = "output"


class LockedError(OutputError):
    """Another run holds the lock on the output dataset."""

    kind = "locked"


class ConfigError(ReactureError, ValueError):
    """A job file or option is invalid."""

    kind = "config"


class OutRefusedError(ConfigError):
    """OUT is not a place a run may write: a file, or a folder holding other files than a
    dataset's (``output.claim``). Found before anything is written; a usage error."""

    kind = "usage"


class StorageError(ReactureError, OSError):
    """A filesystem or object store refused an operation, whatever the path (input or
    output): see ``storage_error``. ``output``: the OUT (URL as given) when it is a run's
    output that failed (``Output.fault``): the run stops there, no bundle is to blame."""

    kind = "storage"
    output: str | None = None


class CredentialsError(StorageError):
    """The object store needs credentials and none were found."""

    kind = "no_credentials"


class EndpointError(StorageError):
    """The object store's endpoint does not answer (wrong URL, server down, no network)."""

    kind = "endpoint"


class BucketNotFoundError(StorageError, FileNotFoundError):
    """The bucket of an object-store URL does not exist."""

    kind = "no_bucket"


class AccessDeniedError(StorageError, PermissionError):
    """Permission denied (file mode, read-only filesystem, the store's access policy, a
    rejected key)."""

    kind = "permission"


class DiskFullError(StorageError):
    """No space left on the device (or quota exceeded)."""

    kind = "disk_full"


_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
_ENDPOINT = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ClientConnectorError",  # aiohttp, under aiobotocore
    "ServerDisconnectedError",
}
_NO_BUCKET = {"NoSuchBucket"}


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes and contexts (each once)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _error_code(e: BaseException) -> str | None:
    """An object store's error code (``NoSuchBucket``, ``AccessDenied``) on a client error."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def storage_error(exc: BaseException, url: str | None = None) -> StorageError | None:
    """What ``exc``, raised by a filesystem or an object-store client while working on ``url``
    (the path or URL the user gave; else the one the exception names), means for the user, as a
    ``StorageError`` whose message says what to do (about the file the exception names, if it
    names one); None when ``exc`` is none of these (a
    ``ReactureError`` already says it, and anything else is not a storage failure)."""
    if isinstance(exc, ReactureError):
        return None
    chain = list(error_chain(exc))
    names = {type(e).__name__ for e in chain}
    codes = {c for c in map(_error_code, chain) if c}
    filename = getattr(exc, "filename", None)
    if filename:  # the file itself when the error names one (a temporary: the file it becomes)
        where: str | None = re.sub(r"\.tmp-[0-9a-f]{32}$", "", str(filename))
    else:
        where = url
    at = f"{where}: " if where else ""
    if names & _CREDENTIALS:
        return CredentialsError(
            f"{at}no credentials found for the object store; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass --storage-option key=... "
            "--storage-option secret=... (anon=true for a public bucket)",
            path=where,
        )
    if names & _ENDPOINT:
        endpoint = next(filter(None, map(_endpoint, chain)), None)
        return EndpointError(
            f"{at}cannot connect to the object store"
            + (f" at {endpoint}" if endpoint else "")
            + "; check --storage-option client_kwargs.endpoint_url=... (or AWS_ENDPOINT_URL) "
            "and that the server is up",
            path=where,
        )
    if codes & _NO_BUCKET or (
        isinstance(exc, FileNotFoundError) and "bucket does not exist" in str(exc)
    ):
        return BucketNotFoundError(
            f"{at}the bucket does not exist; check its name, or create it first",
            path=where,
        )
    if not isinstance(exc, OSError):
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"{at}no space left on the device; free some space or give another output "
            "folder, then run again",
            path=where,
        )
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        what = "read-only filesystem" if exc.errno == errno.EROFS else "permission denied"
        return AccessDeniedError(
            f"{at}{what}; fix "
            + ("the credentials' access to the bucket" if codes else "its permissions")
            + " or give another path",
            path=where,
        )
    return None


def _endpoint(e: BaseException) -> str | None:
    """The endpoint URL a connection error names (botocore keeps it in ``kwargs``)."""
    kwargs = getattr(e, "kwargs", None)
    url = kwargs.get("endpoint_url") if isinstance(kwargs, dict) else None
    return str(url) if url else None


@contextlib.contextmanager
def storage_errors(url: str | None = None) -> Iterator[None]:
    """Raise what ``storage_error`` makes of an exception in the block, from it; other
    exceptions pass unchanged."""
    try:
        yield
    except Exception as e:
        translated = storage_error(e, url)
        if translated is None:
            raise
        if isinstance(e, OSError):
            translated.errno = e.errno  # (``except OSError`` callers may look at it)
        raise translated from e


# What reading a damaged archive member raises (bad CRC, broken deflate/lzma/gzip stream, data
# cut short; zipfile's NotImplementedError for a zip feature it cannot read, and its
# UnicodeDecodeError for a damaged local header name; our InputError for
# a stream that ends early). bz2 raises a bare ``OSError("Invalid data stream")``: a real I/O
# error (disk, network, object store) always carries an errno, so an OSError without one is
# the codec's.
_DAMAGED: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    tarfile.TarError,
    NotImplementedError,
    InputError,
    UnicodeDecodeError,  # zipfile: a local header's name that is not the UTF-8 its flag says
)
_NOT_TRANSIENT = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    ReactureError,
    gzip.BadGzipFile,
)


def is_damaged_read(exc: BaseException, *, in_archive: bool) -> bool:
    """True when ``exc``, raised while reading a source file, means its bytes are damaged (bad
    input to report), not an I/O failure to retry. Only archive members can be damaged this
    way; a plain file that ends early is an ``InputError`` its reader reports itself."""
    if not in_archive:
        return False
    if isinstance(exc, _DAMAGED):
        return True
    missing = (FileNotFoundError, PermissionError, IsADirectoryError)
    return isinstance(exc, OSError) and exc.errno is None and not isinstance(exc, missing)


def is_transient(exc: BaseException) -> bool:
    """I/O errors worth another try (network, a busy object store), not bad input."""
    return isinstance(exc, OSError) and not isinstance(exc, _NOT_TRANSIENT)
