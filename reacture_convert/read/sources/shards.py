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

**Shuffling** (``shuffle=True``): without windows the shard order is a permutation seeded by the
seed and the epoch, the same for every consumer; each consumer then passes its samples through a
``buffer``-sample shuffle buffer.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, TypeVar, cast

import numpy as np
import numpy.typing as npt

from reacture_convert.errors import ConfigError, OutputError
from reacture_convert.formats.wds import INDEX, WdsIndex, iter_tar_samples, shuffle_buffer
from reacture_convert.formats.wds.encodings import decode_image
from reacture_convert.ingest.npy import npy_bytes
from reacture_convert.output.catalog import CATALOG
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
)
from reacture_convert.read.cache import ByteCache, CacheOptions
from reacture_convert.read.labels import FrameLabels, SampleJson, decode_sample_json
from reacture_convert.read.options import Layout, ReadOptions, ShuffleOptions
from reacture_convert.read.session import OutLike, as_output, read_table
from reacture_convert.read.sources.base import log_skips
from reacture_convert.read.splits import select_sessions
from reacture_convert.read.windows import Item, StreamJudge, judge

__all__ = ["ShardSource", "consumer_range", "decode_frame", "read_index_at"]

_FRAME_BYTES: Final = int(np.prod(FRAME_SHAPE))
_NPY_HEADER: Final = npy_bytes(np.zeros(FRAME_SHAPE, np.uint8))[:-_FRAME_BYTES]
Payload = tuple[npt.NDArray[np.uint8], SampleJson]
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
        if counts:
            log_skips(base, options, counts[0], counts[1], self.total_frames)

    def __len__(self) -> int:
        """The samples of an epoch over all consumers (known only with alignment tables)."""
        if self.skipped_blank is None or self.dropped_windows is None:
            raise TypeError(
                "the number of samples is not known before reading: this dataset has shards "
                "but no alignment tables to count blank frames and windows in"
            )
        return self.total_frames - self.skipped_blank - self.dropped_windows

    # --- streaming --------------------------------------------------------------------------------
    def shard_order(self, shuffle: bool, seed: int, epoch: int) -> list[int]:
        order = list(range(len(self.urls)))
        if shuffle and not self.options.windowed:
            random.Random(f"shards-{seed}-{epoch}").shuffle(order)
        return order

    def iter_windows(
        self,
        consumer: int = 0,
        consumers: int = 1,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
    ) -> Iterator[Window]:
        """Consumer ``consumer``'s kept samples, each as ``(history, horizon)`` items (shuffled
        through a ``shuffling.buffer``-sample buffer with ``shuffle``)."""
        total = sum(s.samples for s in self.index.shards)
        lo, hi = consumer_range(total, consumer, consumers)
        k, h = self.options.history, self.options.horizon
        start, stop = max(0, lo - k), min(total, hi + h)
        judged = StreamJudge[Payload](self.options)
        order = self.shard_order(shuffle, seed, epoch)

        def windows() -> Iterator[Window]:
            for item in self._items(order, start, stop, lo, hi):
                yield from judged.push(item)
            yield from judged.finish()
            if self.skipped_blank is None:
                where = f"{self.urls[0].rsplit('/', 1)[0]} (consumer {consumer} of {consumers})"
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
        encoding = self.index.encoding
        for shard in order:
            n = self.index.shards[shard].samples
            if at + n <= start or at >= stop:
                at += n
                continue
            url = self.urls[shard]
            with self._open(shard) as f:
                for j, (key, members) in enumerate(iter_tar_samples(f, url)):
                    p = at + j
                    if p >= stop:
                        break
                    if p < start or key.partition("/")[0] not in self._selected:
                        continue
                    where = f"{url}: sample {key!r}"
                    if "json" not in members:
                        raise OutputError(
                            f"{where} lacks its .json member; convert again (or check the "
                            "shard against index.json: reacture-convert verify)"
                        )
                    meta = decode_sample_json(members["json"], where)
                    frame = decode_frame(members, encoding, where)
                    yield Item(
                        meta.session,
                        int(meta.frame_index),
                        meta.timestamp_ms,
                        not frame.any(),
                        lo <= p < hi,
                        (frame, meta),
                    )
            at += n

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

    def _fetch(self, shard: int) -> IO[bytes]:
        folder = Output(self.urls[shard].rsplit("/", 1)[0], self.storage_options)
        path = folder.path(self.urls[shard].rsplit("/", 1)[1])
        return folder.open_read(path, self.index.shards[shard].bytes)


_COPY_PIECE: Final = 16 << 20


def _counts_from_tables(
    out: Output, sessions: Sequence[str], options: ReadOptions
) -> tuple[int, int] | None:
    """What blank skipping and windows leave out, from the alignment tables (the same
    ``judge`` the stream applies), or None when the dataset has none."""
    if out.url.rstrip("/").endswith(".json") or not out.exists(CATALOG):
        return None
    skipped = dropped = 0
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
    return skipped, dropped
