"""reacture-convert: ingest, validate and convert ReActure session bundles.

The library's entry points; the command line (``reacture-convert``, ``python -m
reacture_convert``) is a thin layer over them. PyTorch readers live in
``reacture_convert.read.torch`` (import it explicitly: torch is an optional extra).
"""

from __future__ import annotations

__version__ = "0.1.0"

from reacture_convert.findings import Finding, Severity  # noqa: E402
from reacture_convert.ingest.discover import Discovery, discover  # noqa: E402
from reacture_convert.ingest.validate import Report, validate_bundle  # noqa: E402
from reacture_convert.output.storage import Output  # noqa: E402
from reacture_convert.read.dataset import ConvertedDataset, SessionData, open_dataset  # noqa: E402
from reacture_convert.read.verify import verify_dataset  # noqa: E402
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions, convert_bundle  # noqa: E402
from reacture_convert.run.summary import RunSummary  # noqa: E402
from reacture_convert.run.watch import WatchOptions, run_watch  # noqa: E402

__all__ = [
    "__version__",
    "ConvertOptions",
    "ConvertedDataset",
    "Discovery",
    "Finding",
    "Output",
    "Report",
    "RunSummary",
    "SessionData",
    "Severity",
    "convert_bundle",
    "discover",
    "open_dataset",
    "run_convert",
    "validate_bundle",
    "verify_dataset",
    "run_watch",
    "WatchOptions",
]
