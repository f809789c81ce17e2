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
exact, not assumed).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reacture_convert.errors import OutputError
from reacture_convert.formats.alignment import frame_digests
from reacture_convert.formats.rows import rebuild_row
from reacture_convert.formats.wds.index import read_index
from reacture_convert.formats.wds.tar import iter_tar_samples
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
from reacture_convert.output.layout import WDS_DIR, WDS_INDEX, frames_table_path, rows_path
from reacture_convert.output.storage import Output
from reacture_convert.read.session import open_session, read_table
from reacture_convert.read.sources.shards import decode_frame

__all__ = ["MAX_PROBLEMS", "Problem", "verify_dataset", "verify_session"]

BLOCK = 256
MAX_PROBLEMS = 20  # per session: past this, one damage is named, not repeated for every frame


@dataclass(frozen=True, slots=True)
class Problem:
    session: str
    what: str

    def __str__(self) -> str:
        return f"{self.session}: {self.what}"


def _read_parquet(out: Output, rel: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = read_table(out, rel).to_pylist()
    return rows


def _verify_session(out: Output, e: CatalogEntry) -> Iterator[Problem]:
    s = e.session or "?"
    arrays = open_session(out, s)
    frames, ts_arr, attrs = arrays.frames, arrays.timestamps, arrays.attrs
    n = e.n_frames
    if n is None or frames.shape != (n, 128, 128, 3) or str(frames.dtype) != "uint8":
        yield Problem(s, f"zarr frames {frames.shape} {frames.dtype}, catalog says {n} frames")
        return
    ts = np.asarray(ts_arr[:])
    provenance = attrs.get("provenance")
    recorded = provenance.get("sha256") if isinstance(provenance, dict) else None
    if recorded is not None and recorded != dict(e.hashes):
        yield Problem(s, "zarr provenance sha256 differs from the catalog's source hashes")
    table = _read_parquet(out, frames_table_path(s))
    if [r["frame_index"] for r in table] != list(range(n)):
        yield Problem(s, "alignment table frame_index is not 0..N-1")
        return
    table_ts = np.asarray([r["timestamp_ms"] for r in table], dtype="<f4")
    if table_ts.tobytes() != ts.astype("<f4").tobytes():
        yield Problem(s, "alignment table timestamps differ from zarr timestamps")
    for a in range(0, n, BLOCK):
        digests = frame_digests(np.asarray(frames[a : a + BLOCK]))
        for k, d in enumerate(digests):
            if d != table[a + k]["frame_sha256"]:
                yield Problem(
                    s, f"frame {a + k}: zarr bytes do not match the sha256 in the alignment table"
                )
    rows = _read_parquet(out, rows_path(s))
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
        row = rows[ri] if isinstance(ri, int) and 0 <= ri < len(rows) else None
        if row is None or row["kind"] != "periodic" or row["frame_index"] != r["frame_index"]:
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
    rows = _read_parquet(out, rows_path(s))
    with open_file(bundle.files["data.jsonl"], opts) as f:
        for item in iter_jsonl(f, "data.jsonl"):
            if isinstance(item, ParsedRow):
                i = item.row_index
                if i >= len(rows) or rebuild_row(rows[i]) != item.obj:
                    yield Problem(s, f"row {i} (line {i + 1}) is not rebuilt exactly from Parquet")


CheckSample = Callable[[str, dict[str, bytes]], None]


def _read_shard(
    out: Output, url: str, check: CheckSample | None = None
) -> tuple[int, str, Counter[str] | str]:
    """A shard's size, sha256, and its samples per session (or why it cannot be read); each
    sample also goes to ``check`` (key, members)."""
    with out.fs.open(out.path(WDS_DIR, url), "rb") as raw:
        reader = HashingReader(raw)
        stream = io.BufferedReader(reader, 1 << 20)
        counted: Counter[str] = Counter()
        problem = None
        try:
            for key, members in iter_tar_samples(stream, url):
                counted[key.split("/", 1)[0]] += 1
                if check is not None:
                    check(key, members)
        except OutputError as e:
            problem = str(e)
        while stream.read(1 << 20):
            pass
    return reader.count, reader.hexdigest(), counted if problem is None else problem


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
            table = read_table(out, frames_table_path(s), ["frame_sha256"])
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


def _verify_wds(out: Output, catalog: Sequence[CatalogEntry] | None = None) -> Iterator[Problem]:
    """``wds/index.json`` against the shards: each shard is there, with the size, sha256,
    sample count and sessions the index gives, and the counts add up per session and in all;
    every picture decodes to its source frame's exact pixels (see the module doc)."""
    if not out.exists(WDS_INDEX):
        return
    try:
        index = read_index(out)
    except (OutputError, ValueError, KeyError, TypeError) as e:
        yield Problem("wds", f"index.json cannot be read ({type(e).__name__}: {e})")
        return
    assert index is not None
    in_shards = sum(s.samples for s in index.shards)
    if in_shards != index.total_samples:
        yield Problem(
            "wds",
            f"index.json says total_samples {index.total_samples} but its shards list "
            f"{in_shards} samples",
        )
    expected, missing = _expected_digests(out, [s.session for s in index.sessions], catalog)
    yield from missing
    found: Counter[str] = Counter()
    for shard in index.shards:
        if not out.exists(WDS_DIR, shard.url):
            yield Problem("wds", f"shard {shard.url} listed in index.json is missing")
            continue
        check = _PictureCheck(index.encoding, expected, shard.url)
        size, sha, held = _read_shard(out, shard.url, check)
        yield from check.problems
        if size != shard.bytes:
            yield Problem(
                "wds",
                f"shard {shard.url} holds {size} bytes, index.json says {shard.bytes} "
                "(truncated or grown)",
            )
        elif sha != shard.sha256:
            yield Problem("wds", f"shard {shard.url}: sha256 differs from index.json (changed)")
        if isinstance(held, str):
            yield Problem("wds", f"shard {shard.url} cannot be read as a tar: {held}")
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


def _first(problems: Iterator[Problem], e: CatalogEntry) -> list[Problem]:
    """The first ``MAX_PROBLEMS`` problems of a session, and a note when it has more."""
    found = list(itertools.islice(problems, MAX_PROBLEMS + 1))
    if len(found) > MAX_PROBLEMS:
        note = f"more problems after these {MAX_PROBLEMS}; verification of this session stopped"
        found[MAX_PROBLEMS:] = [Problem(e.session or "?", note)]
    return found


def verify_session(out: Output, e: CatalogEntry, sources: bool = False) -> list[Problem]:
    """The problems of one converted session (its catalog row ``e``), at most
    ``MAX_PROBLEMS`` (then a note); an output that cannot be read is one."""
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
    reader does, and said (a warning; appended to ``notes``)."""
    if not out.exists(CATALOG) and not out.exists(LOG_DIR):
        raise OutputError(
            f"{out.url}: no {CATALOG} here, so there is nothing to verify; give the "
            "--out folder (or URL) of a `reacture-convert convert` run (if it is one, "
            f"`reacture-convert repair {out.url}` rebuilds its catalog from its outputs)"
        )
    problems: list[Problem] = []
    checked = 0
    try:
        catalog = read_catalog(out, notes)
    except CatalogDamagedError as damage:
        return 0, [Problem("catalog", str(damage)), *_verify_wds(out)]
    for e in catalog:
        if not e.status.is_live or not e.outputs:
            continue
        checked += 1
        problems.extend(verify_session(out, e, sources))
    problems.extend(_verify_wds(out, catalog if sources else None))
    return checked, problems
