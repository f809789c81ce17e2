"""The sample source over the WebDataset shards: ``ShardSource``, streaming NumPy batches equal
to ``ZarrSource``'s for the same options.

**Consumers.** Every reading process (a DataLoader worker on a rank) is one consumer of
``consumers``. The shards' samples, laid end to end in the epoch's shard order, are cut into
``consumers`` contiguous ranges of equal size (within one sample): each sample goes to exactly
one consumer per epoch and consumers get equal shares however the shards are sized (of the
selected sessions' samples only as evenly as those spread over the shards: ranges are cut over
all samples). A consumer streams the shards its range overlaps and decodes only its samples.

**Decoding.** Members are grouped by the one tar reader (``formats.wds.tar``); a ``.npy``
picture whose header is the one this project writes becomes a NumPy view of the member's bytes
(``np.frombuffer``, no parsing: other headers go through ``np.load``), a ``.png`` or ``.webp``
(lossless) is decoded by Pillow; the ``.json`` is parsed by ``labels.decode_sample_json`` (only
the fields the labels use). Frames are copied once, into the batch.

**Blank frames and windows** are ruled on by ``windows.StreamJudge`` as the samples stream by
(blank: all zeros), so they need shards in frame order: windows refuse shards written with
``--shuffle``. With windows, shards are read in index order and a consumer also reads the
``history`` samples before its range and the ``horizon`` after it (context it does not hand
out), so its verdicts are those the Zarr reader reaches over whole sessions.

**Shuffling** (``shuffle=True``, without windows) is the Zarr reader's chunk-aware shuffle
(``plan.epoch_order``) with *runs* for chunks: the samples laid end to end are cut into runs of
``shuffling.run`` consecutive samples of one shard, the runs are put in an order seeded by the
seed and the epoch, and the samples of each ``shuffling.runs`` consecutive runs of that order
are mixed. The epoch's order depends on the seed and the epoch only; consumers take equal
contiguous slices of it. A consumer reads each run it needs with one ranged read of the run's
bytes (a run of 32 samples: about 1.6 MB, read forward) from where index.json's ``runs`` say it
begins to where the next one does (a compressed shard's inflated alone), and checks it holds
the run's number of samples: no shard is read before the first batch. With some sessions only,
the shards that hold none of them are not read, and the other sessions' samples of the rest are
left out as they are read. A shard whose runs index.json does not list (a plain shard of a set
written before plain shards listed them) is read through its table of sample offsets instead
(``sample_spans``: its tar headers, read once per shard and process, and kept in the disk cache
when there is one). With windows, the shards are read in order and each consumer passes its
samples through a ``buffer``-sample shuffle buffer.

**Random access** (``source[i]``, ``source.fetch(ids)``, ``len(source)``): sample ``i`` of the
selected sessions' samples in shard order, through the table of sample offsets (a compressed
shard is decompressed once for it; consecutive samples are read together). It needs the
dataset's alignment tables to know blank frames (or ``skip_blank=False``), and no windows.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import random
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import IO, Any, Final, TypeVar, cast

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.formats.wds import INDEX, WdsIndex, iter_tar_samples, shuffle_buffer
from reacture_convert.formats.wds.compression import SHARD_RUN, GzipMembers, inflate_run
from reacture_convert.formats.wds.encodings import decode_image
from reacture_convert.formats.wds.index import WdsShard
from reacture_convert.formats.wds.tar import sample_spans, tar_size
from reacture_convert.ingest.npy import npy_bytes
from reacture_convert.output.catalog import CATALOG
from reacture_convert.output.fetch import pool
from reacture_convert.output.layout import frames_table_path
from reacture_convert.output.storage import Output
from reacture_convert.read.batch import (
    FRAME_SHAPE,
    Batch,
    MakeBuffers,
    batch_spec,
    gather_labels,
    label_table,
    numpy_buffers,
    put_frame,
    unbatch,
)
from reacture_convert.read.cache import ByteCache, CacheOptions
from reacture_convert.read.labels import FrameLabels, SampleJson, decode_sample_json
from reacture_convert.read.options import Layout, ReadOptions, ShuffleOptions
from reacture_convert.read.plan import epoch_order, rank_batches
from reacture_convert.read.session import OutLike, as_output, read_table
from reacture_convert.read.sources.base import log_skips
from reacture_convert.read.splits import select_sessions
from reacture_convert.read.windows import Item, StreamJudge, judge

__all__ = ["ShardSource", "consumer_range", "decode_frame", "read_index_at"]


_FRAME_BYTES: Final = int(np.prod(FRAME_SHAPE))
_NPY_HEADER: Final = npy_bytes(np.zeros(FRAME_SHAPE, np.uint8))[:-_FRAME_BYTES]
I64 = npt.NDArray[np.int64]
Payload = tuple[npt.NDArray[np.uint8], SampleJson]
Span = tuple[str, int, int]  # a sample's key and its bytes [start, end) in its shard
Members = tuple[str, dict[str, bytes]]
Window = tuple[Sequence[Item[Payload]], Sequence[Item[Payload]]]
B = TypeVar("B")


def read_index_at(out: Output) -> tuple[WdsIndex, str]:
    """The index of ``out`` (a dataset, or the URL of an ``index.json``) and the URL of the
    folder its shards are in."""
    if out.url.rstrip("/").endswith(".json"):
        path, shown = out.root, out.url
    else:
        path, shown = out.path(INDEX), out.url_of(INDEX)
    if not out.fs.exists(path):
        raise OutputError(f"{shown} does not exist; convert with --format wds to get shards")
    with out.fs.open(path, "rb") as f:
        index = WdsIndex.from_dict(json.loads(f.read()))
    folder = path.rsplit("/", 1)[0]
    base = out.url_for(folder)
    return index, base


def consumer_range(total: int, consumer: int, consumers: int) -> tuple[int, int]:
    """Consumer ``consumer``'s samples ``[lo, hi)`` of ``total`` laid end to end."""
    if not 0 <= consumer < consumers:
        raise ConfigError(f"consumer {consumer} is not in 0..{consumers - 1}")
    return consumer * total // consumers, (consumer + 1) * total // consumers


def decode_frame(members: dict[str, bytes], encoding: str, where: str) -> npt.NDArray[np.uint8]:
    """A sample's picture as a uint8 (128, 128, 3) array, bottom-up as stored."""
    data = members.get(encoding)
    if data is None:
        raise OutputError(
            f"{where}: the sample lacks its .{encoding} member; convert again "
            "(or check the shard against index.json: reacture-convert verify)"
        )
    hl = len(_NPY_HEADER)
    if encoding == "npy" and len(data) == hl + _FRAME_BYTES and bytes(data[:hl]) == _NPY_HEADER:
        return np.frombuffer(data, np.uint8, _FRAME_BYTES, hl).reshape(FRAME_SHAPE)
    try:
        if encoding == "npy":
            frame = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            frame = decode_image(data, encoding)
    except (ValueError, OSError) as e:
        raise OutputError(f"{where}: the .{encoding} member does not decode ({e})") from None
    if frame.dtype != np.uint8 or frame.shape != FRAME_SHAPE:
        raise OutputError(
            f"{where}: the picture is {frame.dtype} {frame.shape}, not uint8 {FRAME_SHAPE}"
        )
    return np.asarray(frame)


class ShardSource:
    """The samples of a dataset's WebDataset shards, streamed (see the module doc).

    ``source``: the converted dataset (its ``wds/index.json`` is read) or the URL of an
    ``index.json``; ``options`` as for ``ZarrSource``. Shards are bottom-up: ``flip`` turns
    every frame right way up.

    ``skipped_blank`` / ``dropped_windows``: what the options leave out over all consumers,
    known up front when the dataset also has its alignment tables (``--format zarr,wds``);
    else None (each consumer logs its own counts at the end of its pass). ``cache``: keep
    whole shards in a local disk cache (``read.cache``) and read them from there."""

    def __init__(
        self,
        source: OutLike,
        options: ReadOptions | None = None,
        *,
        storage_options: Any = None,
        layout: Layout = "HWC",
        shuffling: ShuffleOptions | None = None,
        cache: CacheOptions | None = None,
    ) -> None:
        self.options = options = options or ReadOptions()
        self.shuffling = shuffling or ShuffleOptions()
        self.cache = None if cache is None else ByteCache(cache)
        out = as_output(source, storage_options)
        self.index, base = read_index_at(out)
        self.urls = tuple(f"{base}/{s.url}" for s in self.index.shards)
        self.storage_options = dict(out.storage_options)
        self.layout: Layout = layout
        self.sessions = select_sessions([s.session for s in self.index.sessions], options, base)
        self._selected = frozenset(self.sessions)
        if options.windowed and self.index.shuffle_seed is not None:
            raise ConfigError(
                f"{base}: history/horizon windows need shards in frame order, and these were "
                "written shuffled (--shuffle): convert without --shuffle, or read the Zarr "
                "sessions (source='zarr')"
            )
        self.total_frames = sum(
            s.samples for s in self.index.sessions if s.session in self._selected
        )
        counts = _counts_from_tables(out, self.sessions, options)
        self.skipped_blank: int | None = counts[0] if counts else None
        self.dropped_windows: int | None = counts[1] if counts else None
        self._blanks: dict[str, frozenset[int]] | None = counts[2] if counts else None
        if counts:
            log_skips(base, options, counts[0], counts[1], self.total_frames)
        self._local = out.is_local
        sizes = np.array([s.samples for s in self.index.shards], dtype=np.int64)
        self._starts: I64 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._spans: dict[int, list[Span]] = {}
        self._compressed = self.index.compression != "none"
        self._runs_fit: set[int] = set()  # shards whose listed runs passed ``_runs_problem``
        self._kept: I64 | None = None
        self._mask: npt.NDArray[np.bool_] | None = None
        self._folders: dict[str, Output] = {}  # the shards' folders, made once

    def __len__(self) -> int:
        """The samples of an epoch over all consumers (known with alignment tables, or when
        nothing is left out: ``skip_blank=False`` and no windows)."""
        if not self.options.skip_blank and not self.options.windowed:
            return self.total_frames
        if self.skipped_blank is None or self.dropped_windows is None:
            raise TypeError(
                "the number of samples is not known before reading: this dataset has shards "
                "but no alignment tables to count blank frames and windows in"
            )
        return self.total_frames - self.skipped_blank - self.dropped_windows

    # --- streaming --------------------------------------------------------------------------------
    def run_of(self) -> I64:
        """Each sample's run (the samples laid end to end in index order): ``shuffling.run``
        consecutive samples of one shard, numbered over all shards."""
        run = self.shuffling.run
        sizes = np.diff(self._starts)
        first = np.concatenate([[0], np.cumsum(-(-sizes // run))[:-1]]).astype(np.int64)
        shard = np.repeat(np.arange(sizes.shape[0]), sizes)
        j = np.arange(self._starts[-1], dtype=np.int64) - self._starts[shard]
        runs: I64 = first[shard] + j // run
        return runs

    def epoch_positions(self, seed: int, epoch: int) -> I64:
        """Every sample's position (shards laid end to end in index order) in the order of
        shuffled epoch ``epoch``: a function of ``seed``, ``epoch`` and ``shuffling`` only."""
        return epoch_order(self.run_of(), True, seed, epoch, self.shuffling.runs)

    def iter_windows(
        self,
        consumer: int = 0,
        consumers: int = 1,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
    ) -> Iterator[Window]:
        """Consumer ``consumer``'s kept samples, each as ``(history, horizon)`` items: its
        slice of the epoch (see the module doc for how ``shuffle`` mixes)."""
        total = int(self._starts[-1])
        lo, hi = consumer_range(total, consumer, consumers)
        where = f"{self._folder()} (consumer {consumer} of {consumers})"
        if shuffle and not self.options.windowed:
            return self._mixed(self.epoch_positions(seed, epoch)[lo:hi], where)
        k, h = self.options.history, self.options.horizon
        start, stop = max(0, lo - k), min(total, hi + h)
        judged = StreamJudge[Payload](self.options)
        order = range(len(self.urls))

        def windows() -> Iterator[Window]:
            for item in self._items(order, start, stop, lo, hi):
                yield from judged.push(item)
            yield from judged.finish()
            if self.skipped_blank is None:
                log_skips(where, self.options, judged.skipped, judged.dropped, hi - lo)

        if not shuffle:
            return windows()
        rng = random.Random(f"samples-{seed}-{epoch}-{consumer}")
        return shuffle_buffer(windows(), self.shuffling.buffer, rng)

    def iter_batches(
        self,
        batch_size: int,
        *,
        drop_last: bool = False,
        build: Callable[[Sequence[Window]], B] | None = None,
        **stream: Any,
    ) -> Iterator[B]:
        """``iter_windows(**stream)`` in batches of ``batch_size``, each made by ``build``
        (default ``self.build``: NumPy arrays)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: give at least 1")
        make = build or cast(Callable[[Sequence[Window]], B], self.build)
        pending: list[Window] = []
        for window in self.iter_windows(**stream):
            pending.append(window)
            if len(pending) == batch_size:
                yield make(pending)
                pending = []
        if pending and not drop_last:
            yield make(pending)

    def build(self, windows: Sequence[Window], buffers: MakeBuffers = numpy_buffers) -> Batch:
        """The batch of these samples: frames copied once, labels from their ``.json``."""
        k, h = self.options.history, self.options.horizon
        out = buffers(batch_spec(len(windows), self.options, self.layout))
        frames = out("frame")
        for j, (history, _) in enumerate(windows):
            for t, item in enumerate(history):
                put_frame(
                    frames[j, t] if k else frames[j],
                    item.payload[0],
                    self.options.flip,
                    self.layout,
                )
        labels = FrameLabels.from_samples([x.payload[1] for _, ahead in windows for x in ahead])
        rows = np.arange(len(windows), dtype=np.int64) * (h + 1)
        batch: Batch = {"frame": frames}
        names = [history[-1].session for history, _ in windows]
        batch.update(gather_labels(label_table(labels), rows, h, names, out))
        return batch

    def _items(
        self, order: Sequence[int], start: int, stop: int, lo: int, hi: int
    ) -> Iterator[Item[Payload]]:
        """The samples at positions ``[start, stop)`` of the shards laid end to end in
        ``order``, of the selected sessions; those in ``[lo, hi)`` are own."""
        at = 0
        for shard in order:
            n = self.index.shards[shard].samples
            if at + n <= start or at >= stop:
                at += n
                continue
            url = self.urls[shard]
            with self._open(shard) as raw:
                f = self._decompressed(raw, shard)
                for j, (key, members) in enumerate(iter_tar_samples(f, url)):
                    p = at + j
                    if p >= stop:
                        break
                    if p < start or key.partition("/")[0] not in self._selected:
                        continue
                    yield self._item(key, members, url, lo <= p < hi)
            at += n

    def _item(self, key: str, members: dict[str, bytes], url: str, own: bool) -> Item[Payload]:
        """The item of sample ``key`` of shard ``url`` (its ``.json`` and picture decoded)."""
        where = f"{url}: sample {key!r}"
        if "json" not in members:
            raise OutputError(
                f"{where} lacks its .json member; convert again (or check the "
                "shard against index.json: reacture-convert verify)"
            )
        meta = decode_sample_json(members["json"], where)
        frame = decode_frame(members, self.index.encoding, where)
        return Item(
            meta.session,
            int(meta.frame_index),
            meta.timestamp_ms,
            not frame.any(),
            own,
            (frame, meta),
        )

    def _mixed(self, order: I64, where: str) -> Iterator[Window]:
        """The samples at positions ``order`` (a consumer's slice of a shuffled epoch), in that
        order: each run read once, when its first sample is due, together with the other runs
        due within ``shuffling.buffer`` samples; a run is let go once its samples are out.
        With some sessions only, the shards of none of them are left out before reading, the
        other sessions' samples of the rest as they are read."""
        if len(self._selected) < len(self.index.sessions):
            order = order[self._chosen()[order]]
        shard_of = np.searchsorted(self._starts, order, side="right") - 1
        j_of = order - self._starts[shard_of]
        runs, which, left = np.unique(self.run_of()[order], return_inverse=True, return_counts=True)
        first = np.full(runs.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(runs.shape[0], -1, dtype=np.int64)
        np.minimum.at(first, which, j_of)
        np.maximum.at(last, which, j_of)
        run_shard = np.empty(runs.shape[0], dtype=np.int64)
        run_shard[which] = shard_of
        wanted = list(zip(run_shard.tolist(), first.tolist(), last.tolist(), strict=True))
        counts, which_l, j_l = left.tolist(), which.tolist(), j_of.tolist()
        ahead = self.shuffling.buffer
        held: dict[int, dict[int, Members]] = {}
        pending: dict[int, Future[dict[int, Members]]] = {}
        remote = not self._local and self.cache is None

        def request(runs: Sequence[int]) -> None:
            new = [x for x in dict.fromkeys(runs) if x not in held and x not in pending]
            self._learn(wanted[x][0] for x in new)
            for x in new:
                pending[x] = pool().submit(self._read_run, wanted[x])

        skipped = seen = 0
        for i, (r, j) in enumerate(zip(which_l, j_l, strict=True)):
            if r not in held and not remote:
                due = list(dict.fromkeys(x for x in which_l[i : i + ahead] if x not in held))
                for rr, got in zip(due, self._read_runs([wanted[x] for x in due]), strict=True):
                    held[rr] = got
            elif r not in held:
                # the runs due now, then the next buffer's: in flight while these are handed out
                request(which_l[i : i + ahead])
                request(which_l[i + ahead : i + 2 * ahead])
                held[r] = pending.pop(r).result()
            key, members = held[r][j]
            counts[r] -= 1
            if not counts[r]:
                del held[r]
            if key.partition("/")[0] not in self._selected:
                continue
            seen += 1
            item = self._item(key, members, self.urls[wanted[r][0]], True)
            if item.blank and self.options.skip_blank:
                skipped += 1
                continue
            yield [item], [item]
        if self.skipped_blank is None:
            log_skips(where, self.options, skipped, 0, seen)

    def _chosen(self) -> npt.NDArray[np.bool_]:
        """Whether each sample (shards laid end to end) is in a shard that holds a selected
        session (index.json's ``sessions``: no shard is read for this)."""
        if self._mask is None:
            held = [not self._selected.isdisjoint(s.sessions) for s in self.index.shards]
            self._mask = np.repeat(np.array(held, dtype=bool), np.diff(self._starts))
        return self._mask

    # --- offsets and ranged reads -----------------------------------------------------------------
    def spans(self, shard: int) -> list[Span]:
        """Each sample's key and bytes ``[start, end)`` in shard ``shard`` (its tar headers,
        read once per process; kept in the disk cache when there is one). For a compressed
        shard the offsets are in its tar stream (the shard is decompressed once for them)."""
        got = self._spans.get(shard)
        if got is not None:
            return got
        info = self.index.shards[shard]
        key = f"wds-spans|{info.sha256}"
        raw = self.cache.get(key) if self.cache is not None else None
        if raw is not None:
            got = [(str(k), int(a), int(b)) for k, a, b in json.loads(raw)]
        else:
            with self._open(shard) as f:
                if self._compressed:
                    gz = GzipMembers(f, self.urls[shard])
                    got = sample_spans(cast(IO[bytes], gz), self.urls[shard])
                    gz.drain()
                else:
                    got = sample_spans(f, self.urls[shard])
            if self.cache is not None:
                self.cache.put(key, json.dumps(got).encode())
        if len(got) != info.samples:
            raise OutputError(
                f"{self.urls[shard]}: holds {len(got)} sample(s), index.json says "
                f"{info.samples}; check the shards against index.json (reacture-convert verify)"
            )
        self._spans[shard] = got
        return got

    def scan(self) -> None:
        """Learn now the sample offsets (``spans``) of every shard that a shuffled epoch
        cannot read by index.json's runs (``_listed``), from an object store several shards
        at once: a loader calls it before it starts its workers, so that they inherit the
        offsets instead of each reading those shards' headers itself. A set that lists every
        shard's runs reads nothing here."""
        todo = [s for s in range(len(self.urls)) if s not in self._spans and not self._listed(s)]
        if self._local or self.cache is not None or len(todo) < 2:
            for shard in todo:
                self.spans(shard)
        else:
            list(pool().map(self.spans, todo))

    def _read_runs(self, wanted: Sequence[tuple[int, int, int]]) -> list[dict[int, Members]]:
        """The samples ``first..last`` of each ``(shard, first, last)`` of ``wanted`` by their
        number in the shard, each range read with one ranged read (from an object store, the
        ranges requested together)."""
        self._learn(w[0] for w in wanted)
        if self._local or self.cache is not None or len(wanted) < 2:
            return [self._read_run(w) for w in wanted]
        return list(pool().map(self._read_run, wanted))

    def _listed(self, shard: int) -> bool:
        """Whether a read of shard ``shard`` takes its runs from index.json (``_read_listed``)
        rather than its sample offsets (``spans``): it lists them (compressed shards and
        plain ones written since plain shards list them), the reader's runs are whole runs of
        them, and the offsets are not known already (then a read takes just its samples)."""
        return (
            bool(self.index.shards[shard].runs)
            and self.shuffling.run % SHARD_RUN == 0
            and shard not in self._spans
        )

    def _learn(self, shards: Iterable[int]) -> None:
        """Learn the sample offsets of those of ``shards`` that reads take them from."""
        for shard in dict.fromkeys(shards):
            if not self._listed(shard):
                self.spans(shard)

    def _read_run(self, wanted: tuple[int, int, int]) -> dict[int, Members]:
        """Samples ``first..last`` of ``(shard, first, last)`` (by index.json's runs, or its
        spans known already): at least those, by their number in the shard."""
        shard, first, last = wanted
        if self._listed(shard):
            return self._read_listed(shard, first // SHARD_RUN, last // SHARD_RUN)
        spans = self._spans[shard]
        start, end = spans[first][1], spans[last][2]
        if self._compressed:
            data = self._read_inflated(shard, start, end)
        else:
            data = self._read_range(shard, start, end)
        got = dict(enumerate(iter_tar_samples(io.BytesIO(data), self.urls[shard]), first))
        if len(got) != last + 1 - first or got[last][0] != spans[last][0]:
            raise OutputError(
                f"{self.urls[shard]}: samples {first}..{last} are not where its tar "
                "headers put them; the shard changed while it was read (read it again)"
            )
        return got

    def _read_listed(self, shard: int, k0: int, k1: int) -> dict[int, Members]:
        """Every sample of runs ``k0..k1`` of shard ``shard`` by its number in the shard,
        read with one ranged read from index.json's ``runs`` (a compressed shard's inflated):
        the runs must hold ``SHARD_RUN`` samples each (the last one the rest), else
        OutputError naming the shard."""
        info, url = self.index.shards[shard], self.urls[shard]
        first = k0 * SHARD_RUN
        expected = min(info.samples, (k1 + 1) * SHARD_RUN) - first
        if shard not in self._runs_fit:  # (once a shard: the check goes over all its runs)
            problem = _runs_problem(info, self._compressed)
            if problem is not None:
                raise _bad_runs(url, k0, k1, problem)
            self._runs_fit.add(shard)
        (c0, u0), (c1, u1) = info.runs[k0], info.runs[k1 + 1]
        try:
            data = self._read_range(shard, c0, c1)
            if self._compressed:
                data = inflate_run(data, u1 - u0, url, c0)
            got = dict(enumerate(iter_tar_samples(io.BytesIO(data), url), first))
        except OutputError as e:
            why = str(e).removeprefix(f"{url}: ")
            raise _bad_runs(url, k0, k1, f"bytes {c0}..{c1}: {why}") from None
        if len(got) != expected:
            why = f"bytes {c0}..{c1} hold {len(got)} sample(s), not {expected}"
            raise _bad_runs(url, k0, k1, why)
        return got

    def _read_inflated(self, shard: int, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of compressed shard ``shard``'s tar stream: the runs that
        hold them (index.json's ``runs``) read with one ranged read and inflated (no more than
        they hold)."""
        runs = self.index.shards[shard].runs
        tar_at = [u for _, u in runs]
        first = bisect.bisect_right(tar_at, start) - 1
        last = bisect.bisect_left(tar_at, end)
        if first < 0 or last >= len(runs):
            raise OutputError(
                f"{self.urls[shard]}: index.json's runs do not hold tar bytes {start}..{end}; "
                "check the shards against index.json (reacture-convert verify)"
            )
        (c0, u0), (c1, u1) = runs[first], runs[last]
        data = inflate_run(self._read_range(shard, c0, c1), u1 - u0, self.urls[shard], c0)
        return data[start - u0 : end - u0]

    def _decompressed(self, raw: IO[bytes], shard: int) -> IO[bytes]:
        """Shard ``shard``'s tar stream from its bytes ``raw`` (decompressed when it is)."""
        if not self._compressed:
            return raw
        return cast(IO[bytes], GzipMembers(raw, self.urls[shard]))

    def _read_range(self, shard: int, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of shard ``shard`` (from the cache when there is one)."""
        if self.cache is None and not self._local:
            folder, path = self._place(shard)
            data: bytes = folder.fs.cat_file(path, start=start, end=end)
            return data
        with self._open(shard) as f:  # a local file: its size bounds the read (index.json's)
            end = min(end, os.fstat(f.fileno()).st_size)
            f.seek(start)
            return f.read(max(0, end - start))  # (one read: no pieces joined)

    # --- random access ----------------------------------------------------------------------------
    def kept_positions(self) -> I64:
        """The positions (shards laid end to end) of the samples ``source[i]`` reads: the
        selected sessions' samples, blank frames left out with ``skip_blank``."""
        if self._kept is not None:
            return self._kept
        where = self._folder()
        if self.options.windowed:
            raise ConfigError(
                f"{where}: random access over shards takes no history/horizon windows; read "
                "the Zarr sessions (source='zarr') or stream the shards"
            )
        blanks = self._blanks
        if self.options.skip_blank and blanks is None:
            raise ConfigError(
                f"{where}: random access over shards needs the alignment tables to know blank "
                "frames (convert with --format zarr,wds), or pass skip_blank=False"
            )
        keep: list[int] = []
        p = 0
        for shard in range(len(self.urls)):
            for key, _, _ in self.spans(shard):
                session, _, frame = key.partition("/")
                if session in self._selected and not (
                    blanks is not None
                    and self.options.skip_blank
                    and int(frame.rpartition("/")[2]) in blanks[session]
                ):
                    keep.append(p)
                p += 1
        self._kept = np.array(keep, dtype=np.int64)
        return self._kept

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index`` as NumPy values (the ``[j]`` of a one-sample batch)."""
        return next(unbatch(self.fetch([index])))

    def locate(self, index: int) -> tuple[str, int]:
        """``(session, frame_index)`` of sample ``index`` (negative counts back)."""
        (p,) = self._positions([index]).tolist()
        shard = int(np.searchsorted(self._starts, p, side="right")) - 1
        key = self.spans(shard)[p - int(self._starts[shard])][0]
        return key.partition("/")[0], int(key.rpartition("/")[2])

    def fetch(
        self, ids: Sequence[int] | npt.NDArray[np.integer], buffers: MakeBuffers = numpy_buffers
    ) -> Batch:
        """The batch of samples ``ids`` (``batch`` describes it), written into ``buffers``:
        consecutive samples of a shard read with one ranged read."""
        positions = self._positions(ids)
        need = np.unique(positions)
        shard = np.searchsorted(self._starts, need, side="right") - 1
        j = need - self._starts[shard]
        cut = np.flatnonzero((np.diff(need) != 1) | (np.diff(shard) != 0)) + 1
        heads, tails = np.concatenate([[0], cut]), np.concatenate([cut, [need.shape[0]]]) - 1
        wanted = list(zip(shard[heads].tolist(), j[heads].tolist(), j[tails].tolist(), strict=True))
        got: dict[int, Members] = {}
        for (s, _, _), run in zip(wanted, self._read_runs(wanted), strict=True):
            got.update((int(self._starts[s]) + jj, m) for jj, m in run.items())
        items = []
        for p in positions.tolist():
            key, members = got[p]
            s = int(np.searchsorted(self._starts, p, side="right")) - 1
            items.append(self._item(key, members, self.urls[s], True))
        return self.build([([x], [x]) for x in items], buffers)

    def chunk_of(self) -> I64:
        """Each sample's run (what a shuffled plan groups, as the Zarr reader's chunks)."""
        runs: I64 = self.run_of()[self.kept_positions()]
        return runs

    def epoch_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        workers: int = 1,
        window: int | None = None,
    ) -> list[I64]:
        """The sample ids of each batch of this rank's share of an epoch, as
        ``ZarrSource.epoch_batches`` plans them, with runs for chunks (``window`` runs mixed,
        default ``shuffling.runs``): the random-access way to read shards."""
        mix = self.shuffling.runs if window is None else window
        order = epoch_order(self.chunk_of(), shuffle, seed, epoch, mix)
        return rank_batches(
            order,
            batch_size,
            shuffle=shuffle,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            workers=workers,
        )

    def _positions(self, ids: Sequence[int] | npt.NDArray[np.integer]) -> I64:
        kept = self.kept_positions()
        picked = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = kept.shape[0]
        if picked.size and (picked.min() < -n or picked.max() >= n):
            bad = picked[(picked < -n) | (picked >= n)][0]
            raise IndexError(f"index {int(bad)} out of range for {n} samples")
        positions: I64 = kept[picked % n] if n else picked
        return positions

    def _open(self, shard: int) -> IO[bytes]:
        """Shard ``shard`` to read forward: from the cache when there is one (filled first),
        else from its store (``Output.open_read``: read ahead from an object store)."""
        if self.cache is None:
            return self._fetch(shard)

        def fill(f: IO[bytes]) -> None:
            with self._fetch(shard) as src:
                shutil.copyfileobj(src, f, _COPY_PIECE)

        key = f"wds-shard|{self.index.shards[shard].sha256}"
        return open(self.cache.file(key, fill), "rb")

    def _folder(self) -> str:
        """Where the shards are (for messages)."""
        return self.urls[0].rsplit("/", 1)[0] if self.urls else "the shard set"

    def _fetch(self, shard: int) -> IO[bytes]:
        folder, path = self._place(shard)
        return folder.open_read(path, self.index.shards[shard].bytes)

    def _place(self, shard: int) -> tuple[Output, str]:
        """The folder of shard ``shard`` and its path there."""
        at, name = self.urls[shard].rsplit("/", 1)
        folder = self._folders.get(at)
        if folder is None:
            folder = self._folders[at] = Output(at, self.storage_options)
        return folder, folder.path(name)


_COPY_PIECE: Final = 16 << 20


def _runs_problem(shard: WdsShard, compressed: bool) -> str | None:
    """Why ``shard``'s runs (index.json's) cannot be where its runs of ``SHARD_RUN`` samples
    begin (one a run and one at the end, ascending from the start of its tar stream, within
    its bytes; a plain shard's two offsets the same, the last where its archive ends), or
    None."""
    runs = shard.runs
    if len(runs) != -(-shard.samples // SHARD_RUN) + 1:
        return f"{len(runs)} runs listed for {shard.samples} samples"
    stored, tar = [c for c, _ in runs], [u for _, u in runs]
    if tar[0] != 0 or any(b <= a for a, b in zip(stored, stored[1:], strict=False)):
        return "the runs do not ascend from the start of the tar stream"
    if any(b <= a for a, b in zip(tar, tar[1:], strict=False)) or stored[-1] > shard.bytes:
        return f"the runs do not ascend within the shard's {shard.bytes} bytes"
    if not compressed and stored != tar:
        return "a plain shard's runs give two offsets for one run"
    if not compressed and tar_size(tar[-1]) != shard.bytes:
        return f"the last run is not where the shard's {shard.bytes}-byte archive ends"
    return None


def _bad_runs(url: str, k0: int, k1: int, why: str) -> OutputError:
    which = f"run {k0}" if k0 == k1 else f"runs {k0}..{k1}"
    return OutputError(
        f"{url}: index.json's runs do not place {which} of the shard ({why}); check the "
        "shards against index.json (reacture-convert verify)"
    )


def _counts_from_tables(
    out: Output, sessions: Sequence[str], options: ReadOptions
) -> tuple[int, int, dict[str, frozenset[int]]] | None:
    """What blank skipping and windows leave out, from the alignment tables (the same
    ``judge`` the stream applies), and each session's blank frames; None when the dataset has
    no tables."""
    if out.url.rstrip("/").endswith(".json") or not out.exists(CATALOG):
        return None
    skipped = dropped = 0
    blanks: dict[str, frozenset[int]] = {}
    for name in sessions:
        if not out.exists(frames_table_path(name)):
            return None
        table = read_table(out, frames_table_path(name), ["frame_index", "timestamp_ms", "blank"])
        verdict = judge(
            table["frame_index"].to_numpy(),
            table["timestamp_ms"].to_numpy(),
            table["blank"].to_numpy(zero_copy_only=False),
            options,
        )
        skipped += int(verdict.skipped.sum())
        dropped += int(verdict.dropped.sum())
        blank = table["blank"].to_numpy(zero_copy_only=False).astype(bool)
        blanks[name] = frozenset(table["frame_index"].to_numpy()[blank].tolist())
    return skipped, dropped, blanks
