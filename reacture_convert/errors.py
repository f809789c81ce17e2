"""One error hierarchy for the whole package.

Every message says where (a path, a line, a frame), what went wrong, and what to do about it.
Errors that a caller would naturally catch as a built-in also inherit that built-in, so
``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ReactureError",
    "InputError",
    "InputNotFoundError",
    "UnsafeInputError",
    "OutputError",
    "ConflictError",
    "LockedError",
    "ConfigError",
]


class ReactureError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(ReactureError, ValueError):
    """A source (bundle, archive, file) cannot be read as what it claims to be."""


class InputNotFoundError(InputError, FileNotFoundError):
    """A path or URL given by the user does not exist."""


class UnsafeInputError(InputError):
    """Untrusted input tried something refused on purpose (path escape, bomb, pickle, ...)."""


class OutputError(ReactureError, OSError):
    """The output dataset cannot be written or is not in the expected state."""


class ConflictError(OutputError):
    """A different bundle would overwrite a converted session of the same name."""


class LockedError(OutputError):
    """Another run holds the lock on the output dataset."""


class ConfigError(ReactureError, ValueError):
    """A job file or option is invalid."""
