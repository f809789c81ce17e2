"""reacture-convert: ingest, validate and convert ReActure session bundles."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
