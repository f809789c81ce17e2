"""Windows (issue 16): ``history=k`` stacks the k previous frames of the same session and
``horizon=h`` the labels of the next h frames; a window never crosses a session boundary, a pause
longer than ``max_gap_ms`` or (with blank skipping) a blank frame, and a sample whose window
does not fit is dropped and counted. Both readers (Zarr and shards, any number of consumers) give
equal samples, each equal to the source bundles; the streaming verdicts equal the whole-session
ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.errors import ConfigError
from reacture_convert.read.options import ReadOptions
from reacture_convert.read.sources.shards import ShardSource
from reacture_convert.read.sources.zarr import ZarrSource
from reacture_convert.read.torch import to_pytorch_dataloader
from reacture_convert.read.windows import Item, StreamJudge, judge
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.writers.webdataset import WdsOptions
from tests.helpers.expect import Expected, Key, Want, sample_keys, unbatch
from tests.helpers.real import REAL_BUNDLES, convert_real_bundles
from tests.helpers.sources import read_source

WINDOWS = [
    Want(history=2, horizon=3),
    Want(history=4),
    Want(horizon=2, skip_blank=False),
    Want(history=1, horizon=1, max_gap_ms=None),
    Want(history=3, max_gap_ms=300.0, skip_blank=False),
]
IDS = ["k2-h3", "k4", "h2-keep-blank", "k1-h1-no-gap-limit", "k3-gap300-keep-blank"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real fixtures in Zarr and in 4 shards (sessions span shard boundaries)."""
    options = ConvertOptions(formats=("zarr", "wds"), wds=WdsOptions(shard_count=4))
    return convert_real_bundles(tmp_path_factory.mktemp("windows") / "out", options)


@pytest.fixture(scope="module")
def expected() -> Expected:
    return Expected({p.name: read_source(p) for p in REAL_BUNDLES})


def options_of(want: Want) -> ReadOptions:
    return ReadOptions(**want.kwargs())


def samples_of(batches: Any) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for batch in batches:
        for s in unbatch(batch):
            key = (str(s["session"]), int(s["frame_index"]))
            assert key not in out, f"{key} twice"
            out[key] = s
    return out


@pytest.mark.parametrize("want", WINDOWS, ids=IDS)
def test_both_readers_give_the_windows_of_the_sources(
    converted: Path, expected: Expected, want: Want
) -> None:
    options = options_of(want)
    keys = sample_keys(expected.sources, want)
    zarr = ZarrSource(converted, options)
    from_zarr = samples_of(zarr.iter_batches(16))
    assert list(from_zarr) == keys  # in order, each once
    for sample in from_zarr.values():
        expected.check(sample, want, chw=False)
    total = sum(len(s.timestamps) for s in expected.sources.values())
    assert zarr.skipped_blank + zarr.dropped_windows + len(zarr) == total
    assert zarr.dropped_windows > 0  # every case here has windows that do not fit
    blank = sum(
        1
        for src in expected.sources.values()
        for f in range(len(src.timestamps))
        if not src.frames[f].any()
    )
    assert zarr.skipped_blank == (blank if want.skip_blank else 0)

    shards = ShardSource(converted, options)
    assert (shards.skipped_blank, shards.dropped_windows) == (
        zarr.skipped_blank,
        zarr.dropped_windows,
    )
    from_shards: dict[Key, dict[str, Any]] = {}
    for consumer in range(3):  # 3 consumers over 4 shards: ranges start and end mid-shard
        part = samples_of(shards.iter_batches(16, consumer=consumer, consumers=3))
        assert not set(part) & set(from_shards)
        from_shards.update(part)
    assert sorted(from_shards) == sorted(keys)
    for key, sample in from_zarr.items():
        other = from_shards[key]
        assert sample.keys() == other.keys()
        for name, value in sample.items():
            assert np.array_equal(np.asarray(value), np.asarray(other[name])), (key, name)


def test_windows_have_the_documented_shapes_through_a_torch_loader(
    converted: Path, expected: Expected
) -> None:
    want = Want(history=2, horizon=3)
    for source in ("zarr", "wds"):
        loader = to_pytorch_dataloader(
            converted, batch_size=8, num_workers=2, source=source, shuffle=True, **want.kwargs()
        )
        seen = []
        for batch in loader:
            b = len(batch["session"])
            assert batch["frame"].shape == (b, 3, 3, 128, 128) and batch["frame"].is_contiguous()
            assert batch["keys"].shape == (b, 4, 6) and batch["battery"].shape == (b, 4, 1)
            assert batch["position"].shape == (b, 4, 3) and batch["frame_index"].shape == (b,)
            assert batch["frame"].dtype == torch.uint8
            seen += [expected.check(s, want, chw=True) for s in unbatch(batch)]
        assert sorted(seen) == sorted(sample_keys(expected.sources, want))


def test_no_window_crosses_a_session_boundary_or_a_long_pause(
    converted: Path, expected: Expected
) -> None:
    want = Want(history=3, horizon=3, skip_blank=False, max_gap_ms=1000.0)
    keys = sample_keys(expected.sources, want)
    for s, f in keys:
        ts = expected.sources[s].timestamps.astype(np.float64)
        assert f - 3 >= 0 and f + 3 < len(ts)
        assert np.all(np.diff(ts[f - 3 : f + 4]) <= 1000.0)
    # the real recordings have pauses over 1 s: they cost samples, and no limit keeps them
    no_limit = ZarrSource(
        converted, options_of(Want(history=3, horizon=3, skip_blank=False, max_gap_ms=None))
    )
    limited = ZarrSource(converted, options_of(want))
    assert len(limited) == len(keys) < len(no_limit)
    assert limited.dropped_windows - no_limit.dropped_windows == len(no_limit) - len(limited)


def test_windows_refuse_shards_written_shuffled(tmp_path: Path) -> None:
    options = ConvertOptions(formats=("wds",), wds=WdsOptions(shuffle_seed=1))
    out = convert_real_bundles(tmp_path / "out", options)
    with pytest.raises(ConfigError, match="need shards in frame order"):
        ShardSource(out, ReadOptions(history=1))
    assert ShardSource(out, ReadOptions()).sessions  # without windows they read


# --- the streaming judge --------------------------------------------------------------------------
runs = st.lists(
    st.tuples(
        st.integers(0, 2),  # session
        st.booleans(),  # blank
        st.sampled_from([100.0, 250.0, 1500.0]),  # time since the previous frame
        st.booleans(),  # own
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    frames=runs,
    history=st.integers(0, 3),
    horizon=st.integers(0, 3),
    skip_blank=st.booleans(),
    block=st.integers(1, 5),
)
def test_stream_verdicts_equal_the_whole_run_verdicts(
    frames: list[tuple[int, bool, float, bool]],
    history: int,
    horizon: int,
    skip_blank: bool,
    block: int,
) -> None:
    """Sessions come in runs (a session never comes back after another), any block size."""
    frames = sorted(frames, key=lambda x: x[0])
    options = ReadOptions(
        history=history, horizon=horizon, skip_blank=skip_blank, max_gap_ms=1000.0
    )
    items: list[Item[int]] = []
    clock: dict[int, float] = {}
    for i, (session, blank, dt, own) in enumerate(frames):
        clock[session] = clock.get(session, 0.0) + dt
        index = sum(1 for it in items if it.session == str(session))
        items.append(Item(str(session), index, clock[session], blank, own, i))
    streamed = StreamJudge[int](options, block=block)
    got = []
    for item in items:
        got += [
            (h[-1].payload, [x.payload for x in h], [x.payload for x in a])
            for h, a in streamed.push(item)
        ]
    got += [
        (h[-1].payload, [x.payload for x in h], [x.payload for x in a])
        for h, a in streamed.finish()
    ]
    want = []
    skipped = dropped = 0
    for session in sorted({it.session for it in items}):
        run = [it for it in items if it.session == session]
        v = judge(
            [x.frame_index for x in run],
            [x.timestamp_ms for x in run],
            [x.blank for x in run],
            options,
        )
        for j, it in enumerate(run):
            if not it.own:
                continue
            if v.keep[j]:
                want.append(
                    (
                        it.payload,
                        [x.payload for x in run[j - history : j + 1]],
                        [x.payload for x in run[j : j + horizon + 1]],
                    )
                )
            skipped += bool(v.skipped[j])
            dropped += bool(v.dropped[j])
    assert got == want
    assert (streamed.skipped, streamed.dropped) == (skipped, dropped)
