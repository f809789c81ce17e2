"""WebDataset shards: every sample is exactly its source frame, row, time and events; shards are
reproducible, sized, counted, shuffled and indexed as promised.

Shards are read back with plain ``webdataset.WebDataset`` and sources with ``np.fromfile`` and
``json.loads``: no project code checks the project's output.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset
from hypothesis import given
from hypothesis import strategies as st

from reacture_convert.errors import ConfigError, InputError, OutputError
from reacture_convert.formats.wds import (
    INDEX,
    WdsIndex,
    iter_tar_samples,
    read_index,
    tar_size,
)
from reacture_convert.ingest.bundle import BundleRef, FileRef
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset import (
    SessionSamples,
    SessionTar,
    WdsOptions,
    write_session_samples,
    write_shards,
)
from reacture_convert.writers.webdataset.plan import count_plan
from tests.helpers.bundles import bundle_ref
from tests.helpers.paths import CHECKER, needs_checker
from tests.helpers.real import REAL
from tests.helpers.sources import same_row

DATA_OFFSET = 129  # the game's .npy files: data starts at byte 129


# --------------------------------------------------------------------------------------------
# helpers


def make_session_tar(
    out: Output, folder: Path, encoding: str = "npy", options: WdsOptions | None = None
) -> SessionTar:
    """A bundle's samples as a conversion writes them: taken from its validating read."""
    bundle = bundle_ref(folder)
    path = out.path(".cache", f"{bundle.prefix}.tar")
    samples = SessionSamples(bundle.prefix, out, path, options or WdsOptions(encoding=encoding))
    report = validate_bundle(bundle, sink=samples)
    assert report.ok, report.findings
    return samples.finish(report)


def load_source(folder: Path) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """frames, timestamps and rows of a bundle, read without project code."""
    prefix = next(folder.glob("*_metadata.json")).name[: -len("_metadata.json")]
    frames = np.fromfile(folder / f"{prefix}_frames.npy", np.uint8, offset=DATA_OFFSET)
    ts = np.fromfile(folder / f"{prefix}_timestamps.npy", "<f4", offset=DATA_OFFSET)
    lines = (folder / f"{prefix}_data.jsonl").read_bytes().split(b"\n")
    return frames.reshape(-1, 128, 128, 3), ts, [json.loads(x) for x in lines]


def read_samples(out: Output, index: WdsIndex) -> list[dict[str, Any]]:
    urls = [out.path("wds", s.url) for s in index.shards]
    return list(webdataset.WebDataset(urls, shardshuffle=False, empty_check=False))


def keys(samples: Sequence[dict[str, Any]]) -> list[str]:
    return [s["__key__"] for s in samples]


def tar_files(out: Output) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(out.path("wds")).glob("*.tar"))}


@pytest.fixture
def sessions(make_bundle: Callable[..., Path], tmp_path: Path) -> Callable[..., list[SessionTar]]:
    """``sessions(n, frames=...)``: n synthetic sessions written as session tars into a cache."""
    cache = Output(str(tmp_path / "cache"))

    def make(n: int, frames: int | Sequence[int] = 12, encoding: str = "npy") -> list[SessionTar]:
        counts = [frames] * n if isinstance(frames, int) else list(frames)
        return [
            make_session_tar(
                cache,
                make_bundle(
                    name=f"s{k}", prefix=f"reacture_17956000000{k:02d}", seed=k, n_frames=counts[k]
                ),
                encoding,
            )
            for k in range(n)
        ]

    return make


# --------------------------------------------------------------------------------------------
# fidelity


def test_every_sample_is_its_source_frame_row_time_and_events(
    real_bundle: Path, tmp_path: Path
) -> None:
    out = Output(str(tmp_path / "out"))
    st = make_session_tar(out, real_bundle)
    index = write_shards(out, [st], WdsOptions(shard_size=2 * 2**20))
    frames, ts, rows = load_source(real_bundle)
    samples = read_samples(out, index)
    assert len(index.shards) > 1  # rollover happened inside one session
    assert keys(samples) == [f"{st.session}/{i:06d}" for i in range(len(frames))]
    periodic = [j for j, r in enumerate(rows) if "visual_frame_path" in r]
    covered: list[int] = []
    for i, s in enumerate(samples):
        meta = json.loads(s["json"])
        j = periodic[i]
        assert {k for k in s if not k.startswith("__")} == {"json", "npy"}
        assert np.array_equal(np.load(io.BytesIO(s["npy"]), allow_pickle=False), frames[i])
        assert meta["session"] == st.session and meta["frame_index"] == i
        assert meta["row_index"] == j and same_row(meta["row"], rows[j])
        assert rows[j]["visual_frame_path"] == f"frames/frame_{i:06d}.npy"
        assert np.float32(meta["timestamp_ms"]).tobytes() == ts[i].tobytes()
        prev = periodic[i - 1] if i else -1
        assert [e["row_index"] for e in meta["events"]] == list(range(prev + 1, j))
        assert all(same_row(e, rows[e["row_index"]]) for e in meta["events"])
        assert all(e["visual_frame_path"] is None for e in meta["events"])
        covered += [*range(prev + 1, j), j]
    # every row up to the last periodic row is in exactly one sample; the rest (game_end, and
    # in the variant an inspect_end logged after it) in none
    assert covered == list(range(periodic[-1] + 1))
    assert any(r.get("event") == "game_end" for r in rows[periodic[-1] + 1 :])


def test_png_round_trips_exactly(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    from PIL import Image

    folder = make_bundle(n_frames=9, seed=3)
    out = Output(str(tmp_path / "out"))
    index = write_shards(out, [make_session_tar(out, folder, "png")], WdsOptions(encoding="png"))
    frames, _, _ = load_source(folder)
    samples = read_samples(out, index)
    assert index.encoding == "png" and len(samples) == 9
    for i, s in enumerate(samples):
        assert "npy" not in s
        image = Image.open(io.BytesIO(s["png"]))
        assert image.mode == "RGB" and image.format == "PNG"
        assert np.array_equal(np.asarray(image), frames[i])  # bottom-up, as stored
    assert frames.any()


def test_webp_round_trips_exactly_through_plain_webdataset(
    real_bundle: Path, tmp_path: Path
) -> None:
    """``--frame-encoding webp``: lossless WebP members that plain webdataset decodes itself
    (``.decode("rgb8")``: its Pillow image handler) to the source frames' exact bytes."""
    out = Output(str(tmp_path / "out"))
    st = make_session_tar(out, real_bundle, "webp")
    index = write_shards(out, [st], WdsOptions(encoding="webp"))
    frames, _, _ = load_source(real_bundle)
    urls = [out.path("wds", s.url) for s in index.shards]
    raw = list(webdataset.WebDataset(urls, shardshuffle=False, empty_check=False))
    decoded = list(
        webdataset.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8")
    )
    assert index.encoding == "webp" and len(decoded) == len(frames)
    assert keys(decoded) == [f"{st.session}/{i:06d}" for i in range(len(frames))]
    for i, (r, s) in enumerate(zip(raw, decoded, strict=True)):
        assert {k for k in s if not k.startswith("__")} == {"json", "webp"}
        assert r["webp"][:4] == b"RIFF" and r["webp"][8:16] == b"WEBPVP8L"  # VP8L: lossless
        assert s["webp"].dtype == np.uint8 and np.array_equal(s["webp"], frames[i])
        assert s["json"]["frame_index"] == i  # decoded by webdataset too
    # ~1/70 of the raw bytes on the variant's real pictures, far less on the black recordings
    assert sum(len(r["webp"]) for r in raw) < frames.nbytes / 20


@given(
    st.lists(st.tuples(st.integers(1, 48), st.integers(1, 48)), min_size=1, max_size=4).flatmap(
        lambda shapes: st.tuples(
            *(
                st.binary(min_size=h * w * 3, max_size=h * w * 3).map(
                    lambda b, h=h, w=w: np.frombuffer(b, np.uint8).reshape(h, w, 3)
                )
                for h, w in shapes
            )
        )
    )
)
def test_image_encodings_round_trip_random_frames(frames: tuple[np.ndarray, ...]) -> None:
    """Every image encoding gives back any uint8 RGB picture exactly (random bytes: the worst
    case for a predictor), through the project's decoder and through Pillow alone."""
    from PIL import Image

    from reacture_convert.formats.wds.encodings import IMAGE_ENCODINGS, decode_image, encode_image

    for frame in frames:
        for encoding in IMAGE_ENCODINGS:
            data = encode_image(frame, encoding)
            assert np.array_equal(decode_image(data, encoding), frame)
            with Image.open(io.BytesIO(data)) as image:
                assert image.mode == "RGB" and np.array_equal(np.asarray(image), frame)


@given(st.integers(0, 2**32 - 1), st.sampled_from(["zeros", "random", "smooth", "sparse"]))
def test_webp_round_trips_game_sized_frames(seed: int, kind: str) -> None:
    """128 x 128 frames as the shards hold them: all black (the real exporter's blank frames),
    random, smooth with low-bit noise, and black with a few random pixels."""
    from reacture_convert.formats.wds.encodings import decode_image, encode_image

    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    if kind == "zeros":
        frame[:] = 0
    elif kind == "smooth":
        ramp = np.add.outer(np.arange(128), np.arange(128)).astype(np.uint8)[..., None]
        frame = ramp + (frame & 3)
    elif kind == "sparse":
        frame[rng.random((128, 128)) > 0.01] = 0
    assert np.array_equal(decode_image(encode_image(frame, "webp"), "webp"), frame)


def test_archive_member_gives_the_same_session_tar(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """A bundle read from a .tar.gz (forward-only streams) gives the bytes of the folder one."""
    folder = make_bundle(n_frames=15, seed=5)
    plain = bundle_ref(folder)
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="inner")
    files = {r: FileRef(str(archive), f.size, f"inner/{f.name}") for r, f in plain.files.items()}
    packed = BundleRef(plain.prefix, f"{archive}!inner", files)
    got = []
    for b in (plain, packed):
        sink = io.BytesIO()
        n = write_session_samples(b, validate_bundle(b), b.prefix, sink)
        assert n == 15
        got.append(sink.getvalue())
    assert got[0] == got[1]


# --------------------------------------------------------------------------------------------
# reproducibility


def test_session_tar_members_are_normalised(make_bundle: Callable[..., Path]) -> None:
    bundle = bundle_ref(make_bundle(n_frames=4))
    report = validate_bundle(bundle)
    runs = []
    for _ in range(2):
        sink = io.BytesIO()
        write_session_samples(bundle, report, "sess", sink)
        runs.append(sink.getvalue())
    assert runs[0] == runs[1]
    with tarfile.open(fileobj=io.BytesIO(runs[0])) as tf:
        infos = tf.getmembers()
    want = [f"sess/{k:06d}.{ext}" for k in range(4) for ext in ("json", "npy")]
    assert [i.name for i in infos] == want
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (
            0,
            0,
            0,
            "",
            "",
            0o644,
        )
        assert info.isreg() and not info.pax_headers
    assert len(runs[0]) == tar_size(sum(512 + -(-i.size // 512) * 512 for i in infos))


@pytest.mark.parametrize(
    "options",
    [
        WdsOptions(shard_size=300_000),
        WdsOptions(shard_count=3, shuffle_seed=7, shuffle_buffer=5),
    ],
    ids=["by-size", "by-count-shuffled"],
)
def test_two_runs_give_byte_identical_shards_and_index(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path, options: WdsOptions
) -> None:
    tars = sessions(3)
    outs = [Output(str(tmp_path / name)) for name in ("one", "two")]
    indexes = [write_shards(out, tars, options) for out in outs]
    assert indexes[0] == indexes[1]
    assert tar_files(outs[0]) == tar_files(outs[1]) and len(tar_files(outs[0])) > 1
    assert Path(outs[0].path(INDEX)).read_bytes() == Path(outs[1].path(INDEX)).read_bytes()
    # and session tars given as bare (session, path) pairs are read for the same result
    again = write_shards(outs[1], [(t.session, t.parts[0].path) for t in reversed(tars)], options)
    assert again == indexes[0] and tar_files(outs[1]) == tar_files(outs[0])


# --------------------------------------------------------------------------------------------
# sizes and counts


def sample_sizes(path: str) -> list[int]:
    """Bytes each sample (a .json and a picture member) takes in a tar."""
    with tarfile.open(path) as tf:
        sizes = [512 + -(-i.size // 512) * 512 for i in tf.getmembers()]
    return [a + b for a, b in zip(sizes[::2], sizes[1::2], strict=True)]


@pytest.mark.parametrize(
    "shard_size", [1, 60_000, 250_000, 10**9], ids=["one-byte", "one-sample", "a-few", "all-in-one"]
)
def test_shard_size_is_respected(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path, shard_size: int
) -> None:
    out = Output(str(tmp_path / "out"))
    index = write_shards(out, sessions(2, frames=[7, 9]), WdsOptions(shard_size=shard_size))
    sizes = [sample_sizes(out.path("wds", s.url)) for s in index.shards]
    for shard, in_shard in zip(index.shards, sizes, strict=True):
        on_disk = Path(out.path("wds", shard.url)).stat().st_size
        assert shard.bytes == tar_size(sum(in_shard)) == on_disk
        assert shard.bytes <= shard_size or shard.samples == 1  # over only for one big sample
    for in_shard, following in zip(sizes, sizes[1:], strict=False):
        # greedy: a shard was closed only because the next sample would not fit
        assert tar_size(sum(in_shard) + following[0]) > shard_size
    assert sum(s.samples for s in index.shards) == 16
    if shard_size == 1:
        assert len(index.shards) == 16
    if shard_size == 10**9:
        assert len(index.shards) == 1 and index.shards[0].sessions == tuple(
            s.session for s in index.sessions
        )
    else:
        assert len(index.shards) > 1


@pytest.mark.parametrize("count", [1, 2, 5, 16], ids=lambda c: f"count-{c}")
def test_shard_count_is_honoured_and_wins_over_size(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path, count: int
) -> None:
    out = Output(str(tmp_path / "out"))
    opts = WdsOptions(shard_count=count, shard_size=1)
    index = write_shards(out, sessions(2, frames=[7, 9]), opts)
    sizes = [s.samples for s in index.shards]
    assert len(sizes) == count and sum(sizes) == 16 and max(sizes) - min(sizes) <= 1
    assert index.shard_count == count and index.shard_size is None
    assert len(read_samples(out, index)) == 16


def test_more_shards_than_samples_is_refused(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="more shards than there are samples"):
        write_shards(Output(str(tmp_path / "o")), sessions(1, frames=3), WdsOptions(shard_count=4))


def test_index_agrees_with_the_tars(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path
) -> None:
    out = Output(str(tmp_path / "out"))
    index = write_shards(out, sessions(3, frames=[5, 11, 8]), WdsOptions(shard_size=200_000))
    doc = json.loads(Path(out.path(INDEX)).read_text())
    assert doc == index.to_dict() and read_index(out) == index
    assert doc["format"] == "reacture-wds" and doc["version"] == 2 and doc["total_samples"] == 24
    assert [(s["session"], s["samples"]) for s in doc["sessions"]] == [
        ("reacture_1795600000000", 5),
        ("reacture_1795600000001", 11),
        ("reacture_1795600000002", 8),
    ]
    assert sorted(tar_files(out)) == sorted(s["url"] for s in doc["shards"])
    for shard in doc["shards"]:
        data = Path(out.path("wds", shard["url"])).read_bytes()
        assert shard["url"].startswith(f"reacture-{index.tag}-")
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names = tf.getnames()
        assert len(names) == 2 * shard["samples"]
        assert shard["sessions"] == sorted({n.split("/")[0] for n in names})


# --------------------------------------------------------------------------------------------
# shuffling


def longest_run(sample_keys: Sequence[str]) -> int:
    return max(len(list(g)) for _, g in groupby(k.split("/")[0] for k in sample_keys))


def test_shuffle_is_deterministic_complete_and_mixed(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path
) -> None:
    tars = sessions(4, frames=[30, 25, 40, 20])

    def order(name: str, options: WdsOptions) -> list[str]:
        out = Output(str(tmp_path / name))
        return keys(read_samples(out, write_shards(out, tars, options)))

    plain = order("plain", WdsOptions(shard_size=1_000_000))
    assert longest_run(plain) == 40  # unshuffled: session after session, frame order
    assert plain == sorted(plain)
    runs = []
    for seed in range(5):
        opts = WdsOptions(shard_size=1_000_000, shuffle_seed=seed, shuffle_buffer=16)
        first = order(f"a{seed}", opts)
        assert first == order(f"b{seed}", opts)  # same seed, same order
        assert first != plain and sorted(first) == plain  # every sample exactly once
        runs.append(longest_run(first))
    assert max(runs) <= 6, runs
    assert order("s1", WdsOptions(shuffle_seed=1, shuffle_buffer=16)) != order(
        "s2", WdsOptions(shuffle_seed=2, shuffle_buffer=16)
    )


def test_shuffle_opens_at_most_shuffle_streams_sessions(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path
) -> None:
    """With a buffer of one the output is the interleave itself: at no point are more than
    ``shuffle_streams`` sessions started and not finished."""
    out = Output(str(tmp_path / "out"))
    tars = sessions(5, frames=10)
    opts = WdsOptions(shuffle_seed=3, shuffle_buffer=1, shuffle_streams=2)
    got = keys(read_samples(out, write_shards(out, tars, opts)))
    assert sorted(got) == sorted(f"{t.session}/{i:06d}" for t in tars for i in range(10))
    names = [k.split("/")[0] for k in got]
    first = {n: names.index(n) for n in set(names)}
    last = {n: len(names) - 1 - names[::-1].index(n) for n in set(names)}
    open_at = [sum(first[n] <= p <= last[n] for n in first) for p in range(len(names))]
    assert max(open_at) == 2
    for n in first:  # each session's frames stay in frame order through the interleave
        assert [k for k in got if k.startswith(n)] == sorted(k for k in got if k.startswith(n))


@given(total=st.integers(1, 10_000), count=st.integers(1, 500))
def test_count_plan_splits_evenly(total: int, count: int) -> None:
    if count > total:
        with pytest.raises(ConfigError):
            count_plan(total, count)
        return
    plan = count_plan(total, count)
    assert len(plan) == count and sum(plan) == total and max(plan) - min(plan) <= 1


# --------------------------------------------------------------------------------------------
# re-runs


def test_rerun_with_other_sessions_leaves_no_orphans(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path
) -> None:
    out = Output(str(tmp_path / "out"))
    tars = sessions(3)
    opts = WdsOptions(shard_size=250_000)
    first = write_shards(out, tars, opts)
    second = write_shards(out, tars[:2], opts)
    assert first.tag != second.tag
    assert sorted(tar_files(out)) == sorted(s.url for s in second.shards)
    in_shards = {k.split("/")[0] for k in keys(read_samples(out, second))}
    assert in_shards == {t.session for t in tars[:2]}
    same = write_shards(out, tars[:2], opts)
    assert same == second and sorted(tar_files(out)) == sorted(s.url for s in same.shards)
    assert not Path(out.path(".staging", ".wds")).exists()
    empty = write_shards(out, [], opts)
    assert empty.shards == () and empty.total_samples == 0 and tar_files(out) == {}


# --------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoding": "jpg"}, "unknown WebDataset encoding"),
        ({"name": "a/b"}, "shard name"),
        ({"name": ""}, "shard name"),
        ({"shard_size": 0}, "shard-size"),
        ({"shard_count": 0}, "shard-count"),
        ({"shuffle_buffer": 0}, "shuffle_buffer"),
        ({"shuffle_streams": 0}, "shuffle_streams"),
    ],
    ids=["encoding", "name-slash", "name-empty", "size", "count", "buffer", "streams"],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        WdsOptions(**kwargs)


def _tar(members: Sequence[tuple[str, bytes]]) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return sink.getvalue()


NPY = b"x"
BAD_TARS = {
    "other-session": [("other/000000.json", b"{}"), ("other/000000.npy", NPY)],
    "png-not-npy": [("s/000000.json", b"{}"), ("s/000000.png", NPY)],
    "picture-first": [("s/000000.npy", NPY), ("s/000000.json", b"{}")],
    "frame-gap": [
        ("s/000000.json", b"{}"),
        ("s/000000.npy", NPY),
        ("s/000002.json", b"{}"),
        ("s/000002.npy", NPY),
    ],
    "incomplete": [("s/000000.json", b"{}")],
    "stray-file": [("README", b"hi")],
}


@pytest.mark.parametrize("members", BAD_TARS.values(), ids=BAD_TARS.keys())
def test_foreign_session_tars_are_refused(tmp_path: Path, members: list[tuple[str, bytes]]) -> None:
    path = tmp_path / "s.tar"
    path.write_bytes(_tar(members))
    out = Output(str(tmp_path / "out"))
    with pytest.raises(OutputError, match="not a session sample tar"):
        write_shards(out, [("s", str(path))])
    assert not Path(out.path("wds")).exists()


def test_a_member_twice_in_a_sample_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.tar"
    path.write_bytes(
        _tar([("s/000000.json", b"{}"), ("s/000000.json", b"[]"), ("s/000000.npy", NPY)])
    )
    with pytest.raises(OutputError, match="two .json members"):
        list(iter_tar_samples(io.BytesIO(path.read_bytes()), str(path)))
    out = Output(str(tmp_path / "out"))
    with pytest.raises(OutputError, match="two .json members"):
        write_shards(out, [("s", str(path))])
    assert not Path(out.path("wds")).exists()


def test_session_part_changed_after_it_was_written_is_refused(
    sessions: Callable[..., list[SessionTar]], tmp_path: Path
) -> None:
    a, b = sessions(2, frames=3)
    part = Path(a.parts[0].path)
    part.write_bytes(part.read_bytes()[:-512])
    out = Output(str(tmp_path / "out"))
    with pytest.raises(OutputError, match="changed while the shards were written"):
        write_shards(out, [a, b])
    assert not Path(out.path("wds")).exists() and not Path(out.path(".staging", ".wds")).exists()


def test_invalid_bundle_is_not_written(make_bundle: Callable[..., Path]) -> None:
    folder = make_bundle(n_frames=3)
    ts = next(folder.glob("*_timestamps.npy"))
    ts.write_bytes(ts.read_bytes()[:-4])  # truncated: an error finding
    bundle = bundle_ref(folder)
    report = validate_bundle(bundle)
    assert not report.ok
    with pytest.raises(InputError, match="only a valid bundle"):
        write_session_samples(bundle, report, bundle.prefix, io.BytesIO())


# --------------------------------------------------------------------------------------------
# the independent conformance checker


@needs_checker
@pytest.mark.parametrize("encoding", ["npy", "webp"])
def test_conformance_checker_accepts_the_shards(tmp_path: Path, encoding: str) -> None:
    root = REAL
    folders = sorted(m.parent for m in root.rglob("*_metadata.json"))
    out = Output(str(tmp_path / "out"))
    tars = [make_session_tar(out, f, encoding) for f in folders]
    size = 3 * 2**20 if encoding == "npy" else 2**20  # several shards either way
    index = write_shards(out, tars, WdsOptions(size, shuffle_seed=11, encoding=encoding))
    assert len(index.shards) > 1
    rows = [{"session": t.session, "prefix": t.session, "status": "converted"} for t in tars]
    pq.write_table(pa.Table.from_pylist(rows), out.path("catalog.parquet"))
    done = subprocess.run(
        [sys.executable, str(CHECKER), out.root, str(root), "--formats", "wds"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"fidelity[wds]: {len(folders)}/{len(folders)} bundles exact" in done.stdout


def test_object_store_output_gives_the_same_bytes(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """A non-local OUT (fsspec memory://) takes the copy path and writes the same shards."""
    import fsspec

    folders = [
        make_bundle(name=f"m{k}", prefix=f"reacture_17956000001{k:02d}", seed=k, n_frames=6)
        for k in range(2)
    ]
    local, remote = Output(str(tmp_path / "out")), Output("memory://wds-test/out")
    opts = WdsOptions(shard_size=150_000, shuffle_seed=1)
    got = []
    for out in (local, remote):
        index = write_shards(out, [make_session_tar(out, f) for f in folders], opts)
        got.append((index, {s.url: out.fs.cat_file(out.path("wds", s.url)) for s in index.shards}))
    assert not remote.is_local and got[0] == got[1] and len(got[0][1]) > 1
    assert remote.fs.cat_file(remote.path(INDEX)) == Path(local.path(INDEX)).read_bytes()
    assert not remote.fs.exists(remote.path(".staging", ".wds"))
    fsspec.filesystem("memory").rm("/wds-test", recursive=True)


# --------------------------------------------------------------------------------------------
# the tar bytes, by hand


def test_moved_parts_and_copied_shards_are_the_same_bytes(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """A run moves a session's parts into place where a part is a whole shard, and copies the
    rest; shards copied from parts outside OUT's staging come out byte for byte the same."""
    from reacture_convert.run.batch import run_convert
    from reacture_convert.run.convert import ConvertOptions

    folders = [
        make_bundle(name=f"m{k}", prefix=f"reacture_17956000002{k:02d}", seed=k, n_frames=n)
        for k, n in enumerate([23, 5])
    ]
    opts = WdsOptions(shard_size=250_000)
    moved = Output(str(tmp_path / "moved"))
    run = run_convert([str(f) for f in folders], moved, ConvertOptions(("wds",), wds=opts))
    assert run.ok and len(tar_files(moved)) > 2
    cache, copied = Output(str(tmp_path / "cache")), Output(str(tmp_path / "copied"))
    index = write_shards(copied, [make_session_tar(cache, f, options=opts) for f in folders], opts)
    assert index == read_index(moved)
    assert tar_files(copied) == tar_files(moved)
