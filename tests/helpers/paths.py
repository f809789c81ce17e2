"""The repository's files the tests use."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SAMPLE_DIR = REPO / "sample" / "reacture_1795637238001"
REAL_ARCHIVE = DATA / "real.tar.gz"
"""The real recordings (docs/bundle-format.md, "The recordings in tests/data"), as shipped."""
LEGACY_ARCHIVE = DATA / "legacy" / "reacture_1796075622822-legacy.tar.gz"
"""A real four-file export of the game's 2025 exporter."""
CHECKER = REPO.parent / "shared" / "tools" / "check_output.py"
"""The independent conformance checker: beside the repository on the team's machines only."""
needs_checker = pytest.mark.skipif(
    not CHECKER.is_file(),
    reason="the independent checker ../shared/tools/check_output.py is not beside this clone",
)
