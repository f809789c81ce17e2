"""Shared fixtures: the shipped sample, every real fixture bundle, a bundle factory, a real Dask
cluster and a local S3 server. What tests import lives in tests/helpers/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from reacture_convert.testing.synth import BundleSpec, write_bundle
from tests.helpers.paths import SAMPLE_DIR
from tests.helpers.real import REAL_BUNDLES

if TYPE_CHECKING:  # s3fs and moto only where the S3 tests run
    from tests.helpers.s3 import S3

# No per-example deadline: on a shared 2-core machine a deadline measures the load, not the code
# (an example of 50 ms took 650 ms once and failed the suite); speed is the benchmarks' business.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")


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


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``dask scheduler`` and two ``dask worker`` processes (one thread each) on
    127.0.0.1 (tests/run/test_batch.py, tests/run/test_scheduler.py); yields the scheduler
    address."""
    from tests.helpers.cluster import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask-cluster")) as address:
        yield address


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's S3 server in its own process (tests/run/test_s3.py, tests/run/test_watch.py):
    buckets ``raw`` and ``datasets``, fake credentials in the environment."""
    from tests.helpers.s3 import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as s3:
        yield s3


# The longest files (a minute or more each), run first: ``make test`` hands whole files to two
# pytest-xdist workers in collection order, and one of these left for the end kept a single
# worker busy for minutes while the other sat idle. Tests within a file keep their order.
LONGEST_FIRST = (
    "tests/run/test_crash.py",
    "tests/run/test_crash_soak.py",
    "tests/test_benchmarks.py",
    "tests/test_readme_commands.py",
    "tests/writers/test_hf_datasets.py",
    "tests/run/test_interrupt.py",
    "tests/run/test_s3.py",
    "tests/read/test_cache.py",
    "tests/cli/test_exit_codes.py",
    "tests/output/test_catalog_log.py",
    "tests/run/test_watch.py",
    "tests/report/test_video.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
