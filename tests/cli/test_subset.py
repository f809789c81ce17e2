"""``reacture-convert subset``: a new, independent dataset of the sessions a selection names
(``--where``, ``--split``, names): their outputs byte for byte, their samples byte for byte and
in the set's order in new shards, its own catalog and card; ``verify NEW`` passes, OUT is not
changed, and NEW stands alone (a removal from OUT leaves it as it is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reacture_convert.output.storage import Output
from reacture_convert.read.sources import SOURCES
from reacture_convert.read.splits import split_of
from reacture_convert.read.verify import verify_dataset
from tests.helpers.curate import (
    BLACK,
    NAMES,
    copy,
    files,
    invoke,
    live,
    make_base,
    samples,
    session_of,
    write_inputs,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inputs = write_inputs(tmp_path_factory.mktemp("subset-in"))
    return make_base(inputs, tmp_path_factory.mktemp("subset") / "base", stats=False)


def test_a_subset_is_an_independent_dataset_of_the_matching_sessions(
    base: Path, tmp_path: Path
) -> None:
    before = files(base)
    new = tmp_path / "new"
    code, text = invoke("subset", base, new, "--where", "blank_frames != n_frames", "--json")
    assert code == 0, text
    chosen = set(NAMES) - {BLACK}
    assert set(json.loads(text)["sessions"]) == chosen
    assert files(base) == before  # OUT is only read
    assert live(new) == chosen
    assert verify_dataset(Output(str(new))) == (len(chosen), [])
    kept = {k: v for k, v in before.items() if k.split("/")[0] != "wds" and BLACK not in k}
    assert {k: v for k, v in files(new).items() if not k.startswith("wds/")} == kept
    assert samples(new) == [s for s in samples(base) if session_of(s) != BLACK]
    for source in ("zarr", "wds"):
        assert set(SOURCES[source](str(new)).sessions) == chosen
    assert BLACK not in (new / "README.md").read_text()
    out = copy(base, tmp_path / "out")
    code, text = invoke("subset", out, tmp_path / "new2", "--where", "blank_frames != n_frames")
    assert code == 0, text
    assert files(tmp_path / "new2") == files(new)  # the same selection: the same bytes
    code, text = invoke("remove", out, NAMES[0], "--reason", "x", "--yes")
    assert code == 0, text
    new = tmp_path / "new2"
    assert live(new) == chosen and verify_dataset(Output(str(new))) == (len(chosen), [])


def test_a_split_and_names(base: Path, tmp_path: Path) -> None:
    train = {s for s in NAMES if split_of(s) == "train"}
    code, text = invoke("subset", base, tmp_path / "train", "--split", "train", "--json")
    assert code == 0 and set(json.loads(text)["sessions"]) == train, text
    code, text = invoke("subset", base, tmp_path / "two", NAMES[1], NAMES[3])
    assert code == 0, text
    assert live(tmp_path / "two") == {NAMES[1], NAMES[3]}
    code, text = invoke("subset", base, tmp_path / "two", NAMES[0])
    assert code == 2 and "a dataset already" in text, text
    code, text = invoke("subset", base, base, NAMES[0])
    assert code == 2, text
    code, text = invoke("subset", base, tmp_path / "none", "--where", "n_frames > 1000")
    assert code == 3 and "no session matches" in text, text
