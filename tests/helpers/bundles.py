"""A bundle folder as the package's ``BundleRef``, built by hand (no discovery)."""

from __future__ import annotations

from pathlib import Path

from reacture_convert.ingest.bundle import ROLES, BundleRef, FileRef


def bundle_ref(folder: Path) -> BundleRef:
    meta = next(folder.glob("*_metadata.json"))
    prefix = meta.name[: -len("_metadata.json")]
    files = {}
    for role in ROLES:
        path = folder / f"{prefix}_{role}"
        files[role] = FileRef(str(path), path.stat().st_size)
    return BundleRef(prefix, str(folder), files)
