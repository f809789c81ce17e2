"""`verify`: a clean dataset verifies; every kind of damage to the outputs or the sources is
found, exits 1, and names the session and what differs."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reacture_convert.cli import cli
from reacture_convert.errors import OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.verify import MAX_PROBLEMS, verify_dataset
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.webdataset import WdsOptions
from reacture_convert.writers.zarr import ZarrOptions
from tests.helpers.catalog import forget_digests

pytestmark = pytest.mark.zarr_compat  # verify reads every Zarr chunk back

GOOD, OTHER = "reacture_1795600000001", "reacture_1795600000002"
FRAME_BYTES = 128 * 128 * 3
CHUNK = 8


@pytest.fixture
def dataset(make_bundle: Callable[..., Path], tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """Two sessions (30 and 12 frames) converted uncompressed, 8 frames a chunk, so a test can
    reach a frame's bytes in a chunk file."""
    folders = {
        GOOD: make_bundle("good", n_frames=30, seed=1, prefix=GOOD),
        OTHER: make_bundle("other", n_frames=12, seed=2, prefix=OTHER),
    }
    out = tmp_path / "out"
    options = ConvertOptions(zarr=ZarrOptions(chunk_frames=CHUNK, codec="none"))
    assert run_convert(
        [str(f) for f in folders.values()], Output(str(out)), options, scheduler="sync"
    ).ok
    return out, folders


def cli_verify(out: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["verify", str(out), *args])


def test_clean_dataset_verifies(dataset: tuple[Path, dict[str, Path]]) -> None:
    out, _ = dataset
    assert verify_dataset(Output(str(out))) == (2, [])
    assert verify_dataset(Output(str(out)), sources=True) == (2, [])
    for args in ([], ["--sources"]):
        result = cli_verify(out, *args)
        assert result.exit_code == 0, result.output
        assert "2 session(s) checked" in result.output and "all exact" in result.output
    doc = json.loads(cli_verify(out, "--json").output)
    assert doc == {"ok": True, "sessions_checked": 2, "shards_checked": None, "problems": []}


# --- damage to the outputs ----------------------------------------------------------------------
def flip_frame_byte(out: Path) -> None:
    """Frame 9 lives in the second chunk (frames 8..15), raw bytes with codec none."""
    chunk = out / "zarr" / f"{GOOD}.zarr" / "frames" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    assert len(data) == CHUNK * FRAME_BYTES
    data[(9 - CHUNK) * FRAME_BYTES + 777] ^= 0x01
    chunk.write_bytes(bytes(data))


def edit_parquet(path: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def alter_frame_sha(out: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> None:
        rows[4]["frame_sha256"] = "0" * 64

    edit_parquet(out / "frames" / f"{GOOD}.parquet", change)


def alter_frame_timestamp(out: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> None:
        rows[2]["timestamp_ms"] += 1.0

    edit_parquet(out / "frames" / f"{GOOD}.parquet", change)


def point_frame_at_wrong_row(out: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> None:
        rows[3]["row_index"] = rows[4]["row_index"]

    edit_parquet(out / "frames" / f"{GOOD}.parquet", change)


def drop_a_row(out: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> None:
        del rows[-1]

    edit_parquet(out / "rows" / f"{GOOD}.parquet", change)


def swap_rows_files(out: Path) -> None:
    a, b = out / "rows" / f"{GOOD}.parquet", out / "rows" / f"{OTHER}.parquet"
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def delete(rel: str) -> Callable[[Path], None]:
    def remove(out: Path) -> None:
        target = out / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return remove


def replace_zarr_with_other_session(out: Path) -> None:
    good = out / "zarr" / f"{GOOD}.zarr"
    shutil.rmtree(good)
    shutil.copytree(out / "zarr" / f"{OTHER}.zarr", good)


ZARR = f"zarr/{GOOD}.zarr"
# (damage, sessions with problems, named with the catalog's digests, named without them)
DAMAGE = [
    (flip_frame_byte, [GOOD], f"{ZARR}/frames/c/1/0/0/0: changed", "frame 9"),
    (alter_frame_sha, [GOOD], f"frames/{GOOD}.parquet: ", "frame 4"),
    (alter_frame_timestamp, [GOOD], f"frames/{GOOD}.parquet: ", "timestamps differ"),
    (point_frame_at_wrong_row, [GOOD], f"frames/{GOOD}.parquet: ", "frame 3"),
    (drop_a_row, [GOOD], f"rows/{GOOD}.parquet: ", "rows"),
    (swap_rows_files, [GOOD, OTHER], f"rows/{GOOD}.parquet: ", "rows"),
    (
        delete(f"rows/{GOOD}.parquet"),
        [GOOD],
        f"rows/{GOOD}.parquet: missing",
        f"rows/{GOOD}.parquet",
    ),
    (
        delete(f"frames/{GOOD}.parquet"),
        [GOOD],
        f"frames/{GOOD}.parquet: missing",
        f"frames/{GOOD}.parquet",
    ),
    (delete(ZARR), [GOOD], f"{ZARR}/zarr.json: missing", f"{ZARR}: cannot be opened"),
    (
        delete(f"{ZARR}/timestamps"),
        [GOOD],
        f"{ZARR}/timestamps/zarr.json: missing",
        f"{ZARR}: cannot be opened",
    ),
    (
        replace_zarr_with_other_session,
        [GOOD],
        f"{ZARR}/frames/zarr.json: ",
        "zarr frames (12, 128, 128, 3)",
    ),
]


@pytest.mark.parametrize("digests", [True, False], ids=["digests", "no-digests"])
@pytest.mark.parametrize(
    ("damage", "sessions", "named", "decoded"),
    DAMAGE,
    ids=[
        "zarr-frame-byte-flipped",
        "frames-table-sha-altered",
        "frames-table-timestamp-altered",
        "frame-points-at-another-row",
        "rows-table-short",
        "rows-files-swapped",
        "rows-parquet-deleted",
        "frames-parquet-deleted",
        "zarr-group-deleted",
        "zarr-timestamps-deleted",
        "zarr-group-of-another-session",
    ],
)
def test_damaged_output_is_found_and_named(
    dataset: tuple[Path, dict[str, Path]],
    damage: Callable[[Path], None],
    sessions: list[str],
    named: str,
    decoded: str,
    digests: bool,
) -> None:
    """With the digests the catalog records, the damaged file is named with the kind of
    damage before anything is decoded; a catalog without them (an older version's) still finds
    the damage by decoding."""
    out, _ = dataset
    if not digests:
        forget_digests(str(out))
    what = named if digests else decoded
    damage(out)
    checked, problems = verify_dataset(Output(str(out)))
    assert checked == 2
    assert sorted({p.session for p in problems}) == sessions
    assert any(what in p.what for p in problems if p.session == GOOD), problems
    result = cli_verify(out)
    assert result.exit_code == 1, result.output
    assert f"MISMATCH {GOOD}: " in result.output and what in result.output
    doc = json.loads(cli_verify(out, "--json").output)
    assert doc["ok"] is False and {p["session"] for p in doc["problems"]} == set(sessions)


def test_damage_to_every_frame_is_named_once_not_per_frame(
    dataset: tuple[Path, dict[str, Path]],
) -> None:
    out, _ = dataset
    forget_digests(str(out))  # (with them, the one changed file is named)

    def change(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            r["frame_sha256"] = "f" * 64

    edit_parquet(out / "frames" / f"{GOOD}.parquet", change)
    _, problems = verify_dataset(Output(str(out)))
    assert len(problems) == MAX_PROBLEMS + 1
    assert [p.what.split(":")[0] for p in problems[:3]] == ["frame 0", "frame 1", "frame 2"]
    assert "stopped" in problems[-1].what


# --- damage to the sources (--sources) -----------------------------------------------------------
def flip_source_frame(folder: Path) -> None:
    (path,) = folder.glob("*_frames.npy")
    data = bytearray(path.read_bytes())
    data[129 + 20 * FRAME_BYTES + 5] ^= 0x80
    path.write_bytes(bytes(data))


def change_source_row(folder: Path) -> None:
    (path,) = folder.glob("*_data.jsonl")
    lines = path.read_text().split("\n")
    row = json.loads(lines[5])
    row["robot"]["position"]["x"] = 123.25
    lines[5] = json.dumps(row, separators=(",", ":"))
    path.write_text("\n".join(lines))


def change_source_readme(folder: Path) -> None:
    (path,) = folder.glob("*_README.md")
    path.write_text(path.read_text() + "edited\n")


def move_source_away(folder: Path) -> None:
    shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (flip_source_frame, "zarr frames 0..29 differ from the source"),
        (change_source_row, "row 5 (line 6)"),
        (change_source_readme, "source files changed"),
        (move_source_away, "not found"),
    ],
    ids=["frame-byte", "jsonl-row", "readme", "bundle-gone"],
)
def test_sources_finds_a_changed_source(
    dataset: tuple[Path, dict[str, Path]],
    change: Callable[[Path], None],
    what: str,
) -> None:
    out, folders = dataset
    change(folders[GOOD])
    assert verify_dataset(Output(str(out))) == (2, [])  # the outputs themselves are intact
    checked, problems = verify_dataset(Output(str(out)), sources=True)
    assert checked == 2 and {p.session for p in problems} == {GOOD}
    assert any(what in p.what for p in problems), problems
    if change is not move_source_away:
        assert any("source files changed" in p.what for p in problems)
    result = cli_verify(out, "--sources")
    assert result.exit_code == 1 and f"MISMATCH {GOOD}: " in result.output


# --- what is not a dataset ----------------------------------------------------------------------
def test_a_folder_without_catalog_does_not_pass(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no catalog.parquet"):
        verify_dataset(Output(str(tmp_path / "typo")))
    result = cli_verify(tmp_path / "typo")  # not there: a missing input (exit 1)
    assert result.exit_code == 1 and "no such file, folder or URL" in result.output
    (tmp_path / "empty").mkdir()
    result = cli_verify(tmp_path / "empty")  # there, but not a dataset
    assert result.exit_code == 3 and "no catalog.parquet" in result.output


def test_rejected_and_conflict_rows_are_not_verified(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
) -> None:
    bad = make_bundle("bad", n_frames=5, prefix="reacture_1795600000009")
    (frames,) = bad.glob("*_frames.npy")
    frames.write_bytes(frames.read_bytes()[:-1])
    out = tmp_path / "out"
    assert not run_convert([str(bad)], Output(str(out)), scheduler="sync").ok
    assert verify_dataset(Output(str(out)), sources=True) == (0, [])
    assert cli_verify(out).exit_code == 0


# --- damage to the shards and their index -------------------------------------------------------
@pytest.fixture
def shards(make_bundle: Callable[..., Path], tmp_path: Path) -> Path:
    """Two sessions (30 and 12 frames) converted to Zarr and to shards of about 10 samples."""
    folders = [
        make_bundle("good", n_frames=30, seed=1, prefix=GOOD),
        make_bundle("other", n_frames=12, seed=2, prefix=OTHER),
    ]
    out = tmp_path / "out"
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_size=600_000))
    assert run_convert([str(f) for f in folders], Output(str(out)), options, scheduler="sync").ok
    assert len(list((out / "wds").glob("*.tar"))) >= 4
    return out


def shard(out: Path, k: int = 1) -> Path:
    index = json.loads((out / "wds" / "index.json").read_text())
    return out / "wds" / index["shards"][k]["url"]


def flip_shard_byte(out: Path) -> None:
    path = shard(out)
    data = bytearray(path.read_bytes())
    data[3000] ^= 0x01
    path.write_bytes(bytes(data))


def truncate_shard(out: Path) -> None:
    path = shard(out)
    path.write_bytes(path.read_bytes()[:-20_000])


def remove_a_sample(out: Path) -> None:
    """Write the shard again (as tarfile does) without its second sample."""
    path = shard(out)
    with tarfile.open(path) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for m, data in members[:2] + members[4:]:
            tf.addfile(m, io.BytesIO(data))


def change_index_count(out: Path) -> None:
    path = out / "wds" / "index.json"
    doc = json.loads(path.read_text())
    doc["shards"][1]["samples"] += 1
    path.write_text(json.dumps(doc))


SHARD_DAMAGE = [
    (flip_shard_byte, "sha256 differs from index.json"),
    (lambda out: shard(out).unlink(), "is missing"),
    (truncate_shard, "(truncated or grown)"),
    (remove_a_sample, "a sample was removed or added"),
    (change_index_count, "its shards list"),
]


@pytest.mark.parametrize(
    ("damage", "what"),
    SHARD_DAMAGE,
    ids=["byte-flipped", "shard-missing", "shard-truncated", "sample-removed", "index-count"],
)
def test_damaged_shards_are_found_and_named(
    shards: Path, damage: Callable[[Path], None], what: str
) -> None:
    assert verify_dataset(Output(str(shards))) == (2, [])
    damage(shards)
    _, problems = verify_dataset(Output(str(shards)))
    assert any(what in p.what for p in problems), problems
    result = cli_verify(shards)
    assert result.exit_code == 1, result.output
    assert "MISMATCH wds: " in result.output and what in result.output


Runs = list[list[int]]
RUN_DAMAGE: dict[str, tuple[Callable[[Runs], Runs], str]] = {
    "end-moved": (lambda r: [r[0], [r[1][0] - 512, r[1][1] - 512]], "run 1 at tar byte"),
    "start-moved": (lambda r: [[512, 512], *r[1:]], "run 0 at tar byte 512, not 0"),
    "offsets-differ": (lambda r: [r[0], [r[1][0] + 1, r[1][1]]], "two different offsets"),
    "end-missing": (lambda r: r[:1], "1 runs listed, not 2"),
}


@pytest.mark.parametrize(("move", "what"), RUN_DAMAGE.values(), ids=RUN_DAMAGE.keys())
def test_a_plain_shards_moved_run_is_named(
    shards: Path, move: Callable[[Runs], Runs], what: str
) -> None:
    path = shards / "wds" / "index.json"
    doc = json.loads(path.read_text())
    doc["shards"][1]["runs"] = move(doc["shards"][1]["runs"])
    path.write_text(json.dumps(doc))
    _, problems = verify_dataset(Output(str(shards)))
    about_runs = [p.what for p in problems if "runs" in p.what]
    assert about_runs and all(shard(shards).name in w and what in w for w in about_runs), problems


def lossy_webp(frame: Any, encoding: str) -> bytes:
    """A writer that is not lossless: the WebP of the frame with one pixel changed."""
    from reacture_convert.formats.wds.encodings import encode_image

    changed = frame.copy()
    changed[5, 7, 1] ^= 0x10
    return encode_image(changed, encoding)


@pytest.mark.parametrize(
    ("formats", "sources"),
    [(("wds",), True), (("zarr", "wds"), False), (("zarr", "wds"), True)],
    ids=["wds-against-sources", "against-alignment-table", "zarr-wds-against-sources"],
)
def test_webp_pictures_are_proved_exact(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    formats: tuple[str, ...],
    sources: bool,
) -> None:
    """Shards of lossless WebP pictures verify (every picture decoded and its pixels' sha256
    compared with the source frame's); a writer that changes one pixel is caught and named,
    against the sources and against the alignment table."""
    folders = [
        make_bundle("good", n_frames=30, seed=1, prefix=GOOD),
        make_bundle("other", n_frames=12, seed=2, prefix=OTHER),
    ]
    options = ConvertOptions(formats=formats, wds=WdsOptions(encoding="webp"))
    exact, lossy = tmp_path / "exact", tmp_path / "lossy"
    assert run_convert([str(f) for f in folders], Output(str(exact)), options, scheduler="sync").ok
    assert json.loads((exact / "wds" / "index.json").read_text())["encoding"] == "webp"
    assert verify_dataset(Output(str(exact)), sources=sources)[1] == []
    import reacture_convert.writers.webdataset.sample_sink as sink

    monkeypatch.setattr(sink, "encode_image", lossy_webp)
    assert run_convert([str(f) for f in folders], Output(str(lossy)), options, scheduler="sync").ok
    _, problems = verify_dataset(Output(str(lossy)), sources=sources)
    differ = [p for p in problems if "picture's pixels differ from frame" in p.what]
    assert {p.session for p in differ} == {GOOD, OTHER}, problems
    assert any(f"sample '{GOOD}/000003'" in p.what and "frame 000003" in p.what for p in differ)
    result = cli_verify(lossy, *(["--sources"] if sources else []))
    assert result.exit_code == 1 and "pixels differ" in result.output, result.output


def test_a_picture_that_does_not_decode_is_named(shards: Path) -> None:
    """A picture member whose bytes are not an NPY frame (the index rewritten to match, so
    only the decode can tell)."""
    path = shard(shards, 0)
    with tarfile.open(path) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
    m, data = members[1]
    assert m.name.endswith(".npy")
    members[1] = (m, b"\x93NUMPY" + b"\x00" * (len(data) - 6))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for m, data in members:
            tf.addfile(m, io.BytesIO(data))
    _, problems = verify_dataset(Output(str(shards)))
    assert any(".npy member does not decode" in p.what for p in problems), problems
