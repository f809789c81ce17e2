"""reacture-convert: ingest, validate and convert ReActure session bundles.

The library's entry points; the command line (``reacture-convert``, ``python -m
reacture_convert``) is a thin layer over them. PyTorch readers live in
``reacture_convert.read.torch`` (import it explicitly: torch is an optional extra).

The entry points are imported on first use, so that a command loads only the modules it runs
(converting one bundle needs neither the readers nor Dask).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from reacture_convert.findings import Finding, Severity
    from reacture_convert.ingest.discover import Discovery, discover
    from reacture_convert.ingest.validate import Report, validate_bundle
    from reacture_convert.output.storage import Output
    from reacture_convert.read.dataset import ConvertedDataset, SessionData, open_dataset
    from reacture_convert.read.verify import verify_dataset
    from reacture_convert.run.batch import run_convert
    from reacture_convert.run.convert import ConvertOptions, convert_bundle
    from reacture_convert.run.summary import RunSummary
    from reacture_convert.run.watch import WatchOptions, run_watch

_HOMES = {
    "Finding": "reacture_convert.findings",
    "Severity": "reacture_convert.findings",
    "Discovery": "reacture_convert.ingest.discover",
    "discover": "reacture_convert.ingest.discover",
    "Report": "reacture_convert.ingest.validate",
    "validate_bundle": "reacture_convert.ingest.validate",
    "Output": "reacture_convert.output.storage",
    "ConvertedDataset": "reacture_convert.read.dataset",
    "SessionData": "reacture_convert.read.dataset",
    "open_dataset": "reacture_convert.read.dataset",
    "verify_dataset": "reacture_convert.read.verify",
    "run_convert": "reacture_convert.run.batch",
    "ConvertOptions": "reacture_convert.run.convert",
    "convert_bundle": "reacture_convert.run.convert",
    "RunSummary": "reacture_convert.run.summary",
    "WatchOptions": "reacture_convert.run.watch",
    "run_watch": "reacture_convert.run.watch",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'reacture_convert' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
