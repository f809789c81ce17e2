"""The README's shard snippets run as written: plain webdataset + PyTorch training, and Hugging
Face ``datasets`` on the folder and on the shards (no network: the Hub is switched off)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.helpers.paths import REPO
from tests.helpers.real import convert_real_bundles

os.environ["HF_DATASETS_OFFLINE"] = "1"  # read by datasets when it is imported
os.environ["HF_HUB_OFFLINE"] = "1"

README = (REPO / "README.md").read_text(encoding="utf-8")


def snippets(heading: str) -> list[str]:
    """The python blocks of the README section under ``heading``."""
    start = README.index(f"\n{heading}\n")
    end = README.find("\n#", start + len(heading) + 2)
    return re.findall(r"```python\n(.*?)```", README[start:end], flags=re.DOTALL)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real recordings converted with --format zarr,wds: one shard (under 5,000 frames)."""
    return convert_real_bundles(tmp_path_factory.mktemp("readme") / "out")


def run(code: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.chdir(out.parent)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code.replace('"OUT', f'"{out.name}'), "README.md", "exec"), namespace)
    return namespace


def test_plain_webdataset_training_snippet_runs(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = snippets("### Training on WebDataset shards (plain webdataset + PyTorch)")
    assert "pip install webdataset" in README
    ns = run(code + "\nseen = []\nfor f, k in loader: seen.append(len(f))\n", out, monkeypatch)
    assert len(ns["urls"]) == 1  # type: ignore[arg-type]
    assert sum(ns["seen"]) == 534  # type: ignore[arg-type]


def test_hugging_face_snippets_run(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", out.parent / "hf-cache")
    first, second = snippets("### Hugging Face datasets")
    ns = run(first + second, out, monkeypatch)
    assert len(ns["rows"]) == 920 and len(ns["frames"]) == 534  # type: ignore[arg-type]
    assert len(ns["samples"]) == len(ns["loaded"]) == 534  # type: ignore[arg-type]
    assert sum(1 for _ in ns["stream"]) == 534  # type: ignore[attr-defined]
