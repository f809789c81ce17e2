"""An epoch's plan (issue 16): every sample once in a seeded order that visits windows of chunks
one after another; ranks, batches and workers cut it without losing or repeating a sample."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reacture_convert.read.plan import batches, deal, epoch_order, rank_share

chunks = st.lists(st.integers(1, 70), min_size=0, max_size=40)  # samples per chunk


def chunk_of(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


@given(sizes=chunks, window=st.integers(1, 6), seed=st.integers(0, 9), epoch=st.integers(0, 9))
def test_a_shuffled_epoch_takes_windows_of_chunks_one_after_another(
    sizes: list[int], window: int, seed: int, epoch: int
) -> None:
    of = chunk_of(sizes)
    order = epoch_order(of, True, seed, epoch, window)
    assert sorted(order.tolist()) == list(range(len(of)))
    assert np.array_equal(order, epoch_order(of, True, seed, epoch, window))  # seeded
    # cut the order where the chunks of a window are used up: each piece has <= window chunks
    seen: set[int] = set()
    for sample in order.tolist():
        if of[sample] not in seen and len(seen) == window:
            seen = set()
        seen.add(int(of[sample]))
        assert len(seen) <= window
    assert np.array_equal(epoch_order(of, False, seed, epoch, window), np.arange(len(of)))


@given(n=st.integers(0, 300), world=st.integers(1, 7), drop_last=st.booleans())
def test_ranks_share_an_order_like_distributed_sampler(n: int, world: int, drop_last: bool) -> None:
    order = np.random.default_rng(n).permutation(n)
    shares = [rank_share(order, r, world, drop_last) for r in range(world)]
    per = n // world if drop_last else -(-n // world)
    assert all(len(s) == per for s in shares)
    taken = np.concatenate(shares) if shares else np.array([])
    if drop_last:
        assert len(set(taken.tolist())) == len(taken)
    elif n:
        assert set(taken.tolist()) == set(order.tolist())


@given(n=st.integers(0, 300), size=st.integers(1, 40), workers=st.integers(1, 5))
def test_batches_and_dealing_lose_and_repeat_nothing(n: int, size: int, workers: int) -> None:
    cut = batches(np.arange(n), size)
    assert [len(b) for b in cut[:-1]] == [size] * (len(cut) - 1)
    dealt = deal(cut, workers)
    assert sorted(np.concatenate(dealt).tolist() if dealt else []) == list(range(n))
    # worker w (items w, w + workers, ...) gets a contiguous run of the batches
    for w in range(workers):
        mine = [int(b[0]) for b in dealt[w::workers]]
        firsts = [int(b[0]) for b in cut]
        if mine:
            start = firsts.index(mine[0])
            assert mine == firsts[start : start + len(mine)]
