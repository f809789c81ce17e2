"""The dataset card ``OUT/README.md`` (and ``OUT/wds/README.md``): what it lists, that it follows
the catalog, keeps a filled-in licence, and that ``datasets`` loads a wds-only folder by it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["HF_DATASETS_OFFLINE"] = "1"  # read by datasets when it is imported
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402
import yaml  # noqa: E402

from reacture_convert.output.catalog import read_catalog  # noqa: E402
from reacture_convert.output.storage import Output  # noqa: E402
from reacture_convert.run.batch import run_convert  # noqa: E402
from reacture_convert.run.convert import ConvertOptions  # noqa: E402
from reacture_convert.writers.card import LICENCE_TO_FILL, write_card  # noqa: E402

A, B = "reacture_1795600000001", "reacture_1795600000002"


def header(card: Path) -> dict[str, Any]:
    text = card.read_text()
    assert text.startswith("---\n")
    doc: dict[str, Any] = yaml.safe_load(text[4 : text.index("\n---\n", 4)])
    return doc


def convert(folders: list[Path], out: Path, formats: tuple[str, ...] = ("zarr", "wds")) -> None:
    options = ConvertOptions(formats=formats)
    assert run_convert([str(f) for f in folders], Output(str(out)), options, scheduler="sync").ok


def test_card_lists_the_live_sessions_and_follows_the_catalog(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    a = make_bundle("a", n_frames=6, seed=1, prefix=A)
    b = make_bundle("b", n_frames=9, seed=2, prefix=B, blank=True)
    out = tmp_path / "out"
    convert([a], out)
    first = header(out / "README.md")
    assert first["license"] == LICENCE_TO_FILL
    configs = {c["config_name"]: c for c in first["configs"]}
    assert configs["rows"]["default"] is True
    assert configs["rows"]["data_files"] == [{"split": "train", "path": [f"rows/{A}.parquet"]}]
    assert configs["frames"]["data_files"][0]["path"] == [f"frames/{A}.parquet"]
    assert f"| {A} | 6 | 0 |" in (out / "README.md").read_text()

    convert([a, b], out)  # the catalog changed: the card follows
    text = (out / "README.md").read_text()
    configs = {c["config_name"]: c for c in header(out / "README.md")["configs"]}
    assert configs["rows"]["data_files"][0]["path"] == [f"rows/{A}.parquet", f"rows/{B}.parquet"]
    assert f"| {B} | 9 | 9 |" in text and "2 session(s), 15 frames (9 blank)" in text
    shards = header(out / "wds" / "README.md")["configs"][0]
    index = json.loads((out / "wds" / "index.json").read_text())
    assert shards["data_files"][0]["path"] == [s["url"] for s in index["shards"]]


def test_a_filled_in_licence_is_kept(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert([make_bundle("a", n_frames=4, prefix=A)], out)
    for card in (out / "README.md", out / "wds" / "README.md"):
        text = card.read_text()
        card.write_text(text.replace('license: "unknown"', "license: cc-by-4.0  # ours"))
    write_card(Output(str(out)), read_catalog(Output(str(out))))
    for card in (out / "README.md", out / "wds" / "README.md"):
        assert header(card)["license"] == "cc-by-4.0"
        assert "`cc-by-4.0`" in card.read_text() and "not filled in" not in card.read_text()


def test_same_catalog_gives_the_same_card(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_bundle("a", n_frames=5, prefix=A)
    convert([folder], tmp_path / "one")
    convert([folder], tmp_path / "two")
    for rel in ("README.md", "wds/README.md"):
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


def test_a_wds_only_folder_loads_its_samples(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    convert(
        [make_bundle("a", n_frames=7, prefix=A), make_bundle("b", n_frames=3, prefix=B)],
        out,
        formats=("wds",),
    )
    assert header(out / "README.md")["configs"][0]["config_name"] == "shards"
    for streaming in (False, True):
        ds = datasets.load_dataset(
            str(out), split="train", streaming=streaming, cache_dir=str(tmp_path / "cache")
        )
        keys = [s["__key__"] for s in ds]
        assert keys == [f"{A}/{i:06d}" for i in range(7)] + [f"{B}/{i:06d}" for i in range(3)]
