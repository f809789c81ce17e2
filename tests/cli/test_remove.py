"""``reacture-convert remove`` on the command line: it shows what a selection matches and asks
(no answer is never a yes), ``--dry-run`` changes no byte, ``--json`` says what was removed, a
second removal of the same session changes nothing; exit 2 for an unknown session, a bad
filter or no selection, 3 for an OUT that is no dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.curate import BLACK, NAMES, copy, files, invoke, live, make_base, write_inputs


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inputs = write_inputs(tmp_path_factory.mktemp("cli-remove-in"))
    return make_base(inputs, tmp_path_factory.mktemp("cli-remove") / "base", stats=False)


def test_it_shows_the_match_and_asks(base: Path, tmp_path: Path) -> None:
    out = copy(base, tmp_path / "out")
    where = ["--where", "blank_frames = n_frames", "--reason", "black frames only"]
    code, text = invoke("remove", out, *where, "--dry-run")
    assert code == 0 and f"would remove {BLACK}" in text and "--dry-run" in text, text
    assert files(out) == files(base)
    code, text = invoke("remove", out, *where)  # stdin closed: no answer
    assert code == 2 and "--yes" in text, text
    code, text = invoke("remove", out, *where, input="n\n")
    assert code == 0 and "nothing was removed" in text, text
    assert files(out) == files(base)
    code, text = invoke("remove", out, *where, input="y\n")
    assert code == 0 and f"will remove {BLACK}" in text and f"removed {BLACK}" in text, text
    assert live(out) == set(NAMES) - {BLACK}


def test_json_and_a_second_removal(base: Path, tmp_path: Path) -> None:
    out = copy(base, tmp_path / "out")
    code, text = invoke("remove", out, NAMES[0], NAMES[3], "--reason", "asked", "--yes", "--json")
    assert code == 0, text
    doc = json.loads(text)
    assert doc["removed"] == [NAMES[0], NAMES[3]] and doc["reason"] == "asked"
    assert doc["frames"] == 10 + 10 and doc["shards_rewritten"] >= 2
    after = files(out)
    code, text = invoke("remove", out, NAMES[0], "--reason", "again", "--yes", "--json")
    assert code == 0 and json.loads(text)["already_removed"] == [NAMES[0]], text
    assert json.loads(text)["removed"] == []
    assert files(out) == after


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["no_such_session", "--reason", "x", "--yes"], 2, "no_such_session"),
        (["--where", "nosuch = 1", "--reason", "x", "--yes"], 2, "no column 'nosuch'"),
        (["--where", "n_frames >", "--reason", "x", "--yes"], 2, "expected a column"),
        (["--reason", "x", "--yes"], 2, "--where"),
        ([NAMES[0], "--reason", " ", "--yes"], 2, "--reason"),
        ([NAMES[0], "--yes"], 2, "--reason"),
    ],
)
def test_bad_selections_are_usage_errors(base: Path, args: list[str], code: int, says: str) -> None:
    got, text = invoke("remove", base, *args)
    assert got == code and says in text, text
    assert live(base) == set(NAMES)


def test_an_output_that_is_no_dataset_exits_3(tmp_path: Path) -> None:
    code, text = invoke("remove", tmp_path, NAMES[0], "--reason", "x", "--yes", "--json")
    assert code == 3 and json.loads(text.splitlines()[-1])["error"]["code"] == 3, text
    assert list(tmp_path.iterdir()) == []  # not even a lock file
