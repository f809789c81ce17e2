"""Mixing datasets (issue 23): one loader over several converted datasets draws each one's
share of an epoch as its weight says (every sample of an under-weighted dataset at most once,
of an over-weighted one as evenly as can be), deterministically for a seed and an epoch, with
every sample equal to what the dataset's own reader gives, and resumes like the rest."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reacture_convert.errors import ConfigError
from reacture_convert.output.storage import Output
from reacture_convert.read.sources.mixed import mix_counts
from reacture_convert.read.torch import FrameDataset, to_pytorch_dataloader
from reacture_convert.run.batch import run_convert
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.testing.synth import BundleSpec, write_bundle

SIZES = {"a": (120, 90), "b": (70,)}  # dataset: frames of each of its sessions


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mixed")
    made = {}
    for d, (name, frames) in enumerate(SIZES.items()):
        for s, n in enumerate(frames):
            prefix = f"reacture_17956{d}000000{s}"
            write_bundle(
                root / name / prefix, BundleSpec(n_frames=n, seed=10 * d + s, prefix=prefix)
            )
        out = root / f"out-{name}"
        summary = run_convert(
            [str(root / name)],
            Output(str(out)),
            ConvertOptions(formats=("zarr",)),
            scheduler="sync",
        )
        assert summary.counts == {"converted": len(frames)}
        made[name] = out
    return made


def keys(loader: Any) -> list[tuple[str, int]]:
    return [
        (str(s), int(f))
        for b in loader
        for s, f in zip(b["session"], b["frame_index"], strict=True)
    ]


@pytest.mark.parametrize(
    ("sizes", "weights", "counts"),
    [
        ([210, 70], [0.5, 0.5], [140, 140]),
        ([210, 70], [3, 1], [210, 70]),
        ([10, 10, 10], [1, 1, 1], [10, 10, 10]),
        ([1, 1, 1], [1, 1, 1.01], [1, 1, 1]),
        ([5, 0], [0.9, 0.1], [5, 0]),
    ],
)
def test_mix_counts_follow_the_weights_and_add_up(
    sizes: list[int], weights: list[float], counts: list[int]
) -> None:
    assert mix_counts(sizes, weights) == counts
    assert sum(mix_counts(sizes, weights)) == sum(sizes)


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
def test_an_epoch_draws_each_datasets_share(outs: dict[str, Path], weights: list[float]) -> None:
    loader = to_pytorch_dataloader(
        [outs["a"], outs["b"]], 32, True, weights=weights, skip_blank=False
    )
    got = keys(loader)
    sizes = [sum(SIZES["a"]), sum(SIZES["b"])]
    counts = mix_counts(sizes, weights)
    assert len(got) == sum(sizes)
    by_dataset = Counter("a" if s.startswith("reacture_179560") else "b" for s, _ in got)
    assert [by_dataset["a"], by_dataset["b"]] == counts
    for name, size, count in zip("ab", sizes, counts, strict=True):
        seen = Counter(k for k in got if (k[0].startswith("reacture_179560")) == (name == "a"))
        # fewer than its size: each sample at most once; more: every sample k or k+1 times
        assert set(seen.values()) <= {count // size, count // size + 1} - {0}
        assert len(seen) == min(size, count)


def test_the_mix_is_set_by_seed_and_epoch(outs: dict[str, Path]) -> None:
    def epoch(e: int, seed: int = 0) -> list[tuple[str, int]]:
        loader = to_pytorch_dataloader(
            [outs["a"], outs["b"]], 16, True, seed=seed, weights=[0.6, 0.4], skip_blank=False
        )
        loader.set_epoch(e)
        return keys(loader)

    assert epoch(1) == epoch(1)
    assert epoch(1) != epoch(2)
    assert epoch(1) != epoch(1, seed=5)


def test_mixed_samples_are_the_datasets_own(outs: dict[str, Path]) -> None:
    mixed = FrameDataset([outs["a"], outs["b"]], weights=[1, 1], skip_blank=False)
    own = {
        name: {ds.locate(i): i for i in range(len(ds))}
        for name, ds in ((n, FrameDataset(outs[n], skip_blank=False)) for n in "ab")
    }
    singles = {n: FrameDataset(outs[n], skip_blank=False) for n in "ab"}
    for i in np.random.default_rng(0).choice(len(mixed), 25, replace=False).tolist():
        sample = mixed[i]
        key = (str(sample["session"]), int(sample["frame_index"]))
        name = "a" if key in own["a"] else "b"
        expected = singles[name][own[name][key]]
        for k, v in expected.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, sample[k]), k
            else:
                assert v == sample[k], k


def test_a_mixed_epoch_resumes_exactly(outs: dict[str, Path]) -> None:
    def make() -> Any:
        loader = to_pytorch_dataloader(
            [outs["a"], outs["b"]], 16, True, weights=[0.3, 0.7], num_workers=2, skip_blank=False
        )
        loader.set_epoch(2)
        return loader

    whole = keys(make())
    first = make()
    it = iter(first)
    head = keys(next(it) for _ in range(5))
    state = pickle.loads(pickle.dumps(first.state_dict()))
    del it
    again = make()
    again.load_state_dict(state)
    assert head + keys(again) == whole


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"weights": [1]}, "1 weights for 2 datasets"),
        ({"weights": [1, 0]}, "each must be above 0"),
        ({"source": "wds"}, "mixed by the Zarr reader only"),
    ],
)
def test_bad_mixes_say_what_to_do(outs: dict[str, Path], kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        to_pytorch_dataloader([outs["a"], outs["b"]], 16, **kw)


def test_weights_without_a_list_are_refused(outs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="give a list of them"):
        to_pytorch_dataloader(outs["a"], 16, weights=[1.0])
