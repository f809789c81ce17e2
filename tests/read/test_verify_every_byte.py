"""``verify`` finds a flipped byte anywhere in a converted dataset, and names the file.

A small dataset (two tiny sessions, ``--format zarr,wds``) is converted once; then every file
under OUT (not the hidden ones: the lock) has one byte flipped at a time, at its first, middle
and last byte and at a few seeded random places, and plain ``verify`` (no sources) must report
a problem naming that file. The two licence lines of a dataset card are the user's to edit
(docs/output-layout.md) and are left out. Then a table of damage to what is derived (a frame's
``blank`` flag, ``blank_frames``, a session's sample count), each written back consistently so
that only the derived check can see it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reacture_convert.formats.card import LICENCE_NOTE
from reacture_convert.output.catalog import read_catalog, write_catalog
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import Problem, verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from tests.helpers.catalog import forget_digests

pytestmark = pytest.mark.zarr_compat  # verify reads every Zarr chunk back

A, B = "reacture_1795600000031", "reacture_1795600000032"
RANDOM_PLACES = 2


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sessions (4 and 3 frames, B's all blank) in Zarr and in shards."""
    from reacture_convert.testing.synth import BundleSpec, write_bundle

    root = tmp_path_factory.mktemp("every-byte")
    bundles = [
        write_bundle(root / "bundles" / p, BundleSpec(n_frames=n, seed=n, prefix=p, **kw))
        for p, n, kw in ((A, 4, {}), (B, 3, {"blank": True}))
    ]
    out = root / "out"
    options = ConvertOptions(formats=("zarr", "wds"))
    assert run_convert([str(b) for b in bundles], Output(str(out)), options, scheduler="sync").ok
    assert verify_dataset(Output(str(out))) == (2, [])
    return out


@pytest.fixture
def dataset(converted: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    return out


def files_of(out: Path) -> list[str]:
    """Every file under OUT but the hidden ones, relative to OUT."""
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    )


def licence_bytes(data: bytes) -> set[int]:
    """The byte positions of a card's two licence lines (the user's to edit)."""
    skip: set[int] = set()
    start = 0
    for line in data.split(b"\n"):
        text = line.decode("utf-8", "replace")
        if text.startswith("license:") or LICENCE_NOTE.match(text):
            skip.update(range(start, start + len(line)))
        start += len(line) + 1
    return skip


def places(rel: str, data: bytes) -> list[int]:
    n = len(data)
    rng = random.Random(f"{rel}:{n}")
    chosen = [0, n // 2, n - 1, *(rng.randrange(n) for _ in range(RANDOM_PLACES))]
    skip = licence_bytes(data) if rel.endswith(".md") else set()
    return sorted({p for p in chosen if p not in skip})


def names(problem: Problem, rel: str) -> bool:
    """The problem names the file ``rel`` (a shard by its name in ``wds/``, as index.json does)."""
    text = str(problem)
    return rel in text or (rel.startswith("wds/") and rel.removeprefix("wds/") in text)


def test_every_file_is_covered_and_its_flipped_bytes_are_found(dataset: Path) -> None:
    out = Output(str(dataset))
    files = files_of(dataset)
    kinds = {re.sub(r"reacture_\d+|/c/.*|-[0-9a-f]{8}-\d{6}", "*", f) for f in files}
    assert kinds == {
        "catalog.parquet",
        "README.md",
        "wds/README.md",
        "wds/index.json",
        "wds/reacture*.tar",
        "rows/*.parquet",
        "frames/*.parquet",
        "zarr/*.zarr/zarr.json",
        "zarr/*.zarr/frames/zarr.json",
        "zarr/*.zarr/frames*",
        "zarr/*.zarr/timestamps/zarr.json",
        "zarr/*.zarr/timestamps*",
    }, kinds
    missed: list[str] = []
    for rel in files:
        path = dataset / rel
        data = path.read_bytes()
        for at in places(rel, data):
            flipped = bytearray(data)
            flipped[at] ^= 0x01
            path.write_bytes(bytes(flipped))
            try:
                _, problems = verify_dataset(out)
            finally:
                path.write_bytes(data)
            if not any(names(p, rel) for p in problems):
                missed.append(f"{rel} byte {at}: {[str(p) for p in problems]}")
    assert not missed, "\n".join(missed)
    assert verify_dataset(out) == (2, [])  # every byte restored


# --- what is derived, written back consistently ------------------------------------------------
def set_blank_flag(out: Path) -> None:
    """Frame 1 of A (not all zeros) said to be blank in the alignment table (the Zarr reader
    then skips it); the catalog's digests are forgotten, so only the derived check sees it."""
    path = out / "frames" / f"{A}.parquet"
    table = pq.read_table(path)
    blank = table.column("blank").to_pylist()
    blank[1] = True
    i = table.schema.get_field_index("blank")
    table = table.set_column(i, table.schema.field(i), pa.array(blank, pa.bool_()))
    pq.write_table(table, path, compression="zstd")
    forget_digests(str(out))


def change_blank_frames(out: Path) -> None:
    target = Output(str(out))
    rows = read_catalog(target)
    write_catalog(target, [replace(e, blank_frames=1) if e.session == B else e for e in rows])


def change_session_samples(out: Path) -> None:
    """index.json says A has one sample less, its total too, and is written as the writer
    writes it: only the count of A's samples in the shards (and the catalog's frames) differ."""
    path = out / "wds" / "index.json"
    doc = json.loads(path.read_text())
    (entry,) = [s for s in doc["sessions"] if s["session"] == A]
    entry["samples"] -= 1
    doc["total_samples"] -= 1
    for shard in doc["shards"]:
        if A in shard["sessions"]:
            shard["samples"] -= 1
            break
    path.write_text(json.dumps(doc, indent=2) + "\n")


@pytest.mark.parametrize(
    ("damage", "session", "said"),
    [
        (set_blank_flag, A, f"frames/{A}.parquet: frame 1: blank is True, but the frame is not"),
        (change_blank_frames, B, "catalog blank_frames is 1, but 3 frames are all zeros"),
        (change_session_samples, A, "wds: index.json says 3 samples, the catalog says 4 frames"),
    ],
    ids=["blank-flag", "blank-frames", "session-samples"],
)
def test_a_derived_fact_that_disagrees_is_found(
    dataset: Path, damage: Callable[[Path], None], session: str, said: str
) -> None:
    damage(dataset)
    _, problems = verify_dataset(Output(str(dataset)))
    assert any(p.session == session and said in p.what for p in problems), problems


def test_a_catalog_of_an_older_version_still_verifies_and_says_what_it_could_not_check(
    dataset: Path,
) -> None:
    """A catalog.parquet written before the ``files`` column and the footer digest (the column
    dropped, written by plain pyarrow): it reads, every session is checked by decoding, and
    verify says what it could not check; damage is still found by decoding."""
    path = dataset / "catalog.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["files"]), path)
    notes: list[str] = []
    assert verify_dataset(Output(str(dataset)), notes=notes) == (2, [])
    assert any("2 session(s) have no digests of their files" in n for n in notes), notes
    assert any("catalog.parquet: written before its digest existed" in n for n in notes), notes
    set_blank_flag(dataset)
    _, problems = verify_dataset(Output(str(dataset)))
    assert any(p.session == A and "frame 1: blank is True" in p.what for p in problems)
