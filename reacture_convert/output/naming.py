"""Session names: one safe, unique, deterministic name per bundle (docs/output-layout.md).

The converted session is named after the **file prefix** (``reacture_<epoch-ms>``): it is what
the user sees on disk, it is the export's own identity, and it already fits ``[A-Za-z0-9_-]``.
metadata.json's ``session_id`` (``<prefix-ish>_<9 random chars>``) is kept in the catalog and the
Zarr attributes. A prefix with any character outside the safe set (``..``, ``/``, NUL, newline,
unicode look-alikes...) is made safe and suffixed with a short hash of the original, so two
different unsafe prefixes can never land on the same name and no name can steer a path.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["SAFE_NAME", "session_name", "is_safe_name"]

SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def is_safe_name(name: str) -> bool:
    return SAFE_NAME.fullmatch(name) is not None


def session_name(prefix: str) -> str:
    """The session name for a file prefix: the prefix itself when safe, else a safe derivative."""
    if is_safe_name(prefix):
        return prefix
    digest = hashlib.sha256(prefix.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    stem = _UNSAFE_CHARS.sub("_", prefix)[:64].strip("_-") or "session"
    return f"{stem}-{digest}"
