"""An atomic write on a local disk is durable before it is visible: the temporary file is
fsynced with its whole content, then renamed over the final name, then the folder (its new
entry) is fsynced. Observed by recording the real ``os.fsync`` and ``os.replace`` calls."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reacture_convert.output.storage import Output


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, bytes | None]]:
    """Every fsync (the path of its descriptor, and the file's content then) and replace, in
    order; both still do what they do."""
    calls: list[tuple[str, str, bytes | None]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        content = Path(path).read_bytes() if os.path.isfile(path) else None
        calls.append(("fsync", path, content))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append(("replace", f"{src} -> {dst}", None))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_atomic_write_fsyncs_the_whole_file_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    root = tmp_path / "out"
    out = Output(str(root))
    if existing:
        out.write_bytes_atomic("wds/index.json", b"old")
    calls = _record(monkeypatch)

    def fill(f: object) -> None:  # written in pieces: all of them must be synced
        for piece in (b"new ", b"content"):
            f.write(piece)  # type: ignore[attr-defined]

    out.write_atomic("wds/index.json", fill)

    final = str(root / "wds" / "index.json")
    (replaced,) = [k for k, c in enumerate(calls) if c[0] == "replace"]
    src, _, dst = calls[replaced][1].partition(" -> ")
    assert dst == final and src.startswith(final + ".tmp-")
    # the temporary file was fsynced before the rename, holding every byte written
    synced_tmp = [c for c in calls[:replaced] if c[0] == "fsync" and c[1] == src]
    assert synced_tmp == [("fsync", src, b"new content")]
    # then the folder, so the rename itself survives a crash
    assert ("fsync", str(root / "wds"), None) in calls[replaced + 1 :]
    assert (root / "wds" / "index.json").read_bytes() == b"new content"
    assert sorted(p.name for p in (root / "wds").iterdir()) == ["index.json"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_catalog_compaction_is_fsynced_before_it_replaces_catalog_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog (the run's memory) is written through the same path."""
    from reacture_convert.output.catalog import Catalog
    from tests.helpers.catalog import entry

    out = Output(str(tmp_path / "out"))
    catalog = Catalog.load(out)
    catalog.record(entry("a", "converted"))
    calls = _record(monkeypatch)
    catalog.flush(final=True)
    final = str(tmp_path / "out" / "catalog.parquet")
    (replaced,) = [k for k, c in enumerate(calls) if c[0] == "replace" and c[1].endswith(final)]
    src = calls[replaced][1].partition(" -> ")[0]
    synced = [c for c in calls[:replaced] if c[0] == "fsync" and c[1] == src]
    assert len(synced) == 1 and synced[0][2] == Path(final).read_bytes()
