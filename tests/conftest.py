"""Shared fixtures: the shipped sample, every real fixture bundle, and a bundle factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reacture_convert.synth import BundleSpec, write_bundle

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "sample" / "reacture_1795637238001"
SHARED_REAL = REPO.parent / "shared" / "fixtures" / "real"


def real_bundle_dirs() -> list[Path]:
    """The shipped sample always; every bundle of ../shared/fixtures/real when it is there."""
    dirs = {SAMPLE_DIR.name: SAMPLE_DIR}
    if SHARED_REAL.is_dir():
        for meta in sorted(SHARED_REAL.rglob("*_metadata.json")):
            dirs[meta.parent.name if meta.parent.name.startswith("reacture_") else meta.name] = meta.parent
    return list(dirs.values())


REAL_BUNDLES = real_bundle_dirs()


@pytest.fixture(params=REAL_BUNDLES, ids=[p.name for p in REAL_BUNDLES])
def real_bundle(request: pytest.FixtureRequest) -> Path:
    """Each real bundle folder in turn (read-only: never write into it)."""
    path: Path = request.param
    return path


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic bundle in the real exporter's format; returns its folder.

    Keyword arguments are those of ``BundleSpec``; ``name`` picks the sub-folder.
    """
    counter = iter(range(10**6))

    def make(name: str | None = None, **kwargs: object) -> Path:
        spec = BundleSpec(**kwargs)  # type: ignore[arg-type]
        folder = tmp_path / "bundles" / (name or f"b{next(counter)}")
        return write_bundle(folder, spec)

    return make
