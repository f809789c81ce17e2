"""Validation findings: what is wrong (or odd) with an input, and exactly where.

A finding never raises: readers and validators collect them into lists so that one report can
say everything that is wrong with a bundle at once. ``CODES`` is the registry of every stable
code with its severity and a one-line meaning; the README's table is generated from it and a
test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "Severity",
    "Finding",
    "CODES",
    "has_errors",
    "finding",
    "codes_markdown",
    "once_per_code",
]


class Severity(StrEnum):
    ERROR = "error"  # the bundle is rejected
    WARNING = "warning"  # converted, but a person should know
    INFO = "info"  # a known quirk of the real exporter, tolerated on purpose


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, located. ``line`` is 1-based (as an editor shows it); ``frame`` is 0-based."""

    severity: Severity
    code: str
    file: str
    message: str
    line: int | None = None
    frame: int | None = None

    def location(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.frame is not None:
            where += f"[frame {self.frame}]"
        return where

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "file": self.file,
            "line": self.line,
            "frame": self.frame,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        """The finding ``to_dict`` gave (as stored in the catalog's ``findings`` column)."""
        return cls(
            Severity(d["severity"]),
            d["code"],
            d["file"],
            d["message"],
            line=d["line"],
            frame=d["frame"],
        )

    def __str__(self) -> str:
        return f"{self.severity}: {self.code} at {self.location()}: {self.message}"


ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# code -> (severity, meaning). Stable: users grep for these; never rename one.
CODES: dict[str, tuple[Severity, str]] = {
    # --- discovery and bundles ---------------------------------------------------------------
    "INPUT_NOT_FOUND": (ERR, "A path or URL given on the command line does not exist."),
    "BUNDLE_MISSING_FILE": (ERR, "One of the five files of a bundle is missing."),
    "INPUT_IS_DATASET": (
        WARN,
        "A folder holding a converted dataset was not read as input (keep bundles outside OUT).",
    ),
    "STRAY_FILE": (INFO, "A file that belongs to no bundle was ignored."),
    "INPUT_LINK_SKIPPED": (WARN, "A symbolic link inside an input folder was not followed."),
    "DUPLICATE_BUNDLE": (WARN, "The same bundle (same bytes) was found twice; converted once."),
    # --- archives -----------------------------------------------------------------------------
    "ARCHIVE_UNREADABLE": (ERR, "An archive cannot be opened or is corrupt."),
    "ARCHIVE_UNSAFE_PATH": (ERR, "An archive member has an absolute, '..' or other unsafe name."),
    "ARCHIVE_LINK": (ERR, "An archive member is a symlink or hard link; links are refused."),
    "ARCHIVE_SPECIAL_FILE": (ERR, "An archive member is a device, FIFO or other special file."),
    "ARCHIVE_DUPLICATE_MEMBER": (ERR, "An archive holds two members with the same name."),
    "ARCHIVE_TOO_LARGE": (ERR, "An archive member declares or expands to more than allowed."),
    "ARCHIVE_ENCRYPTED": (ERR, "An archive member is encrypted."),
    "ARCHIVE_UNSUPPORTED": (ERR, "An archive member uses an unsupported compression or format."),
    "ARCHIVE_NESTED": (INFO, "An archive inside an archive was not opened (not supported)."),
    # --- .npy ---------------------------------------------------------------------------------
    "NPY_GAME_HEADER": (INFO, "The .npy header has the game exporter's known quirks; read anyway."),
    "NPY_BAD_MAGIC": (ERR, "The file does not start with the NPY magic string."),
    "NPY_BAD_VERSION": (ERR, "The NPY format version is not 1.0, 2.0 or 3.0."),
    "NPY_BAD_HEADER": (ERR, "The NPY header is truncated, too large, or not a valid header dict."),
    "NPY_BAD_DTYPE": (ERR, "The array dtype is not the one this file must hold."),
    "NPY_UNSAFE_DTYPE": (ERR, "The header declares an object or structured dtype (pickle)."),
    "NPY_FORTRAN_ORDER": (ERR, "The array is stored in Fortran order; C order is required."),
    "NPY_BAD_SHAPE": (ERR, "The array shape is not the one this file must hold."),
    "NPY_TRUNCATED": (ERR, "The file holds fewer data bytes than its header declares."),
    "NPY_TRAILING_BYTES": (ERR, "The file holds more data bytes than its header declares."),
    # --- data.jsonl ---------------------------------------------------------------------------
    "JSONL_BAD_JSON": (ERR, "A line of data.jsonl is not valid JSON."),
    "JSONL_BAD_UTF8": (ERR, "A line of data.jsonl is not valid UTF-8."),
    "JSONL_BOM": (ERR, "data.jsonl starts with a byte-order mark."),
    "JSONL_TOO_DEEP": (ERR, "A line nests deeper than allowed."),
    "JSONL_LINE_TOO_LONG": (ERR, "A line is longer than allowed."),
    "JSONL_DUPLICATE_KEY": (ERR, "A JSON object repeats a key."),
    "JSONL_NOT_OBJECT": (ERR, "A line is valid JSON but not an object."),
    "JSONL_EMPTY_LINE": (WARN, "An empty line in data.jsonl was skipped."),
    "JSONL_EMPTY": (ERR, "data.jsonl holds no rows."),
    "ROW_UNKNOWN_TYPE": (ERR, "A row's 'type' is neither robot_state nor player_action."),
    "ROW_SCHEMA": (ERR, "A row misses a required field or has a field of the wrong type."),
    "ROW_NULL": (ERR, "A periodic row has a null value (the game promises none)."),
    "ROW_UNKNOWN_FIELD": (INFO, "A row has a field the schema does not know; kept losslessly."),
    "ROW_OUT_OF_RANGE": (WARN, "battery/health/fuel outside 0-100 or damage outside 0-1."),
    "ROWS_NOT_TIME_ORDERED": (INFO, "Rows are not in time order (a known quirk of the exporter)."),
    # --- frames and alignment -----------------------------------------------------------------
    "FRAME_REF_BAD": (ERR, "A visual_frame_path is not 'frames/frame_NNNNNN.npy'."),
    "FRAME_REF_OUT_OF_RANGE": (ERR, "A visual_frame_path names a frame index >= N."),
    "FRAME_REF_DUPLICATE": (ERR, "Two periodic rows refer to the same frame."),
    "FRAME_REF_ORDER": (ERR, "Periodic rows do not refer to frames 0, 1, 2, ... in order."),
    "FRAME_UNREFERENCED": (ERR, "A frame is referenced by no periodic row."),
    "FRAME_COUNT_MISMATCH": (ERR, "frames.npy and timestamps.npy hold different counts."),
    "FRAMES_BLANK": (WARN, "Frames are all zeros (the game's known black-frame export)."),
    "TS_NOT_FINITE": (ERR, "A timestamp is NaN or infinite."),
    "TS_DECREASING": (ERR, "Timestamps go backwards."),
    "TS_ROW_MISMATCH": (ERR, "A frame's timestamp and its periodic row's timestamp_ms disagree."),
    "TS_GAP": (WARN, "A gap between frames much longer than the cadence (a pause or a stall)."),
    "TS_CADENCE": (WARN, "The measured frame rate differs from metadata's sampling_rate_hz."),
    "TS_FLOAT32_PRECISION": (WARN, "Timestamps beyond 2^24 ms lose whole milliseconds in float32."),
    # --- metadata -----------------------------------------------------------------------------
    "META_BAD_JSON": (ERR, "metadata.json is not a valid JSON object."),
    "META_SCHEMA": (ERR, "metadata.json misses a required field or has a wrong type."),
    "META_COUNT_MISMATCH": (ERR, "metadata data_stats disagree with what the files hold."),
    "META_SESSION_ID": (INFO, "metadata session_id differs from the file prefix; both are kept."),
    "META_SESSION_ID_MISMATCH": (WARN, "metadata session_id does not look like the same session."),
    # --- legacy exports ------------------------------------------------------------------------
    "LEGACY_BUNDLE": (WARN, "A four-file legacy export (frames.json), converted as a current one."),
    "LEGACY_BAD_FRAMES": (ERR, "frames.json of a legacy export is malformed (frame index given)."),
    # --- conversion ---------------------------------------------------------------------------
    "READ_FAILED": (ERR, "A file could not be read (I/O error, permission, network); retry later."),
    "CONVERT_FAILED": (ERR, "Conversion of a valid bundle failed (I/O error, worker died, ...)."),
    "CONFLICT": (ERR, "A different bundle is already converted under this session name."),
}


def finding(
    code: str,
    file: str,
    message: str,
    *,
    line: int | None = None,
    frame: int | None = None,
) -> Finding:
    """Build a finding with the registered severity of ``code``."""
    severity, _ = CODES[code]
    return Finding(severity, code, file, message, line=line, frame=frame)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)


def once_per_code(findings: Iterable[Finding]) -> list[tuple[Finding, int]]:
    """Each code's first finding and how many there are of it, in order of first appearance
    (what a summary says of a session: one line per kind of problem)."""
    first: dict[str, Finding] = {}
    count: dict[str, int] = {}
    for f in findings:
        first.setdefault(f.code, f)
        count[f.code] = count.get(f.code, 0) + 1
    return [(f, count[code]) for code, f in first.items()]


def codes_markdown() -> str:
    """The README's table of finding codes (a test keeps README.md equal to this)."""
    lines = ["| code | severity | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{code}` | {sev} | {meaning} |" for code, (sev, meaning) in CODES.items()]
    return "\n".join(lines)
