"""A session as a video (``show OUT SESSION --mp4 FILE``): every frame, each shown at its recorded
time (pauses and jitter kept), right way up, the same video from the Zarr store and from the
shards (shuffled ones too), written atomically; without PyAV, one line saying how to install it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.output.storage import Output
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.session import open_stored
from reacture_convert.read.sources import ZarrSource
from reacture_convert.report.video import INSTALL_HINT, VideoResult, write_video
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec, write_bundle
from reacture_convert.writers.webdataset.options import WdsOptions
from tests.helpers.s3 import S3

av = pytest.importorskip("av")

CLI = Path(sys.executable).with_name("reacture-convert")
GAME = "reacture_1795610000001"  # game-like frames, two pauses, jittered 10 Hz
PATTERN = "reacture_1795620000002"  # a bright block at the picture's top left, dark elsewhere
BLANK = "reacture_1795630000003"  # all black (the unmodified game's frames)
PAUSES = ((37, 2600), (90, 1400))
BLOCK = 32  # the pattern's block: BLOCK x BLOCK pixels
N_GAME = 140


@dataclass(frozen=True)
class Decoded:
    frames: npt.NDArray[np.uint8]  # (N, 128, 128, 3) RGB
    pts_ms: npt.NDArray[np.float64]


def decode(path: str | Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        got = [
            (f.to_ndarray(format="rgb24"), float(f.pts * stream.time_base * 1000))
            for f in container.decode(stream)
        ]
    return Decoded(np.stack([g[0] for g in got]), np.array([g[1] for g in got]))


def pattern_bundle(folder: Path) -> None:
    """A bundle whose stored frames (bottom row first, as the game writes them) hold a white
    block in their *last* rows' first columns: the top left of the picture shown right way up."""
    n = 12
    write_bundle(folder, BundleSpec(n_frames=n, seed=2, prefix=PATTERN))
    frames = np.full((n, 128, 128, 3), 30, np.uint8)
    frames[:, -BLOCK:, :BLOCK] = 255
    path = folder / f"{PATTERN}_frames.npy"
    header = path.read_bytes()[:129]
    path.write_bytes(header + frames.tobytes())


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same three bundles converted to Zarr only, shards only, both, and shuffled shards."""
    root = tmp_path_factory.mktemp("video")
    bundles = root / "bundles"
    write_bundle(
        bundles / GAME,
        BundleSpec(n_frames=N_GAME, seed=5, prefix=GAME, interval_ms=100, pauses=PAUSES),
    )
    pattern_bundle(bundles / PATTERN)
    write_bundle(bundles / BLANK, BundleSpec(n_frames=9, seed=3, prefix=BLANK, blank=True))
    made = {}
    for name, options in {
        "zarr": ConvertOptions(formats=("zarr",)),
        "wds": ConvertOptions(formats=("wds",)),
        "both": ConvertOptions(formats=("zarr", "wds")),
        "shuffled": ConvertOptions(formats=("wds",), wds=WdsOptions(shuffle_seed=7)),
    }.items():
        out = root / f"out-{name}"
        summary = run_convert([str(bundles)], Output(str(out)), options, scheduler="sync")
        assert sum(summary.counts.values()) == 3
        made[name] = out
    return made


def readers_frames(out: Path, session: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[Any]]:
    """Every frame of ``session`` as the training reader hands it out right way up, and the
    session's timestamps (ms)."""
    options = ReadOptions(flip=True, skip_blank=False, sessions=(session,))
    batch = next(ZarrSource(out, options).iter_batches(10_000))
    return batch["frame"], open_stored(out)[session].timestamps.astype(np.float64)


@pytest.mark.parametrize("form", ["zarr", "wds"])
def test_every_frame_is_shown_at_its_recorded_time(
    outs: dict[str, Path], form: str, tmp_path: Path
) -> None:
    result = write_video(outs[form], GAME, tmp_path / "game.mp4")
    _, ts = readers_frames(outs["zarr"], GAME)
    video = decode(result.path)
    assert result == VideoResult(
        str(tmp_path / "game.mp4"),
        GAME,
        form,
        N_GAME,
        pytest.approx((ts[-1] - ts[0]) / 1000, abs=1e-3),
        (tmp_path / "game.mp4").stat().st_size,
        "libx264",
    )
    assert len(video.pts_ms) == N_GAME
    np.testing.assert_allclose(video.pts_ms, ts - ts[0], atol=1.0)
    # the pauses are in the video as pauses, not squeezed to 10 Hz
    gaps = np.diff(video.pts_ms)
    assert [int(i) + 1 for i in np.flatnonzero(gaps > 1000)] == [f for f, _ in PAUSES]
    assert len(set(np.round(gaps[gaps < 1000]).tolist())) > 5  # jitter kept


@pytest.mark.parametrize("form", ["zarr", "wds"])
def test_frames_are_right_way_up(outs: dict[str, Path], form: str, tmp_path: Path) -> None:
    expected, _ = readers_frames(outs["zarr"], GAME)
    video = decode(write_video(outs[form], GAME, tmp_path / "game.mp4").path)
    error = np.abs(video.frames.astype(np.int16) - expected.astype(np.int16))
    upside_down = np.abs(video.frames.astype(np.int16) - expected[:, ::-1].astype(np.int16))
    # yuv420 is lossy (colour at half resolution): small on average, per frame too
    assert error.mean() < 4
    assert error.mean(axis=(1, 2, 3)).max() < 8
    assert upside_down.mean() > 5 * error.mean()


@pytest.mark.parametrize("form", ["zarr", "wds"])
def test_a_bright_top_left_block_is_shown_top_left(
    outs: dict[str, Path], form: str, tmp_path: Path
) -> None:
    video = decode(write_video(outs[form], PATTERN, tmp_path / "pattern.mp4").path)
    inner = slice(4, BLOCK - 4)  # away from the block's edge, where chroma blurs
    far = slice(-BLOCK + 4, -4)
    assert len(video.frames) == 12
    assert video.frames[:, inner, inner].min() > 220  # top left: bright
    assert video.frames[:, far, inner].max() < 60  # bottom left: dark
    assert video.frames[:, inner, far].max() < 60  # top right: dark


def test_blank_frames_are_exported_too(outs: dict[str, Path], tmp_path: Path) -> None:
    result = write_video(outs["zarr"], BLANK, tmp_path / "blank.mp4")
    video = decode(result.path)
    assert result.frames == len(video.frames) == 9
    assert video.frames.max() < 8


@pytest.mark.parametrize("other", ["wds", "shuffled", "both"])
def test_every_stored_form_gives_the_same_video(
    outs: dict[str, Path], other: str, tmp_path: Path
) -> None:
    a = write_video(outs["zarr"], GAME, tmp_path / "zarr.mp4")
    b = write_video(outs[other], GAME, tmp_path / f"{other}.mp4")
    assert b.source == ("zarr" if other == "both" else "wds")  # Zarr preferred when both
    one, two = decode(a.path), decode(b.path)
    np.testing.assert_array_equal(one.pts_ms, two.pts_ms)
    np.testing.assert_array_equal(one.frames, two.frames)


@pytest.mark.parametrize("form", ["zarr", "shuffled"])
def test_lossless_gives_the_readers_frames_exactly(
    outs: dict[str, Path], form: str, tmp_path: Path
) -> None:
    result = write_video(outs[form], GAME, tmp_path / "exact.mp4", lossless=True)
    expected, ts = readers_frames(outs["zarr"], GAME)
    video = decode(result.path)
    assert result.codec == "libx264rgb"
    np.testing.assert_array_equal(video.frames, expected)
    np.testing.assert_allclose(video.pts_ms, ts - ts[0], atol=1.0)


LONG = "reacture_1795640000004"
N_LONG = 1500  # 74 MB of frames


@pytest.fixture(scope="module")
def long_outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video-long")
    write_bundle(root / "bundles" / LONG, BundleSpec(n_frames=N_LONG, seed=9, prefix=LONG))
    made = {}
    for form in ("zarr", "wds"):
        out = root / f"out-{form}"
        options = ConvertOptions(formats=(form,))
        run_convert([str(root / "bundles")], Output(str(out)), options, scheduler="sync")
        made[form] = out
    return made


def peak_bytes(out: Path, session: str, path: Path) -> int:
    """The peak of Python's allocations while ``session`` is written as a video."""
    tracemalloc.start()
    try:
        write_video(out, session, path, chunk=8)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("form", ["zarr", "wds"])
def test_memory_stays_far_below_the_sessions_frames(
    outs: dict[str, Path], long_outs: dict[str, Path], form: str, tmp_path: Path
) -> None:
    """Frames are read and encoded a chunk at a time: the peak does not grow with the session
    (measured with 8-frame chunks: 10 MB from Zarr, 14 MB from shards, at 300 frames and at
    1,500; 16 and 19 MB with the default 64), far below its 74 MB of frames."""
    write_video(outs[form], GAME, tmp_path / "warm.mp4")  # imports and codec set-up
    peak = peak_bytes(long_outs[form], LONG, tmp_path / "long.mp4")
    assert len(decode(tmp_path / "long.mp4").frames) == N_LONG
    assert peak < N_LONG * 128 * 128 * 3 / 3


def test_the_file_is_replaced_whole_or_not_at_all(outs: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "game.mp4"
    target.write_bytes(b"the user's earlier video")
    write_video(outs["zarr"], GAME, target)
    assert len(decode(target).frames) == N_GAME
    # a session whose last frames cannot be read: the earlier file stays, no temporary is left
    broken = tmp_path / "broken"
    shutil.copytree(outs["zarr"], broken)
    chunks = sorted(
        p
        for p in (broken / "zarr" / f"{GAME}.zarr" / "frames").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )
    chunks[-1].write_bytes(b"\0" * 100)
    before = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the reader raises
        write_video(broken, GAME, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "game.mp4"]


@pytest.mark.parametrize(
    ("session", "path", "kwargs", "says"),
    [
        ("nosuch", "x.mp4", {}, "'nosuch' is not a converted session"),
        ("reacture_1795", "x.mp4", {}, "names 3 sessions"),
        (GAME, ".", {}, "is a folder"),
        (GAME, "x.mp4", {"crf": 60}, "crf=60"),
        (GAME, "x.mp4", {"chunk": 0}, "chunk=0"),
    ],
)
def test_bad_requests_say_what_to_do(
    outs: dict[str, Path],
    tmp_path: Path,
    session: str,
    path: str,
    kwargs: dict[str, int],
    says: str,
) -> None:
    with pytest.raises(ConfigError, match=says):
        write_video(outs["zarr"], session, tmp_path / path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_made_is_an_output_error(
    outs: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write the video"):
        write_video(outs["zarr"], GAME, tmp_path / "file" / "v.mp4")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_prefix_names_its_session(outs: dict[str, Path], tmp_path: Path) -> None:
    assert write_video(outs["wds"], "reacture_17956300", tmp_path / "v.mp4").session == BLANK


def test_the_command_writes_the_video(outs: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "videos" / "game.mp4"
    proc = subprocess.run(
        [str(CLI), "show", str(outs["wds"]), GAME, "--mp4", str(target), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["path"] == str(target)
    assert (doc["session"], doc["source"], doc["frames"]) == (GAME, "wds", N_GAME)
    assert doc["bytes"] == target.stat().st_size
    assert len(decode(target).frames) == N_GAME
    text = subprocess.run(
        [str(CLI), "show", str(outs["zarr"]), GAME, "--mp4", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"wrote {target}: {GAME}, {N_GAME} frames over")


@pytest.mark.parametrize(
    "args",
    [
        ["--mp4", "x.mp4"],  # no session
        [GAME, PATTERN, "--mp4", "x.mp4"],  # two
        [GAME, "--mp4", "x.mp4", "--html", "r"],  # both outputs
        [GAME],  # neither
    ],
)
def test_the_command_refuses_what_it_cannot_do(
    outs: dict[str, Path], tmp_path: Path, args: list[str]
) -> None:
    proc = subprocess.run(
        [str(CLI), "show", str(outs["zarr"]), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_pyav_one_line_says_how_to_install_it(
    outs: dict[str, Path], tmp_path: Path
) -> None:
    hide_av = (
        "import sys; sys.modules['av'] = None; "  # `import av` now raises ImportError
        "from reacture_convert.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide_av, "show", str(outs["zarr"]), GAME, "--mp4", "v.mp4"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [f"Error: {INSTALL_HINT}"]
    assert "pip install 'reacture-convert[video]'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_pyav_the_library_raises_the_same_advice(
    outs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    with pytest.raises(ConfigError) as caught:
        write_video(outs["zarr"], GAME, tmp_path / "v.mp4")
    assert str(caught.value) == INSTALL_HINT
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("form", ["zarr", "wds"])
def test_a_dataset_in_an_object_store_gives_the_same_video(
    outs: dict[str, Path], moto_s3: S3, form: str, tmp_path: Path
) -> None:
    """OUT in a bucket (moto's S3 server over HTTP, through s3fs): the video equals the one
    made from the same session converted locally."""
    url = f"s3://datasets/video-{form}"
    bundle = outs["zarr"].parent / "bundles" / GAME
    options = ConvertOptions(formats=(form,))
    run_convert([str(bundle)], Output(url, moto_s3.options), options, scheduler="sync")
    remote = write_video(url, GAME, tmp_path / "s3.mp4", storage_options=moto_s3.options)
    local = write_video(outs[form], GAME, tmp_path / "local.mp4")
    assert (remote.source, remote.frames) == (form, N_GAME)
    one, two = decode(remote.path), decode(local.path)
    np.testing.assert_array_equal(one.pts_ms, two.pts_ms)
    np.testing.assert_array_equal(one.frames, two.frames)
