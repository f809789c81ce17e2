"""What every output format's per-session writer is, to the converter.

The converter opens one ``FormatWriter`` per format asked for (``WriterSpec.open`` in the
registry, ``writers/__init__.py``) with the session's ``SessionContext`` and the format's own
options. The writers are the validator's ``ReadSink``: they write while validation reads the
bundle, once. Then either ``complete`` (a valid bundle: what the writer staged, as ``Written``)
or ``discard`` (anything else: nothing of it is left).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from reacture_convert.ingest.bundle import BundleRef, StorageOptions
from reacture_convert.ingest.validate import ReadSink, Report
from reacture_convert.output.digests import FileDigest
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset.samples import SessionTar

__all__ = ["FormatWriter", "SessionContext", "Written"]


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session's conversion has for its writers: ``view``, the bundle as it is read (a
    legacy export's five-file view); ``provenance``, the bundle as it was found; the session's
    name; OUT; ``stage_key``, its folder under ``OUT/.staging/`` for the per-session outputs;
    the run (``run_id``, None for a direct conversion); the input's fsspec options; and the
    threads a writer may use."""

    view: BundleRef
    provenance: BundleRef
    session: str
    out: Output
    stage_key: str
    run_id: str | None
    input_options: StorageOptions | None
    threads: int


@dataclass(frozen=True, slots=True)
class Written:
    """What a writer leaves once complete: ``outputs``, its parts staged under the session's
    staging folder (paths relative to OUT) for the driver to commit; ``files``, the size and
    sha256 of every file of those outputs (paths relative to OUT, as committed), taken as they
    were written; ``session_tar``, a merged format's samples waiting for the batch's merge."""

    outputs: tuple[str, ...] = ()
    session_tar: SessionTar | None = None
    files: tuple[FileDigest, ...] = ()


class FormatWriter(ReadSink, Protocol):
    """One format's writer of one session (see the module doc)."""

    def complete(self, report: Report, hashes: Mapping[str, str]) -> Written:
        """Finish the outputs of a valid bundle (``report``, its files' ``hashes``)."""
        ...

    def discard(self) -> None:
        """Drop whatever was written (after an error or for a bundle that is not valid)."""
        ...
