"""The README's shard examples run as written: plain webdataset + PyTorch training, and Hugging
Face ``datasets`` on the folder and on the shards (with docs/training.md's typed load), in a
folder holding ``data/real`` (no network: the Hub is switched off)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.docs import DOCS, README, blocks, section
from tests.helpers.real import convert_real_bundles

os.environ["HF_DATASETS_OFFLINE"] = "1"  # read by datasets when it is imported
os.environ["HF_HUB_OFFLINE"] = "1"


def example(path: Path, heading: str, marker: str) -> str:
    """The one python block under ``heading`` of ``path`` that holds ``marker``."""
    (code,) = [b for b in blocks(section(path, heading), "python") if marker in b]
    return code


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real recordings converted with --format zarr,wds into ``data/real`` (one shard: under
    5,000 frames), as the README's command does."""
    return convert_real_bundles(tmp_path_factory.mktemp("readme") / "data" / "real")


def run(code: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.chdir(out.parent.parent)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_plain_webdataset_training_snippet_runs(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = example(README, "## Training", "webdataset as wds")
    ns = run(code + "\nseen = []\nfor f, k in loader: seen.append(len(f))\n", out, monkeypatch)
    assert len(ns["urls"]) == 1  # type: ignore[arg-type]
    assert sum(ns["seen"]) == 534  # type: ignore[arg-type]


def test_hugging_face_snippets_run(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", out.parent / "hf-cache")
    first = example(README, "## Training", "import datasets")
    second = example(DOCS / "training.md", "## WebDataset shards without this package", "datasets")
    ns = run(first + second, out, monkeypatch)
    assert len(ns["rows"]) == 920 and len(ns["frames"]) == 534  # type: ignore[arg-type]
    assert len(ns["samples"]) == len(ns["loaded"]) == 534  # type: ignore[arg-type]
    assert sum(1 for _ in ns["stream"]) == 534  # type: ignore[attr-defined]
