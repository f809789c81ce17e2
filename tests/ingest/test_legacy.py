"""Legacy four-file exports (frames.json with base64 frames) convert like five-file bundles."""

from __future__ import annotations

import base64
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.legacy import MAX_OBJECT_BYTES
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.catalog import read_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import write_legacy_bundle
from tests.helpers.paths import LEGACY_ARCHIVE

BOTH = ConvertOptions(formats=("zarr", "wds"))


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()
    }


def test_legacy_bundle_is_found_and_flagged(real_bundle: Path, tmp_path: Path) -> None:
    legacy = write_legacy_bundle(real_bundle, tmp_path / "legacy")
    (bundle,) = discover([str(legacy)]).bundles
    assert bundle.is_legacy and bundle.missing == ()
    report = validate_bundle(bundle)
    assert report.ok
    assert report.findings[0].code == "LEGACY_BUNDLE"
    original = validate_bundle(discover([str(real_bundle)]).bundles[0])
    assert (report.n_frames, report.n_rows, report.frame_rows) == (
        original.n_frames,
        original.n_rows,
        original.frame_rows,
    )


def test_legacy_outputs_equal_those_of_the_five_file_original(
    real_bundle: Path, tmp_path: Path
) -> None:
    legacy = write_legacy_bundle(real_bundle, tmp_path / "legacy")
    a, b = tmp_path / "from-legacy", tmp_path / "from-original"
    assert run_convert([str(legacy)], Output(str(a)), BOTH, scheduler="sync").ok
    assert run_convert([str(real_bundle)], Output(str(b)), BOTH, scheduler="sync").ok
    for pattern in (
        "rows/*",
        "frames/*",
        "wds/*.tar",
        "zarr/*/frames/c/**/*",
        "zarr/*/timestamps/c/**/*",
    ):
        assert _files(a, pattern) == _files(b, pattern), pattern
    name = real_bundle.name if real_bundle.name.startswith("reacture_") else None
    (session,) = [p.name[: -len(".zarr")] for p in (a / "zarr").iterdir()]
    assert name is None or session == name
    za = zarr.open_group(str(a / "zarr" / f"{session}.zarr"), mode="r")
    zb = zarr.open_group(str(b / "zarr" / f"{session}.zarr"), mode="r")
    assert np.array_equal(za["frames"][:], zb["frames"][:])
    assert za["timestamps"][:].tobytes() == zb["timestamps"][:].tobytes()
    (entry,) = read_catalog(Output(str(a)))
    assert entry.status == "converted" and "frames.json" in entry.hashes
    assert "LEGACY_BUNDLE" in [f.code for f in entry.findings]
    assert za.attrs["provenance"]["files"]["frames.json"].endswith("_frames.json")
    assert verify_dataset(Output(str(a)), sources=True) == (1, [])


def test_legacy_bundle_inside_a_zip(sample_dir: Path, tmp_path: Path) -> None:
    legacy = write_legacy_bundle(sample_dir, tmp_path / "legacy")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in legacy.iterdir():
            zf.write(p, f"inner/{p.name}")
    summary = run_convert([str(archive)], Output(str(tmp_path / "out")), scheduler="sync")
    assert [e.status for e in summary.entries] == ["converted"]
    assert summary.entries[0].source == f"{archive}!inner"


def _frames_json(legacy: Path) -> Path:
    (path,) = legacy.glob("*_frames.json")
    return path


def _objects(legacy: Path) -> list[dict[str, object]]:
    return json.loads(_frames_json(legacy).read_text())


def _rewrite(legacy: Path, objs: list[dict[str, object]]) -> None:
    _frames_json(legacy).write_text(json.dumps(objs))


def _set(i: int, key: str, value: object) -> Callable[[Path], None]:
    def edit(legacy: Path) -> None:
        objs = _objects(legacy)
        objs[i][key] = value
        _rewrite(legacy, objs)

    return edit


def _raw(text: str) -> Callable[[Path], None]:
    def edit(legacy: Path) -> None:
        _frames_json(legacy).write_text(text)

    return edit


def _truncate(legacy: Path) -> None:
    p = _frames_json(legacy)
    p.write_bytes(p.read_bytes()[:-5000])


def _huge_object(legacy: Path) -> None:
    objs = _objects(legacy)
    objs[1]["padding"] = "x" * (MAX_OBJECT_BYTES + 10)
    _rewrite(legacy, objs)


def _not_utf8(legacy: Path) -> None:
    p = _frames_json(legacy)
    p.write_bytes(b"[\xff\xfe]")


SHORT = base64.b64encode(b"\x00" * 100).decode()
BAD_CASES = [
    pytest.param(_raw("{}"), None, id="not-a-list"),
    pytest.param(_raw("[1, 2]"), 0, id="list-of-numbers"),
    pytest.param(_truncate, 7, id="truncated-in-last-frame"),
    pytest.param(_raw("[] trailing"), None, id="trailing-data"),
    pytest.param(_set(2, "data_base64", "!!!not base64!!!"), 2, id="bad-base64"),
    pytest.param(_set(3, "data_base64", SHORT), 3, id="short-frame"),
    pytest.param(_set(1, "shape", [64, 64, 3]), 1, id="wrong-shape"),
    pytest.param(_set(1, "dtype", "float32"), 1, id="wrong-dtype"),
    pytest.param(_set(4, "timestamp_ms", "soon"), 4, id="timestamp-not-number"),
    pytest.param(_set(5, "path", "frames/frame_000009.npy"), 5, id="path-names-other-frame"),
    pytest.param(_huge_object, 1, id="object-over-cap"),
    pytest.param(_not_utf8, None, id="not-utf8"),
]


@pytest.mark.parametrize(("damage", "frame"), BAD_CASES)
def test_broken_frames_json_is_a_located_finding(
    damage: Callable[[Path], None],
    frame: int | None,
    make_bundle: Callable[..., Path],
    tmp_path: Path,
) -> None:
    legacy = write_legacy_bundle(make_bundle(n_frames=8), tmp_path / "legacy")
    damage(legacy)
    (bundle,) = discover([str(legacy)]).bundles
    report = validate_bundle(bundle)
    assert not report.ok
    bad = [f for f in report.findings if f.code == "LEGACY_BAD_FRAMES"]
    assert len(bad) == 1 and bad[0].file.endswith("_frames.json") and bad[0].frame == frame
    summary = run_convert([str(legacy)], Output(str(tmp_path / "out")), scheduler="sync")
    assert [e.status for e in summary.entries] == ["rejected"]
    assert not (tmp_path / "out" / "zarr").exists()


# --- the real 2025 export -------------------------------------------------------------------------
def _real_manifest() -> tuple[np.ndarray, list[int], list[str]]:
    """frames.json of the real legacy export, decoded independently: frames, times, paths."""
    with tarfile.open(LEGACY_ARCHIVE) as tar:
        member = tar.extractfile("./reacture_1796075622822_frames.json")
        assert member is not None
        manifest = json.loads(member.read())
    frames = np.stack(
        [
            np.frombuffer(base64.b64decode(m["data_base64"]), np.uint8).reshape(128, 128, 3)
            for m in manifest
        ]
    )
    return frames, [m["timestamp_ms"] for m in manifest], [m["path"] for m in manifest]


def test_the_real_legacy_export_converts_exactly(tmp_path: Path) -> None:
    """The game's own 2025 exporter wrote this archive (docs/bundle-format.md): read in place
    from the .tar.gz, it is judged valid with its LEGACY_BUNDLE warning and converts to the
    frames and times its frames.json holds, every row rebuilt exactly."""
    (bundle,) = discover([str(LEGACY_ARCHIVE)]).bundles
    assert bundle.is_legacy and bundle.missing == ()
    report = validate_bundle(bundle)
    assert report.ok, report.findings
    assert (report.n_frames, report.n_rows) == (207, 256)
    assert "LEGACY_BUNDLE" in [f.code for f in report.findings]

    out = tmp_path / "out"
    summary = run_convert([str(LEGACY_ARCHIVE)], Output(str(out)), BOTH, scheduler="sync")
    assert summary.ok and summary.counts == {"converted": 1}
    assert verify_dataset(Output(str(out)), sources=True) == (1, [])

    frames, times, paths = _real_manifest()
    assert paths == [f"frames/frame_{i:06d}.npy" for i in range(207)]
    group = zarr.open_group(str(out / "zarr" / "reacture_1796075622822.zarr"), mode="r")
    assert np.array_equal(np.asarray(group["frames"][:]), frames)
    assert np.asarray(group["timestamps"][:]).tolist() == [float(t) for t in times]
    assert frames.any()  # this recording preserved the drawing buffer: real pictures
    (entry,) = read_catalog(Output(str(out)))
    assert entry.hashes.keys() == {"metadata.json", "data.jsonl", "frames.json", "README.md"}
