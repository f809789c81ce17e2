"""Re-read a converted dataset and prove it: every output agrees with the catalog and the
alignment table, and (with ``sources=True``) with the original bundles, bit for bit.

Checks per converted session: Zarr frames/timestamps shape and dtype; every frame's sha256
recomputed from Zarr equals the alignment table's; the table's timestamps are the Zarr
timestamps' exact bytes; rows are 0..n-1 and each frame's ``row_index`` points at a periodic row
that names that frame (and vice versa); counts equal the catalog's. With sources: the five
files' sha256 equal the catalog's, Zarr frames and timestamps equal the .npy data, and every row
rebuilt from Parquet equals its JSONL line. WebDataset shards (the whole set, appended shards
too): each shard listed by ``wds/index.json`` is there with its size, sha256, sample count and
sessions, and the counts add up per session and in all; every sample's picture decodes (``npy``,
``png`` or ``webp``, as the shard reader decodes it) to pixels whose sha256 is the alignment
table's for that frame, and with sources the source frame's (so a lossless encoding is proved
exact, not assumed). A compressed shard (``.tar.gz``) is decompressed whole (its CRC-32 checked),
and index.json's ``runs`` must be its flush points: one every 32 samples, each run's compressed
bytes inflating alone to its samples, as the reader fetches them with one ranged read each; a
plain shard's ``runs`` (listed since plain shards list them) must be its sample boundaries
every 32 samples and the end of its archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from reacture_convert import __version__
from reacture_convert.errors import OutputError
from reacture_convert.formats.alignment import frame_digests
from reacture_convert.formats.card import (
    LICENCE_NOTE,
    card_text,
    card_version,
    kept_licence,
    shards_card_text,
)
from reacture_convert.formats.rows import rebuild_row
from reacture_convert.formats.wds.compression import (
    SHARD_RUN,
    GzipMembers,
    inflate_run,
    plain_points,
)
from reacture_convert.formats.wds.index import WdsIndex, dataset_tag, read_index
from reacture_convert.formats.wds.tar import iter_tar_samples, member_size
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, open_file
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.files import (
    HashingReader,
    hash_files,
    iter_frame_blocks,
    read_timestamps,
)
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.output.catalog import (
    CATALOG,
    LOG_DIR,
    CatalogDamagedError,
    CatalogEntry,
    read_catalog,
)
from reacture_convert.output.catalog.log import compacted_damage, list_log
from reacture_convert.output.claim import is_card, read_text
from reacture_convert.output.digests import FileDigest, hash_stream
from reacture_convert.output.layout import (
    CARD,
    CARD_ASIDE,
    INTERRUPTED,
    WDS_CARD,
    WDS_CARD_ASIDE,
    WDS_DIR,
    WDS_INDEX,
    frames_table_path,
    rows_path,
    zarr_path,
)
from reacture_convert.output.storage import Output
from reacture_convert.read.session import open_session, read_table
from reacture_convert.read.sources.shards import decode_frame

__all__ = ["MAX_PROBLEMS", "Problem", "verify_dataset", "verify_session"]

BLOCK = 256
log = logging.getLogger("reacture_convert.verify")
MAX_PROBLEMS = 20  # per session: past this, one damage is named, not repeated for every frame


@dataclass(frozen=True, slots=True)
class Problem:
    session: str
    what: str

    def __str__(self) -> str:
        return f"{self.session}: {self.what}"


class _Unreadable(Exception):
    """An output that cannot be read: ``problem`` names the file (ends the session's check)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _read_parquet(out: Output, s: str, rel: str) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = read_table(out, rel).to_pylist()
    except Exception as e:  # noqa: BLE001 - a damaged output is a finding here
        raise _Unreadable(Problem(s, f"{rel}: cannot be read ({type(e).__name__}: {e})")) from e
    return rows


def session_files(out: Output, session: str) -> dict[str, int]:
    """Every file of ``session``'s per-session outputs as they are now (path relative to OUT ->
    bytes): each object of its Zarr group, its rows and alignment tables."""
    found: dict[str, int] = {}
    root = out.root + "/"
    group = out.path(zarr_path(session))
    if not out.is_local:
        out.fs.invalidate_cache(group)
    if out.fs.isdir(group):
        for path, info in out.fs.find(group, detail=True).items():
            found[str(path).removeprefix(root)] = int(info["size"])
    for rel in (rows_path(session), frames_table_path(session)):
        if out.exists(rel):
            found[rel] = int(out.fs.size(out.path(rel)))
    return found


def hash_file(out: Output, rel: str, size: int | None = None) -> tuple[int, str]:
    """(bytes, sha256) of the file ``rel`` of OUT, read as it is now."""
    with out.open_read(out.path(rel), size) as f:
        return hash_stream(f)


def output_digests(out: Output, session: str) -> tuple[FileDigest, ...]:
    """The digest of every file of ``session``'s outputs, read as they are now (for ``repair``,
    which re-derives a row from verified outputs)."""
    return tuple(
        FileDigest(rel, *hash_file(out, rel, size))
        for rel, size in sorted(session_files(out, session).items())
    )


def _check_files(out: Output, e: CatalogEntry) -> Iterator[Problem]:
    """Every file the catalog records for the session is there with its bytes and sha256, and
    the session's Zarr group holds no other."""
    s = e.session or "?"
    present = session_files(out, s)
    for f in e.files:
        size = present.get(f.path)
        if size is None:
            yield Problem(s, f"{f.path}: missing (the catalog records {f.bytes} bytes)")
        elif size != f.bytes:
            yield Problem(
                s, f"{f.path}: truncated or grown: {size} bytes, the catalog records {f.bytes}"
            )
        elif hash_file(out, f.path, size)[1] != f.sha256:
            yield Problem(s, f"{f.path}: changed: sha256 differs from the catalog's")
    recorded = {f.path for f in e.files}
    for rel in sorted(set(present) - recorded):
        yield Problem(s, f"{rel}: not recorded in the catalog (conversion did not write it)")


def _frame_objects(frames: Any, group: str, a: int, b: int) -> list[tuple[str, int, int]]:
    """The objects (path relative to OUT, first frame, end) that hold frames ``a``..``b``."""
    shards = getattr(frames, "shards", None)
    step = int((shards or frames.chunks)[0])
    n = int(frames.shape[0])
    return [
        (f"{group}/frames/c/{k}/0/0/0", k * step, min(n, (k + 1) * step))
        for k in range(a // step, -(-b // step))
    ]


def _read_frames(frames: Any, s: str, group: str, a: int, b: int) -> np.ndarray:
    """Frames ``a``..``b``; ``_Unreadable`` naming the object that does not decode."""
    try:
        return np.asarray(frames[a:b])
    except Exception as first:  # noqa: BLE001 - which object? read them one by one
        for rel, lo, hi in _frame_objects(frames, group, a, b):
            try:
                np.asarray(frames[lo:hi])
            except Exception as e:  # noqa: BLE001
                what = f"{rel}: does not decode ({type(e).__name__}: {e})"
                raise _Unreadable(Problem(s, what)) from e
        why = f"{type(first).__name__}: {first}"
        what = f"{group}/frames: frames {a}..{b - 1} cannot be read ({why})"
        raise _Unreadable(Problem(s, what)) from first


def _read_timestamps(ts: Any, s: str, group: str) -> np.ndarray:
    try:
        return np.asarray(ts[:])
    except Exception as e:  # noqa: BLE001 - a damaged chunk is a finding
        step = int(ts.chunks[0])
        for k in range(-(-int(ts.shape[0]) // step)):
            try:
                np.asarray(ts[k * step : (k + 1) * step])
            except Exception as err:  # noqa: BLE001
                what = f"{group}/timestamps/c/{k}: does not decode ({type(err).__name__}: {err})"
                raise _Unreadable(Problem(s, what)) from err
        what = f"{group}/timestamps: cannot be read ({type(e).__name__}: {e})"
        raise _Unreadable(Problem(s, what)) from e


def _open(out: Output, s: str) -> Any:
    try:
        return open_session(out, s)
    except Exception as e:  # noqa: BLE001 - a damaged group is a finding
        what = f"{zarr_path(s)}: cannot be opened ({type(e).__name__}: {e})"
        raise _Unreadable(Problem(s, what)) from e


def _verify_session(out: Output, e: CatalogEntry) -> Iterator[Problem]:
    s = e.session or "?"
    damaged = list(_check_files(out, e)) if e.files else []
    if damaged:  # named file by file: decoding them would only say it again, less clearly
        yield from damaged
        return
    group = zarr_path(s)
    arrays = _open(out, s)
    frames, ts_arr, attrs = arrays.frames, arrays.timestamps, arrays.attrs
    n = e.n_frames
    if n is None or frames.shape != (n, 128, 128, 3) or str(frames.dtype) != "uint8":
        yield Problem(s, f"zarr frames {frames.shape} {frames.dtype}, catalog says {n} frames")
        return
    ts = _read_timestamps(ts_arr, s, group)
    provenance = attrs.get("provenance")
    recorded = provenance.get("sha256") if isinstance(provenance, dict) else None
    if recorded is not None and recorded != dict(e.hashes):
        yield Problem(s, "zarr provenance sha256 differs from the catalog's source hashes")
    table = _read_parquet(out, s, frames_table_path(s))
    if [r["frame_index"] for r in table] != list(range(n)):
        yield Problem(s, "alignment table frame_index is not 0..N-1")
        return
    table_ts = np.asarray([r["timestamp_ms"] for r in table], dtype="<f4")
    if table_ts.tobytes() != ts.astype("<f4").tobytes():
        yield Problem(s, "alignment table timestamps differ from zarr timestamps")
    blank_count = 0
    for a in range(0, n, BLOCK):
        block = _read_frames(frames, s, group, a, min(n, a + BLOCK))
        digests = frame_digests(block)
        blank: npt.NDArray[np.bool_] = np.logical_not(block.reshape(block.shape[0], -1).any(axis=1))
        blank_count += int(blank.sum())
        for k, d in enumerate(digests):
            row = table[a + k]
            if d != row["frame_sha256"]:
                yield Problem(
                    s, f"frame {a + k}: zarr bytes do not match the sha256 in the alignment table"
                )
            if row.get("blank") is not None and bool(row["blank"]) != bool(blank[k]):
                yield Problem(
                    s,
                    f"{frames_table_path(s)}: frame {a + k}: blank is {row['blank']}, but the "
                    f"frame is {'all zeros' if blank[k] else 'not all zeros'}",
                )
    if e.blank_frames is not None and e.blank_frames != blank_count:
        yield Problem(
            s, f"catalog blank_frames is {e.blank_frames}, but {blank_count} frames are all zeros"
        )
    info = attrs.get("frames")
    stored_blank = info.get("blank_frames") if isinstance(info, dict) else None
    if stored_blank is not None and stored_blank != blank_count:
        yield Problem(
            s,
            f"{group} attribute frames.blank_frames is {stored_blank}, but {blank_count} "
            "frames are all zeros",
        )
    rows = _read_parquet(out, s, rows_path(s))
    if any(r["session"] != s for r in rows) or any(r["session"] != s for r in table):
        yield Problem(s, "rows or alignment table hold rows of another session")
        return
    if e.n_rows is not None and len(rows) != e.n_rows:
        yield Problem(s, f"rows table holds {len(rows)} rows, catalog says {e.n_rows}")
    if [r["row_index"] for r in rows] != list(range(len(rows))):
        yield Problem(s, "rows row_index is not 0..n-1")
        return
    for r in table:
        ri = r["row_index"]
        if ri is None:
            continue
        periodic = rows[ri] if isinstance(ri, int) and 0 <= ri < len(rows) else None
        if (
            periodic is None
            or periodic["kind"] != "periodic"
            or periodic["frame_index"] != r["frame_index"]
        ):
            yield Problem(s, f"frame {r['frame_index']}: row_index {ri} is not its periodic row")
    referenced = {r["row_index"] for r in table if r["row_index"] is not None}
    for row in rows:
        if row["kind"] == "periodic" and row["row_index"] not in referenced:
            yield Problem(
                s,
                f"periodic row {row['row_index']} names frame {row['frame_index']} "
                "but the alignment table does not point back at it",
            )


def _find_source(e: CatalogEntry, opts: StorageOptions) -> BundleRef | None:
    container = e.source.split("!", 1)[0]
    for b in discover([container], opts).bundles:
        if b.prefix == e.prefix and b.source == e.source:
            return b
    return None


def _verify_sources(out: Output, e: CatalogEntry) -> Iterator[Problem]:
    s = e.session or "?"
    opts = out.storage_options  # convert reads inputs with the same options
    bundle = _find_source(e, opts)
    if bundle is None:
        yield Problem(s, f"source bundle {e.prefix} not found at {e.source}")
        return
    if hash_files(bundle, opts) != dict(e.hashes):
        yield Problem(s, "source files changed since conversion (sha256 differs from the catalog)")
    with as_five_file(bundle, opts) as (view, _):
        if view is None:
            yield Problem(s, "the legacy source's frames.json cannot be read any more")
            return
        yield from _compare_sources(out, s, view, opts)


def _compare_sources(
    out: Output, s: str, bundle: BundleRef, opts: StorageOptions
) -> Iterator[Problem]:
    arrays = open_session(out, s)
    start = 0
    for block in iter_frame_blocks(bundle, opts, BLOCK):
        if not np.array_equal(np.asarray(arrays.frames[start : start + len(block)]), block):
            last = start + len(block) - 1
            yield Problem(s, f"zarr frames {start}..{last} differ from the source")
        start += len(block)
    src_ts = read_timestamps(bundle, opts)
    if src_ts.tobytes() != np.asarray(arrays.timestamps[:]).astype("<f4").tobytes():
        yield Problem(s, "zarr timestamps differ from the source")
    rows = _read_parquet(out, s, rows_path(s))
    with open_file(bundle.files["data.jsonl"], opts) as f:
        for item in iter_jsonl(f, "data.jsonl"):
            if isinstance(item, ParsedRow):
                i = item.row_index
                if i >= len(rows) or rebuild_row(rows[i]) != item.obj:
                    yield Problem(s, f"row {i} (line {i + 1}) is not rebuilt exactly from Parquet")


CheckSample = Callable[[str, dict[str, bytes]], None]


def _read_shard(
    out: Output,
    url: str,
    check: CheckSample | None = None,
    compression: str = "none",
    runs: Sequence[tuple[int, int]] = (),
) -> tuple[int, str, Counter[str] | str, list[int]]:
    """A shard's size, sha256, its samples per session (or why it cannot be read) and each
    sample's tar bytes; each sample also goes to ``check`` (key, members). A compressed shard
    is decompressed whole, and ``runs`` (index.json's) must be its flush points
    (``_check_runs``)."""
    compressed = compression != "none"
    with out.fs.open(out.path(WDS_DIR, url), "rb") as raw:
        reader = HashingReader(raw)
        gz = _Segments(GzipMembers(reader, url), [u for _, u in runs]) if compressed else None
        stream = gz if gz is not None else io.BufferedReader(reader, 1 << 20)
        counted: Counter[str] = Counter()
        sizes: list[int] = []
        problem = None
        try:
            if compressed and not runs:
                raise OutputError("index.json lists no runs for this compressed shard")
            for key, members in iter_tar_samples(cast(IO[bytes], stream), url):
                counted[key.split("/", 1)[0]] += 1
                sizes.append(sum(member_size(len(data)) for data in members.values()))
                if check is not None:
                    check(key, members)
            if gz is not None:
                while gz.read(1 << 20):
                    pass
                problem = _check_runs(out, url, runs, sizes, gz.crcs)
        except OutputError as e:
            problem = str(e)
        while reader.read(1 << 20):
            pass
    return reader.count, reader.hexdigest(), counted if problem is None else problem, sizes


class _Segments:
    """A stream's bytes read through, with the CRC-32 of each segment between ``bounds``
    (ascending offsets; the last segment runs to the end)."""

    def __init__(self, stream: GzipMembers, bounds: Sequence[int]) -> None:
        self.stream, self.bounds = stream, list(bounds)
        self.crcs = [0] * len(self.bounds)
        self.pos = 0
        self.k = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        view, at = memoryview(data), 0
        while at < len(data):
            while self.k + 1 < len(self.bounds) and self.pos >= self.bounds[self.k + 1]:
                self.k += 1
            stop = self.bounds[self.k + 1] if self.k + 1 < len(self.bounds) else None
            take = len(data) - at if stop is None else min(len(data) - at, stop - self.pos)
            if self.pos >= self.bounds[self.k]:
                self.crcs[self.k] = zlib.crc32(view[at : at + take], self.crcs[self.k])
            at += take
            self.pos += take
        return data


def _run_starts(
    runs: Sequence[tuple[int, int]], sizes: Sequence[int], compressed: bool = False
) -> str | None:
    """Why index.json's ``runs`` of a shard (samples of ``sizes`` tar bytes) do not start at
    every ``SHARD_RUN`` samples and at the end of the archive (a plain shard's two offsets
    the same), or None."""
    want = [u for _, u in plain_points(sizes)]
    got = [u for _, u in runs]
    if got != want:
        wrong = [k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b]
        at = f"{len(got)} runs listed, not {len(want)}"
        if wrong:
            at = f"run {wrong[0]} at tar byte {got[wrong[0]]}, not {want[wrong[0]]}"
        return (
            f"index.json's runs are not at every {SHARD_RUN} samples and at the end of the "
            f"archive ({at})"
        )
    if not compressed and any(c != u for c, u in runs):
        return "index.json's runs of this plain shard give two different offsets for one run"
    return None


def _check_runs(
    out: Output,
    url: str,
    runs: Sequence[tuple[int, int]],
    sizes: Sequence[int],
    crcs: Sequence[int],
) -> str | None:
    """Why index.json's ``runs`` of a compressed shard (samples of ``sizes`` tar bytes; ``crcs``
    of the tar stream between its points) are not where the reader can take them: one point per
    run of ``SHARD_RUN`` samples and one at the end of the archive, each run's compressed bytes
    inflating alone to its tar bytes. None when they are."""
    problem = _run_starts(runs, sizes, compressed=True)
    if problem is not None:
        return problem
    path = out.path(WDS_DIR, url)
    for k in range(len(runs) - 1):
        (c0, u0), (c1, u1) = runs[k], runs[k + 1]
        data = out.fs.cat_file(path, start=c0, end=c1)
        try:
            same = zlib.crc32(inflate_run(data, u1 - u0, url, c0)) == crcs[k]
        except OutputError as e:
            return f"run {k} (bytes {c0}..{c1} in index.json's runs): {e}"
        if not same:
            return f"run {k} (bytes {c0}..{c1}) does not inflate alone to its samples"
    return None


def _source_digests(out: Output, e: CatalogEntry) -> list[str] | str:
    """The sha256 of every frame of a session's source bundle, or why they cannot be had."""
    opts = out.storage_options
    bundle = _find_source(e, opts)
    if bundle is None:
        return f"source bundle {e.prefix} not found at {e.source}"
    digests: list[str] = []
    with as_five_file(bundle, opts) as (view, _):
        if view is None:
            return "the legacy source's frames.json cannot be read any more"
        for block in iter_frame_blocks(view, opts, BLOCK):
            digests.extend(frame_digests(block))
    return digests


def _expected_digests(
    out: Output, sessions: Sequence[str], catalog: Sequence[CatalogEntry] | None
) -> tuple[dict[str, list[str]], list[Problem]]:
    """Per session of the shards, the sha256 its frames must have: the source frames' with
    ``catalog`` (the sessions' rows, to find their sources), else the alignment table's
    (sessions with neither are only decoded)."""
    expected: dict[str, list[str]] = {}
    problems: list[Problem] = []
    entries = {e.session: e for e in catalog or () if e.status.is_live}
    for s in sessions:
        entry = entries.get(s)
        if entry is not None:
            found = _source_digests(out, entry)
            if isinstance(found, str):
                problems.append(Problem(s, f"wds: {found}"))
            else:
                expected[s] = found
        elif out.exists(frames_table_path(s)):
            try:
                table = read_table(out, frames_table_path(s), ["frame_sha256"])
            except Exception as e:  # noqa: BLE001 - a damaged table is a finding
                why = f"{type(e).__name__}: {e}"
                problems.append(Problem(s, f"wds: {frames_table_path(s)} cannot be read ({why})"))
                continue
            expected[s] = [str(d) for d in table["frame_sha256"].to_pylist()]
    return expected, problems


class _PictureCheck:
    """Decodes every sample's picture as the shard reader does and compares the pixels' sha256
    with ``expected`` (by the key's session and frame number); keeps the first ``MAX_PROBLEMS``
    problems of each session."""

    def __init__(self, encoding: str, expected: Mapping[str, Sequence[str]], url: str) -> None:
        self.encoding, self.expected, self.url = encoding, expected, url
        self.problems: list[Problem] = []
        self._found: Counter[str] = Counter()

    def __call__(self, key: str, members: dict[str, bytes]) -> None:
        session, _, number = key.partition("/")
        if self._found[session] >= MAX_PROBLEMS:
            return
        where = f"{self.url}: sample {key!r}"
        try:
            frame = decode_frame(members, self.encoding, where)
        except OutputError as e:
            self._add(Problem(session, f"wds: {e}"))
            return
        digests = self.expected.get(session)
        if digests is None:
            return
        i = int(number) if number.isdigit() else -1
        got = hashlib.sha256(np.ascontiguousarray(frame).data).hexdigest()
        if not 0 <= i < len(digests) or got != digests[i]:
            self._add(
                Problem(
                    session,
                    f"wds: {where}: the .{self.encoding} picture's pixels differ from frame "
                    f"{number} of the source",
                )
            )

    def _add(self, problem: Problem) -> None:
        self.problems.append(problem)
        self._found[problem.session] += 1


def _verify_wds(
    out: Output, catalog: Sequence[CatalogEntry] | None = None, sources: bool = False
) -> Iterator[Problem]:
    """``wds/index.json`` against the shards: each shard is there, with the size, sha256,
    sample count and sessions the index gives, and the counts add up per session and in all
    (and equal the catalog's frame counts); every picture decodes to its source frame's exact
    pixels (see the module doc)."""
    try:
        raw = out.fs.cat_file(out.path(WDS_INDEX))
    except FileNotFoundError:
        return
    try:
        index = WdsIndex.from_dict(json.loads(raw))
    except (OutputError, ValueError, KeyError, TypeError) as e:
        yield Problem("wds", f"{WDS_INDEX} cannot be read ({type(e).__name__}: {e})")
        return
    if index.to_json() != raw:
        yield Problem(
            "wds", f"{WDS_INDEX}: changed: its bytes are not what its content is written as"
        )
    yield from _check_tags(index, derive=not index.pruned)
    in_shards = sum(s.samples for s in index.shards)
    if in_shards != index.total_samples:
        yield Problem(
            "wds",
            f"index.json says total_samples {index.total_samples} but its shards list "
            f"{in_shards} samples",
        )
    live = {e.session: e for e in catalog or () if e.status.is_live and e.session}
    for ws in index.sessions:
        entry = live.get(ws.session)
        if entry is not None and entry.n_frames is not None and entry.n_frames != ws.samples:
            yield Problem(
                ws.session,
                f"wds: index.json says {ws.samples} samples, the catalog says {entry.n_frames} "
                "frames (one sample a frame)",
            )
    expected, missing = _expected_digests(
        out, [s.session for s in index.sessions], catalog if sources else None
    )
    yield from missing
    found: Counter[str] = Counter()
    for shard in index.shards:
        if not out.exists(WDS_DIR, shard.url):
            yield Problem("wds", f"shard {shard.url} listed in index.json is missing")
            continue
        check = _PictureCheck(index.encoding, expected, shard.url)
        size, sha, held, sizes = _read_shard(out, shard.url, check, index.compression, shard.runs)
        yield from check.problems
        plain = index.compression == "none" and shard.runs and not isinstance(held, str)
        wrong = _run_starts(shard.runs, sizes) if plain else None
        if wrong is not None:  # a plain shard's runs: its sample boundaries every run
            yield Problem("wds", f"shard {shard.url}: {wrong}")
        if size != shard.bytes:
            yield Problem(
                "wds",
                f"shard {shard.url} holds {size} bytes, index.json says {shard.bytes} "
                "(truncated or grown)",
            )
        elif sha != shard.sha256:
            yield Problem("wds", f"shard {shard.url}: sha256 differs from index.json (changed)")
        if isinstance(held, str):
            what = "a tar" if index.compression == "none" else "a compressed tar"
            yield Problem("wds", f"shard {shard.url} cannot be read as {what}: {held}")
            continue
        found.update(held)
        if held.total() != shard.samples:
            yield Problem(
                "wds",
                f"shard {shard.url} holds {held.total()} samples, index.json says "
                f"{shard.samples} (a sample was removed or added)",
            )
        if tuple(sorted(held)) != shard.sessions:
            yield Problem(
                "wds",
                f"shard {shard.url} holds sessions {sorted(held)}, index.json says "
                f"{list(shard.sessions)}",
            )
    for s in index.sessions:
        if found[s.session] != s.samples:
            yield Problem(
                s.session,
                f"wds: the shards hold {found[s.session]} samples of this session, index.json "
                f"says {s.samples}",
            )


def _verify_catalog_file(out: Output, notes: list[str]) -> Iterator[Problem]:
    """``catalog.parquet``'s bytes against the digest in its footer, and its footer against
    the rows (``compacted_damage``)."""
    try:
        data = out.fs.cat_file(out.path(CATALOG))
    except FileNotFoundError:
        return
    damage, note = compacted_damage(data)
    if note is not None:
        notes.append(note)
    if damage is not None:
        yield Problem("catalog", f"{CATALOG}: {damage}")


def _check_tags(index: WdsIndex, derive: bool = True) -> Iterator[Problem]:
    """Every shard's name against the index: ``<name>-<tag>-NNNNNN.tar`` numbered in order
    (from 0 without a gap, unless sessions were removed: ``derive`` False), and (``derive``)
    each tag the sha256 of the sessions its shards hold (their samples' sha256, from the
    index), the options and the tag before it (``dataset_tag``), the last one the index's
    ``tag``: a changed session digest or option is found. A set pruned by ``remove`` mixes old
    and new tags, so only the names are checked there."""
    where = f"{WDS_INDEX}: "
    groups: list[tuple[str, set[str]]] = []  # (tag, sessions), in shard order
    last = -1
    for k, shard in enumerate(index.shards):
        stem = shard.url.removeprefix(f"{index.name}-").removesuffix(index.suffix)
        tag, _, number = stem.rpartition("-")
        in_order = number == f"{k:06d}" if derive else number.isdigit() and int(number) > last
        if stem == shard.url or not shard.url.endswith(index.suffix) or not in_order:
            yield Problem("wds", f"{where}shard {k} is named {shard.url!r}, not a name of its set")
            return
        last = int(number)
        if not groups or groups[-1][0] != tag:
            groups.append((tag, set()))
        groups[-1][1].update(shard.sessions)
    if not derive:
        return
    digests = {s.session: s.sha256 for s in index.sessions}
    previous: str | None = None
    for tag, sessions in groups:
        pairs = [(s, digests.get(s, "")) for s in sorted(sessions)]
        expected = dataset_tag(pairs, index.effective(), previous)
        if expected != tag:
            yield Problem(
                "wds",
                f"{where}changed: the shards tagged {tag} hold sessions whose sample digests "
                f"and options give the tag {expected}",
            )
            return
        previous = tag
    if previous is not None and previous != index.tag:
        yield Problem("wds", f"{where}changed: tag {index.tag!r}, its last shards' is {previous!r}")


def _card_problems(
    out: Output, rel: str, expected: Callable[[str, str], str], versions: set[str]
) -> Iterator[Problem]:
    """The card ``rel`` against the text ``expected(licence, version)`` gives: the same bytes
    but for its two licence lines (the user's to edit)."""
    data = out.fs.cat_file(out.path(rel))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield Problem("card", f"{rel}: changed: not UTF-8 text")
        return
    version = card_version(text) or __version__
    if version not in versions:
        yield Problem(
            "card",
            f"{rel}: changed: names converter version {version!r}, which is not this one and "
            "converted none of the sessions",
        )
        return
    if version != __version__:
        return  # written by another version of the converter: its text may differ
    want = expected(kept_licence(text), version).split("\n")
    have = text.split("\n")
    for k, (a, b) in enumerate(zip(have, want, strict=False)):
        licence = (a.startswith("license:") and b.startswith("license:")) or (
            LICENCE_NOTE.match(a) and LICENCE_NOTE.match(b)
        )
        if a != b and not licence:
            yield Problem(
                "card", f"{rel}: changed: line {k + 1} differs from what the dataset gives"
            )
            return
    if len(have) != len(want):
        yield Problem("card", f"{rel}: changed: {len(have)} lines, the dataset gives {len(want)}")


def _verify_cards(out: Output, catalog: Sequence[CatalogEntry]) -> Iterator[Problem]:
    """The dataset cards (``README.md`` or ``DATASET_CARD.md``, ``wds/README.md`` or
    ``wds/DATASET_CARD.md``), written again from the catalog and the index and compared."""
    try:
        index = read_index(out)
    except (OutputError, ValueError, KeyError, TypeError):
        index = None  # (said by the index's check; the cards are checked without it)
    versions = {__version__, *(e.converter_version for e in catalog)}
    places = [(CARD, CARD_ASIDE, lambda lic, v: card_text(catalog, index, lic, v))]
    if index is not None and index.shards:
        shards = index
        places.append((WDS_CARD, WDS_CARD_ASIDE, lambda lic, v: shards_card_text(shards, lic)))
    for rel, aside, expected in places:
        text = read_text(out, rel)
        if text is not None and not is_card(text):
            if not out.exists(aside):
                yield Problem(
                    "card",
                    f"{rel}: changed: not a dataset card, and there is no {aside} beside it",
                )
                continue
            rel = aside
        elif text is None:
            continue  # no card (a run that did not end): nothing to compare
        yield from _card_problems(out, rel, expected, versions)


def _first(problems: Iterator[Problem], e: CatalogEntry) -> list[Problem]:
    """The first ``MAX_PROBLEMS`` problems of a session, and a note when it has more; an
    output that cannot be read ends the list with the problem naming it."""
    found: list[Problem] = []
    try:
        for problem in problems:
            found.append(problem)
            if len(found) > MAX_PROBLEMS:
                break
    except _Unreadable as u:
        found.append(u.problem)
    if len(found) > MAX_PROBLEMS:
        note = f"more problems after these {MAX_PROBLEMS}; verification of this session stopped"
        found[MAX_PROBLEMS:] = [Problem(e.session or "?", note)]
    return found


def verify_session(out: Output, e: CatalogEntry, sources: bool = False) -> list[Problem]:
    """The problems of one converted session (its catalog row ``e``), at most
    ``MAX_PROBLEMS`` (then a note): first every file against the digests the catalog records
    (none in a catalog of an older version: then the outputs are only decoded), then what the
    outputs derive from each other; an output that cannot be read is one, naming the file."""
    try:
        found = _first(_verify_session(out, e), e)
        if sources and not found:
            found = _first(_verify_sources(out, e), e)
    except Exception as exc:  # noqa: BLE001 - a missing or corrupt output is a finding here
        found = [Problem(e.session or "?", f"cannot read outputs: {type(exc).__name__}: {exc}")]
    return found


def verify_dataset(
    out: Output, sources: bool = False, notes: list[str] | None = None
) -> tuple[int, list[Problem]]:
    """Verify every converted session of ``out``; returns (sessions checked, problems).

    At most ``MAX_PROBLEMS`` problems are listed per session (then a note). Raises
    ``OutputError`` when ``out`` holds no catalog: a mistyped path must not pass as a verified
    (empty) dataset. A damaged catalog is a problem of ``catalog`` (naming the file and the
    repair); a newest log fragment cut short by an interrupted run is left out, as every
    reader does, and said (a warning; appended to ``notes``), as is what could not be checked
    (sessions whose catalog rows record no digests, a catalog.parquet that records none)."""
    if not out.exists(CATALOG) and not out.exists(LOG_DIR):
        raise OutputError(
            f"{out.url}: no {CATALOG} here, so there is nothing to verify; give the "
            "--out folder (or URL) of a `reacture-convert convert` run (if it is one, "
            f"`reacture-convert repair {out.url}` rebuilds its catalog from its outputs)"
        )
    problems: list[Problem] = []
    checked = 0
    said: list[str] = []
    try:
        catalog = read_catalog(out, said)
    except CatalogDamagedError as damage:
        return 0, [Problem("catalog", str(damage)), *_verify_wds(out)]
    finally:
        if notes is not None:
            notes.extend(said)
    ended = not said and not list_log(out) and not out.exists(INTERRUPTED)
    said = []
    problems.extend(_verify_catalog_file(out, said))
    undigested = 0
    for e in catalog:
        if not e.status.is_live or not e.outputs:
            continue
        checked += 1
        undigested += not e.files
        problems.extend(verify_session(out, e, sources))
    if undigested:
        said.append(
            f"{undigested} session(s) have no digests of their files in the catalog (written "
            "by an older version): their outputs are checked by decoding them only; convert "
            "them again with --force to record their digests"
        )
    problems.extend(_verify_wds(out, catalog, sources))
    for note in said:
        log.warning("%s: %s", out.url, note)
    if ended:
        problems.extend(_verify_cards(out, catalog))
    else:  # (said, not warned: the catalog's own note says why)
        said.append(
            "the dataset cards are not compared with the catalog: a run did not end (its rows "
            "are in the catalog's log, or it was interrupted), and a run rewrites them at its end"
        )
    if notes is not None:
        notes.extend(said)
    return checked, problems
