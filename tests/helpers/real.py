"""The real recordings of tests/data/real.tar.gz, unpacked once per test run."""

from __future__ import annotations

from pathlib import Path

from reacture_convert.output.storage import Output
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions

from .paths import REAL_ARCHIVE


def _unpack_real() -> Path:
    """Unpack the real recordings once per test run into a private temporary folder, read-only
    (a test that writes into its sources fails); removed when the run ends."""
    import atexit
    import shutil
    import stat
    import tarfile
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="reacture-real-"))
    with tarfile.open(REAL_ARCHIVE) as tar:
        tar.extractall(root, filter="data")
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    def remove() -> None:
        for path in root.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(remove)
    return root / "real"


REAL = _unpack_real()
"""The folder of real recordings: three bundles (one in a sub-folder) and a README.md."""


def real_bundle_dirs() -> list[Path]:
    """Every bundle folder of the real recordings (the shipped sample is one of them)."""
    return [meta.parent for meta in sorted(REAL.rglob("*_metadata.json"))]


REAL_BUNDLES = real_bundle_dirs()


def convert_real_bundles(out: Path, options: ConvertOptions | None = None) -> Path:
    """Convert every real bundle into ``out`` with the sync scheduler; assert all converted."""
    opts = options or ConvertOptions(formats=("zarr", "wds"))
    summary = run_convert([str(p) for p in REAL_BUNDLES], Output(str(out)), opts, scheduler="sync")
    assert summary.counts == {"converted": len(REAL_BUNDLES)}
    return out
