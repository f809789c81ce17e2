"""OUT is absent, empty or a reacture-convert dataset: a folder (or object-store prefix) that
holds other files is refused with exit 2 and a one-line message naming some of them, unless the
user says so (``--allow-other-files``, ``allow_other_files = true`` in a job file); then none
of the user's files is overwritten (a ``README.md`` of theirs stays, the card goes to
``DATASET_CARD.md``). A file where the folder should be is refused either way. Each state runs
on a local folder and on the local S3 server (``tests/helpers/s3.py``), through the CLI.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reacture_convert.cli import cli
from reacture_convert.errors import ConfigError
from reacture_convert.run.options import convert_options
from reacture_convert.testing.synth import BundleSpec, write_bundle

SPEC = BundleSpec(prefix="reacture_1795600000071", seed=71, n_frames=12)
USER_README = b"# My project\n\nNotes of mine, not a dataset card.\n"
OTHER = {
    "notes.txt": b"notes",
    "photo.png": b"\x89PNG not really",
    "data/table.csv": b"a,b\n1,2\n",
    "a.txt": b"a",
    "b.txt": b"b",
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("out-folder-inputs")
    write_bundle(root / SPEC.prefix, SPEC)
    return root


@dataclass
class Place:
    """An OUT location: a local folder or an S3 prefix, with what a test needs of it."""

    url: str
    cli_options: list[str]
    put: Callable[[str, bytes], None]  # a file at a path relative to OUT
    make_file: Callable[[], None]  # OUT itself a file
    files: Callable[[], dict[str, bytes]]  # every file under OUT (or OUT itself: key "")


def _local(tmp_path: Path) -> Place:
    root = tmp_path / "out"

    def put(rel: str, data: bytes) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    def files() -> dict[str, bytes]:
        if root.is_file():
            return {"": root.read_bytes()}
        return {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    return Place(str(root), [], put, lambda: root.write_bytes(b"a file"), files)


def _s3(moto_s3: Any) -> Place:
    prefix = f"datasets/{uuid.uuid4().hex[:8]}"
    fs = moto_s3.fs

    def files() -> dict[str, bytes]:
        fs.invalidate_cache()
        if fs.isfile(prefix):
            return {"": fs.cat_file(prefix)}
        return {p[len(prefix) + 1 :]: fs.cat_file(p) for p in sorted(fs.find(prefix))}

    return Place(
        f"s3://{prefix}",
        moto_s3.cli_options,
        lambda rel, data: fs.pipe_file(f"{prefix}/{rel}", data),
        lambda: fs.pipe_file(prefix, b"a file"),
        files,
    )


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "local":
        yield _local(tmp_path)
    else:
        yield _s3(request.getfixturevalue("moto_s3"))


def convert(place: Place, bundles: Path, *flags: str) -> Result:
    args = ["convert", str(bundles), "--out", place.url, "--scheduler", "sync", "-q"]
    return CliRunner().invoke(cli, [*args, *flags, *place.cli_options])


# state -> how to make it; expected exit without the flag, with it
STATES: dict[str, tuple[Callable[[Place, Path], None], int, int]] = {
    "absent": (lambda p, b: None, 0, 0),
    "empty": (lambda p, b: Path(p.url).mkdir(), 0, 0),
    "dataset": (lambda p, b: _converted(p, b), 0, 0),
    "user readme": (lambda p, b: p.put("README.md", USER_README), 2, 0),
    "other files": (lambda p, b: [p.put(k, v) for k, v in OTHER.items()] and None, 2, 0),
    "a file": (lambda p, b: p.make_file(), 2, 2),
}


def is_card(text: str) -> bool:
    """A dataset card of ours (its YAML header, and the line saying who wrote it)."""
    return text.startswith("---") and "converted by reacture-convert" in text


def _converted(place: Place, bundles: Path) -> None:
    result = convert(place, bundles)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("flag", [False, True], ids=["no flag", "--allow-other-files"])
@pytest.mark.parametrize("state", list(STATES))
def test_out_is_absent_empty_or_a_dataset_unless_the_user_says_so(
    place: Place, bundles: Path, state: str, flag: bool
) -> None:
    make, refused_code, allowed_code = STATES[state]
    if state == "empty" and place.url.startswith("s3://"):
        pytest.skip("an object store has no empty folders: an empty prefix is an absent one")
    make(place, bundles)
    before = place.files()
    result = convert(place, bundles, *(["--allow-other-files"] if flag else []))
    expected = allowed_code if flag else refused_code
    assert result.exit_code == expected, result.output
    after = place.files()
    if expected == 2:
        assert after == before  # nothing written, not even the lock
        (line,) = [s for s in result.output.splitlines() if s.startswith("Error:")]
        if state == "a file":
            assert "is a file, not a folder" in line
        else:
            named = "README.md" if state == "user readme" else "a.txt, b.txt, data"
            assert "--allow-other-files" in line and named in line
        return
    assert {k: after[k] for k in before if not _ours(k)} == {
        k: v for k, v in before.items() if not _ours(k)
    }  # every user file as it was
    assert "catalog.parquet" in after
    card = "DATASET_CARD.md" if state == "user readme" else "README.md"
    assert is_card(after[card].decode())
    if state == "user readme":
        assert after["README.md"] == USER_README


def _ours(rel: str) -> bool:
    return rel.split("/", 1)[0] in {"catalog.parquet", "README.md", "zarr", "rows", "frames"}


def test_the_refusal_names_a_few_files_and_what_to_do(tmp_path: Path, bundles: Path) -> None:
    place = _local(tmp_path)
    for k, v in OTHER.items():
        place.put(k, v)
    result = convert(place, bundles)
    assert result.exit_code == 2
    (line,) = [s for s in result.output.splitlines() if s.startswith("Error:")]
    assert "a.txt, b.txt, data and 2 more" in line
    assert "--allow-other-files" in line and "allow_other_files = true" in line


def test_a_job_file_key_allows_other_files(tmp_path: Path, bundles: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    job = tmp_path / "job.toml"
    base = f'[job]\ninputs = ["{bundles}"]\nout = "{out}"\nscheduler = "sync"\n'
    job.write_text(base)
    refused = CliRunner().invoke(cli, ["run", str(job), "-q"])
    assert refused.exit_code == 2, refused.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    job.write_text(base + "allow_other_files = true\n")
    allowed = CliRunner().invoke(cli, ["run", str(job), "-q"])
    assert allowed.exit_code == 0, allowed.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "catalog.parquet").is_file()


def test_the_flag_overrides_a_job_file(tmp_path: Path, bundles: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\ninputs = ["{bundles}"]\nout = "{out}"\nscheduler = "sync"\n')
    result = CliRunner().invoke(cli, ["run", str(job), "-q", "--allow-other-files"])
    assert result.exit_code == 0, result.output


def test_watch_refuses_a_folder_with_other_files_too(tmp_path: Path, bundles: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_bytes(USER_README)
    args = ["watch", str(bundles), "--out", str(out), "--once", "--settle", "0"]
    args += ["--scheduler", "sync", "-q"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2, refused.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
    allowed = CliRunner().invoke(cli, [*args, "--allow-other-files"])
    assert allowed.exit_code == 0, allowed.output
    assert (out / "README.md").read_bytes() == USER_README
    assert is_card((out / "DATASET_CARD.md").read_text())


def test_a_card_of_ours_is_rewritten_and_the_one_set_aside_goes(
    tmp_path: Path, bundles: Path
) -> None:
    """The user's README.md removed later: the card is README.md again, DATASET_CARD.md gone."""
    place = _local(tmp_path)
    place.put("README.md", USER_README)
    assert convert(place, bundles, "--allow-other-files").exit_code == 0
    (tmp_path / "out" / "README.md").unlink()
    assert convert(place, bundles).exit_code == 0
    files = place.files()
    assert is_card(files["README.md"].decode()) and "DATASET_CARD.md" not in files


def test_the_job_key_is_a_flag() -> None:
    with pytest.raises(ConfigError, match=r"\[job\] allow_other_files: must be true or false"):
        convert_options({"allow_other_files": "yes"})
    assert convert_options({"allow_other_files": True}).allow_other_files


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        ({}, "absent"),
        ({".lock": b""}, "empty"),
        ({".staging/run/x": b"", "catalog.parquet.tmp-1a2b": b""}, "empty"),
        ({"catalog.parquet": b"", "notes.txt": b""}, "dataset"),
        ({".catalog/000000000001.arrow": b""}, "dataset"),
        # a run killed before its first catalog row: its committed sessions are its own
        ({"zarr/reacture_1.zarr/zarr.json": b"{}", "rows/reacture_1.parquet": b""}, "empty"),
        ({"wds/x-1a2b3c4d-000000.tar": b"", "wds/index.json": b"{}"}, "empty"),
        ({"frames/holiday.png": b""}, "other"),  # a folder of that name, but the user's
        ({"README.md": USER_README}, "other"),
        ({"DATASET_CARD.md": b"my own"}, "other"),
    ],
)
def test_what_out_holds(tmp_path: Path, files: dict[str, bytes], kind: str) -> None:
    from reacture_convert.output.claim import out_state
    from reacture_convert.output.storage import Output

    place = _local(tmp_path)
    for rel, data in files.items():
        place.put(rel, data)
    assert out_state(Output(place.url)).kind == kind
