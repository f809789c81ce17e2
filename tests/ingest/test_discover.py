"""discover: folders, files, archives, globs and URLs become BundleRefs; the rest, findings."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reacture_convert.findings import CODES
from reacture_convert.ingest.bundle import ROLES, BundleRef, open_file
from reacture_convert.ingest.discover import Discovery, discover, split_role
from tests.helpers.real import REAL

REAL_PREFIXES = {"reacture_1795637238001", "reacture_1795637693305", "reacture_1795637148842"}
ARCHIVE_KINDS = ["zip", "tar", "tar.gz", "tgz"]
MakeBundle = Callable[..., Path]


def codes(found: Discovery) -> list[tuple[str, str]]:
    return sorted((f.code, f.file) for f in found.findings)


def pack(path: Path, files: Mapping[str, Path | bytes]) -> Path:
    """An archive (kind from the name) holding ``files`` under the given member names."""
    items = {arc: src.read_bytes() if isinstance(src, Path) else src for arc, src in files.items()}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for arc, data in items.items():
                zf.writestr(arc, data)
    else:
        gz = path.name.endswith((".gz", ".tgz"))
        with tarfile.open(path, "w:gz" if gz else "w") as tf:
            for arc, data in items.items():
                info = tarfile.TarInfo(arc)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def bundle_files(folder: Path, under: str = "") -> dict[str, Path]:
    return {f"{under}{p.name}": p for p in sorted(folder.iterdir())}


def assert_complete(bundle: BundleRef, prefix: str, source: str) -> None:
    assert (bundle.prefix, bundle.source, bundle.missing) == (prefix, source, ())
    assert list(bundle.files) == list(ROLES)


# --- real files ---------------------------------------------------------------------------


def test_real_fixture_tree_gives_every_real_bundle() -> None:
    found = discover([str(REAL)])
    assert {b.prefix for b in found.bundles} == REAL_PREFIXES
    for b in found.bundles:
        assert_complete(b, b.prefix, str(next(REAL.rglob(f"{b.prefix}_metadata.json")).parent))
        for role, ref in b.files.items():
            assert ref.url == str(REAL.joinpath(b.source, f"{b.prefix}_{role}"))
            assert ref.size == os.path.getsize(ref.url) and ref.member is None
    assert codes(found) == [("STRAY_FILE", str(REAL / "README.md"))]


def test_each_real_bundle_folder(real_bundle: Path) -> None:
    found = discover([str(real_bundle)])
    [bundle] = found.bundles
    assert_complete(bundle, real_bundle.name, str(real_bundle))
    assert found.findings == ()


# --- folders ------------------------------------------------------------------------------


def test_one_folder_one_bundle(make_bundle: MakeBundle) -> None:
    folder = make_bundle(prefix="reacture_1")
    found = discover([str(folder)])
    assert len(found.bundles) == 1
    assert_complete(found.bundles[0], "reacture_1", str(folder))
    assert found.findings == ()


def test_relative_path_becomes_absolute(
    make_bundle: MakeBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_bundle(prefix="reacture_1")
    monkeypatch.chdir(folder.parent)
    [bundle] = discover([folder.name]).bundles
    assert bundle.source == str(folder)
    assert bundle.files["frames.npy"].url == str(folder / "reacture_1_frames.npy")


def test_tree_at_several_depths_skips_hidden_outputs_and_links(
    tmp_path: Path, make_bundle: MakeBundle
) -> None:
    tree = tmp_path / "tree"
    src = make_bundle(prefix="reacture_9", n_frames=2)
    depths = {"": "reacture_1", "a": "reacture_2", "a/b/c": "reacture_3", "d/e": "reacture_4"}
    for sub, prefix in depths.items():
        (tree / sub).mkdir(parents=True, exist_ok=True)
        for p in src.iterdir():
            (tree / sub / p.name.replace("reacture_9", prefix)).write_bytes(p.read_bytes())
    never = {
        ".git/objects": "reacture_5",
        "out": "reacture_6",
        "out/zarr/s.zarr": "reacture_7",
        "x.zarr": "reacture_8",
        "__MACOSX": "reacture_10",
    }
    for sub, prefix in never.items():
        (tree / sub).mkdir(parents=True, exist_ok=True)
        (tree / sub / f"{prefix}_frames.npy").write_bytes(b"x")
    (tree / "out" / "catalog.parquet").write_bytes(b"PAR1")
    (tree / ".DS_Store").write_bytes(b"junk")
    (tree / "a" / "._reacture_2_frames.npy").write_bytes(b"apple double")
    (tree / "linked_dir").symlink_to(src, target_is_directory=True)
    (tree / "a" / "reacture_11_frames.npy").symlink_to(src / "reacture_9_frames.npy")

    found = discover([str(tree)])
    got = {(b.source, b.prefix) for b in found.bundles}
    assert got == {(str(tree / sub) if sub else str(tree), p) for sub, p in depths.items()}
    assert all(b.missing == () for b in found.bundles)
    assert codes(found) == [
        ("INPUT_IS_DATASET", str(tree / "out")),  # skipped, and said so
        ("INPUT_LINK_SKIPPED", str(tree / "a" / "reacture_11_frames.npy")),
        ("INPUT_LINK_SKIPPED", str(tree / "linked_dir")),
    ]


def test_a_link_given_as_input_is_followed(tmp_path: Path, make_bundle: MakeBundle) -> None:
    src = make_bundle(prefix="reacture_1")
    link = tmp_path / "link"
    link.symlink_to(src, target_is_directory=True)
    [bundle] = discover([str(link)]).bundles
    assert_complete(bundle, "reacture_1", str(link))


def test_bundle_missing_its_readme(make_bundle: MakeBundle) -> None:
    folder = make_bundle(prefix="reacture_1")
    (folder / "reacture_1_README.md").unlink()
    found = discover([str(folder)])
    [bundle] = found.bundles
    assert bundle.missing == ("README.md",)
    assert found.findings == ()  # validation reports BUNDLE_MISSING_FILE from .missing


def test_stray_files_are_reported(make_bundle: MakeBundle) -> None:
    folder = make_bundle(prefix="reacture_1")
    for name in ("notes.txt", "frames.npy", "_frames.npy", "reacture_1_frames.npy.bak"):
        (folder / name).write_bytes(b"?")
    found = discover([str(folder)])
    assert [b.prefix for b in found.bundles] == ["reacture_1"]
    assert codes(found) == sorted(
        ("STRAY_FILE", str(folder / n))
        for n in ("notes.txt", "frames.npy", "_frames.npy", "reacture_1_frames.npy.bak")
    )


def test_missing_input_is_reported_and_the_rest_continues(
    tmp_path: Path, make_bundle: MakeBundle
) -> None:
    folder = make_bundle(prefix="reacture_1")
    missing = str(tmp_path / "nope")
    found = discover([missing, str(folder), str(tmp_path / "none*.zip")])
    assert [b.prefix for b in found.bundles] == ["reacture_1"]
    assert codes(found) == sorted(
        [("INPUT_NOT_FOUND", missing), ("INPUT_NOT_FOUND", str(tmp_path / "none*.zip"))]
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("reacture_1_frames.npy", ("reacture_1", "frames.npy")),
        ("reacture_1_timestamps.npy", ("reacture_1", "timestamps.npy")),
        ("a_b_data.jsonl", ("a_b", "data.jsonl")),
        ("x_README.md", ("x", "README.md")),
        ("x_readme.md", None),
        ("_frames.npy", None),
        ("frames.npy", None),
        ("x_frames.npy.bak", None),
    ],
    ids=lambda v: str(v),
)
def test_split_role(name: str, expected: tuple[str, str] | None) -> None:
    assert split_role(name) == expected


# --- archives -----------------------------------------------------------------------------


@pytest.fixture
def two_archives(
    tmp_path: Path, make_bundle: MakeBundle, request: pytest.FixtureRequest
) -> tuple[Path, Path]:
    """``one.<kind>``: one bundle at the root; ``many.<kind>``: bundles in sub-folders, a stray
    file and a nested archive."""
    kind: str = request.param
    b1 = make_bundle(prefix="reacture_1", n_frames=3)
    b2 = make_bundle(prefix="reacture_2", n_frames=2, seed=2)
    b3 = make_bundle(prefix="reacture_3", n_frames=4, seed=3)
    (tmp_path / "arch").mkdir()
    one = pack(tmp_path / "arch" / f"one.{kind}", bundle_files(b1))
    many = pack(
        tmp_path / "arch" / f"many.{kind}",
        {
            **bundle_files(b2, "batch/"),
            **bundle_files(b3, "batch/deep/er/"),
            **bundle_files(b1, "batch/copy/"),
            "batch/notes.txt": b"hello",
            "batch/inner.zip": b"PK\x05\x06" + bytes(18),
        },
    )
    return one, many


@pytest.mark.parametrize("two_archives", ARCHIVE_KINDS, indirect=True)
def test_archives_hold_bundles_at_root_and_nested(
    two_archives: tuple[Path, Path], make_bundle: MakeBundle
) -> None:
    one, many = two_archives
    found = discover([str(one), str(many)])
    got = [(b.source, b.prefix) for b in found.bundles]
    assert got == sorted(
        [
            (str(many) + "!batch", "reacture_2"),
            (str(many) + "!batch/deep/er", "reacture_3"),
            (str(many) + "!batch/copy", "reacture_1"),
            (str(one), "reacture_1"),
        ]
    )
    for b in found.bundles:
        assert b.missing == ()
        for role, ref in b.files.items():
            assert ref.url == b.source.split("!")[0]
            inner = b.source.partition("!")[2]
            assert ref.member == (f"{inner}/" if inner else "") + f"{b.prefix}_{role}"
    assert codes(found) == [
        ("ARCHIVE_NESTED", f"{many}!batch/inner.zip"),
        ("STRAY_FILE", f"{many}!batch/notes.txt"),
    ]


@pytest.mark.parametrize("two_archives", ARCHIVE_KINDS, indirect=True)
def test_open_file_reads_back_exact_member_bytes(
    two_archives: tuple[Path, Path], tmp_path: Path
) -> None:
    found = discover([str(p) for p in two_archives])
    assert len(found.bundles) == 4
    sources = {
        "reacture_1": tmp_path / "bundles" / "b0",
        "reacture_2": tmp_path / "bundles" / "b1",
        "reacture_3": tmp_path / "bundles" / "b2",
    }
    for b in found.bundles:
        for role, ref in b.files.items():
            expected = (sources[b.prefix] / f"{b.prefix}_{role}").read_bytes()
            with open_file(ref) as f:
                assert f.read() == expected
            assert ref.size == len(expected)


def test_archives_found_in_folders_are_opened_and_refusals_reported(
    tmp_path: Path, make_bundle: MakeBundle
) -> None:
    b1 = make_bundle(prefix="reacture_1", n_frames=2)
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    zpath = pack(
        inbox / "sub" / "x.zip",
        {**bundle_files(b1, "s/"), "../evil": b"x", "__MACOSX/s/._reacture_1_frames.npy": b"junk"},
    )
    (inbox / "broken.tgz").write_bytes(b"not gzip at all")
    found = discover([str(inbox)])
    [bundle] = found.bundles
    assert (bundle.source, bundle.missing) == (f"{zpath}!s", ())
    assert codes(found) == [
        ("ARCHIVE_UNREADABLE", str(inbox / "broken.tgz")),
        ("ARCHIVE_UNSAFE_PATH", f"{zpath}!../evil"),
    ]


def test_dot_slash_tar_members_open(tmp_path: Path, make_bundle: MakeBundle) -> None:
    """``tar -C folder .`` names members ``./x``: the bundle is at the archive root."""
    b1 = make_bundle(prefix="reacture_1", n_frames=2)
    path = tmp_path / "dot.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(b1, arcname=".")
    [bundle] = discover([str(path)]).bundles
    assert_complete(bundle, "reacture_1", str(path))
    with open_file(bundle.files["data.jsonl"]) as f:
        assert f.read() == (b1 / "reacture_1_data.jsonl").read_bytes()


# --- several inputs, globs, URLs ----------------------------------------------------------


def test_mix_of_paths_and_globs_counts_each_file_once(
    tmp_path: Path, make_bundle: MakeBundle
) -> None:
    b1 = make_bundle(prefix="reacture_1", n_frames=2)
    b2 = make_bundle(prefix="reacture_2", n_frames=2)
    (tmp_path / "data").mkdir()
    z = pack(tmp_path / "data" / "a.zip", bundle_files(b2))
    t = pack(tmp_path / "data" / "b.tar", bundle_files(b2, "x/"))
    (tmp_path / "data" / "skip.txt").write_bytes(b"")
    inputs = [
        str(b1),
        str(tmp_path / "data" / "*.zip"),
        str(b1 / "reacture_1_frames.npy"),
        str(tmp_path / "data" / "*.zip"),
        str(tmp_path / "data"),
        str(tmp_path / "**"),
    ]
    found = discover(inputs)
    assert [(b.source, b.prefix) for b in found.bundles] == sorted(
        [
            (str(b1), "reacture_1"),
            (str(b2), "reacture_2"),
            (str(z), "reacture_2"),
            (f"{t}!x", "reacture_2"),
        ]
    )
    assert all(b.missing == () for b in found.bundles)
    assert codes(found) == [("STRAY_FILE", str(tmp_path / "data" / "skip.txt"))]


def test_glob_skips_hidden_folders(tmp_path: Path, make_bundle: MakeBundle) -> None:
    b1 = make_bundle(prefix="reacture_1", n_frames=2)
    hidden = tmp_path / "bundles" / ".hidden"
    hidden.mkdir()
    (hidden / "reacture_2_frames.npy").write_bytes(b"x")
    (hidden / "notes.txt").write_bytes(b"x")
    found = discover([str(tmp_path / "bundles" / "**" / "*.npy")])
    assert [(b.source, b.prefix, b.missing) for b in found.bundles] == [
        (str(b1), "reacture_1", ("metadata.json", "data.jsonl", "README.md"))
    ]
    assert found.findings == ()
    found = discover([str(tmp_path / "bundles" / "**")])
    assert [(b.source, b.prefix, b.missing) for b in found.bundles] == [(str(b1), "reacture_1", ())]
    assert found.findings == ()


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"/discover-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_memory_url_input(memory_root: str, make_bundle: MakeBundle, tmp_path: Path) -> None:
    b1 = make_bundle(prefix="reacture_1", n_frames=2)
    fs = fsspec.filesystem("memory")
    for p in b1.iterdir():
        fs.pipe(f"{memory_root}/in/s/{p.name}", p.read_bytes())
    fs.pipe(
        f"{memory_root}/in/pack.tgz",
        pack(tmp_path / "pack.tgz", bundle_files(b1, "z/")).read_bytes(),
    )
    fs.pipe(f"{memory_root}/in/.hidden/x_frames.npy", b"x")
    url = f"memory:/{memory_root}/in"
    found = discover([url])
    assert [(b.source, b.prefix) for b in found.bundles] == [
        (f"{url}/pack.tgz!z", "reacture_1"),
        (f"{url}/s", "reacture_1"),
    ]
    assert found.findings == ()
    for b in found.bundles:
        assert b.missing == ()
        for role, ref in b.files.items():
            with open_file(ref) as f:
                assert f.read() == (b1 / f"reacture_1_{role}").read_bytes()
    globbed = discover([f"{url}/*.tgz"])
    assert [b.source for b in globbed.bundles] == [f"{url}/pack.tgz!z"]


def test_file_url_keeps_its_protocol(make_bundle: MakeBundle) -> None:
    folder = make_bundle(prefix="reacture_1", n_frames=2)
    [bundle] = discover([f"file://{folder}"]).bundles
    assert bundle.source == f"file://{folder}"
    ref = bundle.files["metadata.json"]
    assert ref.url == f"file://{folder}/reacture_1_metadata.json"
    with open_file(ref) as f:
        assert f.read() == (folder / "reacture_1_metadata.json").read_bytes()


def test_unknown_protocol_is_a_finding() -> None:
    found = discover(["nosuchprotocol://bucket/x"])
    assert found.bundles == () and [f.code for f in found.findings] == ["INPUT_NOT_FOUND"]


# --- never crashes ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["x.zip", "x.tar", "x.tar.gz"]), data=st.binary(max_size=2048))
def test_random_bytes_as_archives_never_raise(
    tmp_path_factory: pytest.TempPathFactory, name: str, data: bytes
) -> None:
    folder = tmp_path_factory.getbasetemp() / "random-archive"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    found = discover([str(path)])
    assert found.bundles == ()
    assert all(f.code in CODES and f.file.startswith(str(path)) for f in found.findings)
