"""A plain shard's ``runs`` in index.json (issue 23): where every ``SHARD_RUN`` samples and the
end of the archive begin, each ``[tar offset, tar offset]``, exactly the sample boundaries its
tar headers give (read here with ``sample_spans``), for any session lengths, shard sizes and
shuffling; and still so for the shards that an append, a remove (``prune_shards``) and a subset
(``copy_samples``) write, while the shards they leave alone keep theirs."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from reacture_convert.formats.wds import WdsIndex, read_index
from reacture_convert.formats.wds.compression import SHARD_RUN
from reacture_convert.formats.wds.index import WdsShard
from reacture_convert.formats.wds.tar import sample_spans
from reacture_convert.output.storage import Output
from reacture_convert.writers.webdataset import WdsOptions, write_shards
from reacture_convert.writers.webdataset.prune import copy_samples, prune_shards
from tests.helpers.tars import shard


def session_tar(folder: Path, k: int, sizes: list[int]) -> tuple[str, str]:
    """A session tar as the session step writes one: samples of ``sizes`` picture bytes."""
    session = f"reacture_17956000000{k:02d}"
    members: list[tuple[str, bytes]] = []
    for i, n in enumerate(sizes):
        key = f"{session}/{i:06d}"
        members += [(f"{key}.json", b'{"i": %d}' % i), (f"{key}.npy", bytes([i % 251]) * n)]
    path = folder / f"{session}.tar"
    path.write_bytes(shard(members))
    return session, str(path)


def boundaries(path: str) -> tuple[tuple[int, int], ...]:
    """Where every ``SHARD_RUN`` samples of the plain shard at ``path`` and its end of the
    archive begin, from its tar headers."""
    with open(path, "rb") as f:
        spans = sample_spans(f, path)
    at = [start for _, start, _ in spans[::SHARD_RUN]] + [spans[-1][2]]
    return tuple((u, u) for u in at)


def assert_runs(index: WdsIndex, folder: Path) -> None:
    for s in index.shards:
        assert s.runs == boundaries(str(folder / s.url)), s.url


def assert_built(built: tuple[tuple[str, WdsShard], ...]) -> None:
    for where, s in built:
        assert s.runs == boundaries(where), s.url


lengths = st.lists(
    st.lists(st.integers(0, 900), min_size=1, max_size=3 * SHARD_RUN + 3), min_size=2, max_size=4
)


@settings(max_examples=15, deadline=None)
@given(
    sessions=lengths,
    shard_size=st.integers(8_000, 200_000),
    seed=st.none() | st.integers(0, 3),
    append=st.lists(st.integers(0, 900), min_size=1, max_size=2 * SHARD_RUN + 1),
)
def test_plain_runs_are_the_sample_boundaries_every_run(
    sessions: list[list[int]], shard_size: int, seed: int | None, append: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "parts").mkdir()
        out = Output(str(root / "out"))
        tars = [session_tar(root / "parts", k, sizes) for k, sizes in enumerate(sessions)]
        options = WdsOptions(shard_size=shard_size, shuffle_seed=seed)
        index = write_shards(out, tars, options)
        assert all(s.runs for s in index.shards) and read_index(out) == index
        assert_runs(index, root / "out" / "wds")

        more = session_tar(root / "parts", len(sessions), append)
        grown = write_shards(out, [more], replace(options, append=True))
        assert grown.shards[: len(index.shards)] == index.shards  # the old shards as they were
        assert_runs(grown, root / "out" / "wds")

        gone = {tars[0][0]}
        pruned = prune_shards(out, grown, gone, str(root / "pruned"))
        assert_built(pruned.built)
        kept = {s.url for s in grown.shards}
        assert all(s in grown.shards for s in pruned.index.shards if s.url in kept)

        subset = Output(str(root / "subset"))
        copied = copy_samples(
            out, grown, {tars[-1][0], more[0]}, subset, str(root / "sub"), 60_000, "t"
        )
        assert copied.built and all(s.runs for _, s in copied.built)
        assert_built(copied.built)


def test_a_set_written_before_plain_runs_is_pruned_as_before(tmp_path: Path) -> None:
    """An index that lists no runs for its plain shards (an older set) is still taken apart
    by remove and subset, which then list the runs of the shards they write."""
    (tmp_path / "parts").mkdir()
    out = Output(str(tmp_path / "out"))
    tars = [session_tar(tmp_path / "parts", k, [300] * 40) for k in range(3)]
    index = write_shards(out, tars, WdsOptions(shard_size=40_000))
    old = WdsIndex.from_dict(
        {**index.to_dict(), "shards": [{**s, "runs": []} for s in index.to_dict()["shards"]]}
    )
    assert not any(s.runs for s in old.shards)
    pruned = prune_shards(out, old, {tars[1][0]}, str(tmp_path / "pruned"))
    assert pruned.built
    assert_built(pruned.built)
    copied = copy_samples(
        out, old, {tars[2][0]}, Output(str(tmp_path / "s")), str(tmp_path / "c"), 1 << 40, "t"
    )
    assert_built(copied.built)
