"""Shard sets that grow: ``convert --format wds --append`` adds sessions as new shards; the old
shards stay byte for byte, a reader of the old index keeps working, webdataset's own reader sees
every sample of the grown set once, and ``verify`` checks the whole set."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import webdataset
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.formats.wds.index import read_index
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.webdataset import (
    WdsOptions,
    append_shards,
    describe_session_tar,
    write_session_samples,
)
from tests.helpers.bundles import bundle_ref

NAMES = [f"reacture_17956000000{k:02d}" for k in range(4)]
FRAMES = [9, 14, 6, 11]
SIZE = 400_000  # about 7 samples a shard


@pytest.fixture
def folders(make_bundle: Callable[..., Path]) -> list[Path]:
    return [
        make_bundle(name=f"s{k}", prefix=NAMES[k], seed=k, n_frames=FRAMES[k]) for k in range(4)
    ]


def convert(folders: list[Path], out: Path, append: bool, **wds: object) -> None:
    opts = ConvertOptions(
        formats=("zarr", "wds"), wds=WdsOptions(shard_size=SIZE, append=append, **wds)
    )
    assert run_convert([str(f) for f in folders], Output(str(out)), opts, scheduler="sync").ok


def shard_urls(out: Path, index: dict[str, object]) -> list[str]:
    return [str(out / "wds" / s["url"]) for s in index["shards"]]  # type: ignore[attr-defined]


def keys(urls: list[str]) -> list[str]:
    return [s["__key__"] for s in webdataset.WebDataset(urls, shardshuffle=False)]


def all_keys(sessions: range) -> list[str]:
    return [f"{NAMES[k]}/{i:06d}" for k in sessions for i in range(FRAMES[k])]


def test_append_adds_new_shards_and_keeps_the_old_ones(folders: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(folders[:2], out, append=False)
    old_index = json.loads((out / "wds" / "index.json").read_text())
    old_bytes = {p.name: p.read_bytes() for p in (out / "wds").glob("*.tar")}
    old_urls = shard_urls(out, old_index)
    assert len(old_urls) > 1

    convert(folders, out, append=True)  # the first two again, and two new ones
    index = json.loads((out / "wds" / "index.json").read_text())
    assert index["shards"][: len(old_urls)] == old_index["shards"]
    for name, data in old_bytes.items():
        assert (out / "wds" / name).read_bytes() == data  # untouched
    new = index["shards"][len(old_urls) :]
    assert new and {s["url"].split("-")[1] for s in new} == {index["tag"]} != {old_index["tag"]}
    assert [s["url"].rsplit("-", 1)[1] for s in index["shards"]] == [
        f"{k:06d}.tar" for k in range(len(index["shards"]))
    ]
    assert {x for s in new for x in s["sessions"]} == set(NAMES[2:])
    # a reader of the old index still reads its samples; the new index has every sample once
    assert keys(old_urls) == all_keys(range(2))
    assert sorted(keys(shard_urls(out, index))) == sorted(all_keys(range(4)))
    assert index["total_samples"] == sum(FRAMES)
    assert [s["session"] for s in index["sessions"]] == NAMES
    assert verify_dataset(Output(str(out))) == (4, [])
    card = (out / "wds" / "README.md").read_text()
    assert all(s["url"] in card for s in index["shards"])


def test_append_with_nothing_new_changes_nothing(folders: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(folders[:2], out, append=False)
    before = (out / "wds" / "index.json").read_bytes()
    convert(folders[:2], out, append=True)
    assert (out / "wds" / "index.json").read_bytes() == before


def test_append_is_reproducible_and_by_cli(folders: list[Path], tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    convert(folders[:1], one, append=False)
    convert(folders, one, append=True)
    convert(folders[:1], two, append=False)
    args = ["convert", *map(str, folders), "--out", str(two), "--format", "wds", "--append"]
    result = CliRunner().invoke(cli, [*args, "--shard-size", str(SIZE), "--quiet"])
    assert result.exit_code == 0, result.output
    for rel in ["wds/index.json", *(f"wds/{p.name}" for p in (one / "wds").glob("*.tar"))]:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_append_refuses_other_options_and_changed_sessions(
    folders: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    convert(folders[:2], out, append=False)
    for other in (WdsOptions(shard_size=SIZE + 1), WdsOptions(shard_size=SIZE, shard_count=2)):
        with pytest.raises(ConfigError, match="--append"):
            append_shards(Output(str(out)), [], other)
    # a session the set holds, with other samples (its bundle converted again)
    bundle = bundle_ref(folders[2])
    path = tmp_path / "changed.tar"
    with open(path, "wb") as f:
        write_session_samples(bundle, validate_bundle(bundle), NAMES[0], f)
    changed = describe_session_tar(Output(str(tmp_path)), NAMES[0], str(path))
    with pytest.raises(OutputError, match="already in the shard set with other samples"):
        append_shards(Output(str(out)), [changed], WdsOptions(shard_size=SIZE))
    assert read_index(Output(str(out))) is not None
