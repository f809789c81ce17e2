"""The samples built from validation's one read (``sample_sink``): the same bytes however the
read runs (frames and rows at once on two threads, or in turns on one; the side that is ahead
made to wait at every block), and a bundle whose frames and rows do not pair up is refused with
nothing left in staging and no thread left waiting.

Byte fidelity of the samples to their sources is test_webdataset's; equality with what the
conversion wrote before the one-read rework is checked by comparing whole output trees."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from reacture_convert.ingest.bundle import FileRef
from reacture_convert.ingest.validate import validate_bundle
from reacture_convert.output.status import Status
from reacture_convert.output.storage import Output
from reacture_convert.run.convert import ConvertOptions, convert_session
from reacture_convert.testing.synth import game_npy_header
from reacture_convert.writers.webdataset import SessionSamples, SessionTar, WdsOptions, sample_sink
from tests.helpers.bundles import bundle_ref

SESSION = "sess"


@pytest.fixture
def waiting_at_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The side that is ahead waits as soon as it holds anything the other has not matched."""
    monkeypatch.setattr(sample_sink, "FRAME_BYTES", 1)
    monkeypatch.setattr(sample_sink, "SAMPLES_AHEAD", 1)


def samples_of(folder: Path, out: Output, threads: int, options: WdsOptions) -> list[bytes]:
    bundle = bundle_ref(folder)
    path = out.path(".staging", f"t{threads}", f"{SESSION}.tar")
    samples = SessionSamples(SESSION, out, path, options)
    report = validate_bundle(bundle, sink=samples, threads=threads)
    assert report.ok, report.findings
    tar: SessionTar = samples.finish(report)
    assert tar.samples == report.n_frames
    return [Path(p.path).read_bytes() for p in tar.parts]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("waiting", [False, True], ids=["free", "waiting-at-every-block"])
def test_samples_are_the_same_however_the_read_runs(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    waiting: bool,
) -> None:
    # two blocks of rows (> 4096 lines), four of frames, three parts
    folder = make_bundle(n_frames=200, seed=4, events_per_frame=25.0)
    options = WdsOptions(shard_size=4 * 2**20)
    out = Output(str(tmp_path / "out"))
    want = samples_of(folder, out, 2, options)
    assert len(want) == 3
    if waiting:
        monkeypatch.setattr(sample_sink, "FRAME_BYTES", 1)
        monkeypatch.setattr(sample_sink, "SAMPLES_AHEAD", 1)
    for threads in (2, 1):
        assert samples_of(folder, out, threads, options) == want


def _frames_file(folder: Path) -> Path:
    return next(folder.glob("*_frames.npy"))


def more_frames(folder: Path) -> None:
    """frames.npy (and timestamps.npy) one frame longer than the periodic rows name."""
    path = _frames_file(folder)
    data = path.read_bytes()[129:]
    n = len(data) // (128 * 128 * 3)
    path.write_bytes(game_npy_header("|u1", (n + 1, 128, 128, 3)) + data + data[-128 * 128 * 3 :])
    ts_path = next(folder.glob("*_timestamps.npy"))
    ts = np.frombuffer(ts_path.read_bytes()[129:], "<f4")
    ts_path.write_bytes(game_npy_header("<f4", (n + 1,)) + np.append(ts, ts[-1] + 100).tobytes())


def fewer_frames(folder: Path) -> None:
    """frames.npy one frame shorter than the periodic rows name."""
    path = _frames_file(folder)
    data = path.read_bytes()[129:]
    n = len(data) // (128 * 128 * 3)
    path.write_bytes(game_npy_header("|u1", (n - 1, 128, 128, 3)) + data[: -128 * 128 * 3])


def swapped_rows(folder: Path) -> None:
    """Two periodic rows name each other's frame."""
    path = next(folder.glob("*_data.jsonl"))
    rows = [json.loads(line) for line in path.read_text().split("\n")]
    periodic = [i for i, r in enumerate(rows) if "visual_frame_path" in r]
    a, b = periodic[3], periodic[4]
    rows[a]["visual_frame_path"], rows[b]["visual_frame_path"] = (
        rows[b]["visual_frame_path"],
        rows[a]["visual_frame_path"],
    )
    path.write_text("\n".join(json.dumps(r, separators=(",", ":")) for r in rows))


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("waiting_at_every_block")
@pytest.mark.parametrize("threads", [2, 1])
@pytest.mark.parametrize("damage", [more_frames, fewer_frames, swapped_rows])
def test_frames_and_rows_that_do_not_pair_are_refused(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
    damage: Callable[[Path], None],
) -> None:
    folder = make_bundle(n_frames=150, seed=2, events_per_frame=1.0)
    damage(folder)
    monkeypatch.setattr("reacture_convert.run.convert.task_threads", lambda: threads)
    out = Output(str(tmp_path / "out"))
    options = ConvertOptions(formats=("zarr", "wds"))
    result = convert_session(bundle_ref(folder), out, options, None, "run")
    assert result.entry.status is Status.REJECTED, result.entry
    assert result.session_tar is None
    assert not [p for p in Path(out.path(".staging")).rglob("*") if p.is_file()]
    # the sink itself says why the samples are not the bundle's
    samples = SessionSamples(SESSION, out, out.path(".staging", "s", "s.tar"), WdsOptions())
    report = validate_bundle(bundle_ref(folder), sink=samples, threads=threads)
    assert not report.ok
    assert samples.check(report.n_frames or 0) is not None
    samples.discard()


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("waiting_at_every_block")
def test_a_failed_read_of_the_rows_leaves_no_thread_waiting(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """data.jsonl cannot be opened (a folder): the frames thread, waiting for rows, stops
    waiting; the session fails and leaves no parts."""
    folder = make_bundle(n_frames=150, seed=2)
    bundle = bundle_ref(folder)
    bundle = replace(bundle, files={**bundle.files, "data.jsonl": FileRef(str(tmp_path), 1)})
    out = Output(str(tmp_path / "out"))
    options = ConvertOptions(formats=("wds",))
    result = convert_session(bundle, out, options, None, "run")
    assert result.entry.status is Status.FAILED
    assert "IsADirectoryError" in (result.entry.reason or "")
    assert not [p for p in Path(out.path(".staging")).rglob("*") if p.is_file()]


class _Recording(sample_sink.SampleSink):
    """Records what it holds each time a side is let go on (after ``frames``/``rows``)."""

    most_frame_bytes = 0
    most_documents = 0

    def frames(self, start: int, block: np.ndarray, lit: np.ndarray) -> None:
        super().frames(start, block, lit)
        self.most_frame_bytes = max(self.most_frame_bytes, self._frame_bytes)

    def rows(self, block: object) -> None:
        super().rows(block)  # type: ignore[arg-type]
        self.most_documents = max(self.most_documents, len(self._json))


@pytest.mark.timeout(300)
def test_the_side_ahead_waits_while_the_other_writes(
    make_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a sample can be slow (a disk, a bucket). While one thread writes, the other's
    side must not keep reading: what the sink holds stays within its limits (a long session's
    frames would otherwise pile up in memory)."""
    frame_bytes = 128 * 128 * 3
    monkeypatch.setattr(sample_sink, "FRAME_BYTES", 4 * frame_bytes)
    monkeypatch.setattr(sample_sink, "SAMPLES_AHEAD", 4)
    folder = make_bundle(n_frames=600, seed=6)
    written: list[str] = []

    def add(members: object) -> None:
        if not written:  # the first write stalls for a second: the other side reads on
            time.sleep(1.0)
        written.append("sample")

    sink = _Recording(SESSION, "npy", add)
    report = validate_bundle(bundle_ref(folder), sink=sink, threads=2)
    assert report.ok, report.findings
    assert sink.check(report.n_frames) is None and len(written) == 600
    block = sink.block_frames * frame_bytes  # a side hands over whole blocks
    assert sink.most_frame_bytes <= 4 * frame_bytes + block
    assert sink.most_documents <= 4 + 4096  # a block of rows is up to 4,096 lines
