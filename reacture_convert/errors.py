"""One error hierarchy for the whole package.

Every message says where (a path, a line, a frame), what went wrong, and what to do about it.
Errors that a caller would naturally catch as a built-in also inherit that built-in, so
``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations

import gzip
import lzma
import tarfile
import zipfile
import zlib

__all__ = [
    "is_damaged_read",
    "is_transient",
    "ReactureError",
    "InputError",
    "InputNotFoundError",
    "OutputError",
    "LockedError",
    "ConfigError",
]


class ReactureError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(ReactureError, ValueError):
    """A source (bundle, archive, file) cannot be read as what it claims to be."""


class InputNotFoundError(InputError, FileNotFoundError):
    """A path or URL given by the user does not exist."""


class OutputError(ReactureError, OSError):
    """The output dataset cannot be written or is not in the expected state."""


class LockedError(OutputError):
    """Another run holds the lock on the output dataset."""


class ConfigError(ReactureError, ValueError):
    """A job file or option is invalid."""


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
