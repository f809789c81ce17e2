"""A static HTML report to *look at* sessions: frames, timelines, cadence and findings.

``write_report`` reads either a converted dataset (``OUT`` with ``catalog.parquet``: Zarr frames
and timestamps, the rows Parquet, the catalog's findings) or unconverted bundles (a folder, file,
archive, glob or URL: found with ``discover``, judged with ``validate_bundle`` and read with the
streaming readers, reading only the frames it shows). It writes, into a local ``REPORT_DIR``:

- ``index.html``: every session with its catalog facts (status, frames, rows, duration,
  environment, blank frames, counts of findings);
- ``<session>.html`` per session, and its pictures in ``<session>_files/``: a strip of
  ``N_THUMBS`` frames at regular intervals, flipped right way up (frames are stored bottom row
  first) and enlarged 2x with nearest neighbour; a timeline (battery/health/fuel/damage, speed,
  held keys, event and action markers, pauses shaded); the frame-interval histogram; the
  validation findings.

The pages need no server and no network: every picture is a PNG written beside them and linked
relatively; all text from the data (session names, sources, findings, metadata) is escaped.
A small inline script marks ``<html data-images-ok="N/M" data-errors="K">`` once the page has
loaded (and warns on the page when a picture is missing), so a headless browser can prove that
the page shows every picture.
"""

from __future__ import annotations

import contextlib
import html
import math
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from reacture_convert import __version__
from reacture_convert.errors import InputError, InputNotFoundError, ReactureError
from reacture_convert.findings import Finding, Severity
from reacture_convert.ingest.bundle import BundleRef, StorageOptions, open_file
from reacture_convert.ingest.discover import discover
from reacture_convert.ingest.jsonl import ParsedRow, iter_jsonl
from reacture_convert.ingest.legacy import as_five_file
from reacture_convert.ingest.npy import NpyHeader, check_layout, read_npy_header, read_npy_small
from reacture_convert.ingest.validate import FRAME_TRAILING, validate_bundle
from reacture_convert.output.catalog import CATALOG, CatalogEntry, read_catalog
from reacture_convert.output.naming import is_safe_name, session_name
from reacture_convert.output.storage import Output
from reacture_convert.writers.zarr import open_store

__all__ = [
    "N_THUMBS",
    "THUMB_SIZE",
    "TIMELINE_SIZE",
    "CADENCE_SIZE",
    "GAP_FACTOR",
    "SessionPage",
    "ReportResult",
    "write_report",
]

N_THUMBS: Final = 12  # frames shown per session, at regular intervals
THUMB_SCALE: Final = 2
THUMB_SIZE: Final = (128 * THUMB_SCALE, 128 * THUMB_SCALE)  # px (width, height)
TIMELINE_SIZE: Final = (1200, 1000)  # px
CADENCE_SIZE: Final = (560, 300)  # px
GAP_FACTOR: Final = 5.0  # a frame interval above GAP_FACTOR x the median is a gap (pause/stall)
INDEX: Final = "index.html"

_DPI: Final = 100
_FRAME_BYTES: Final = math.prod(FRAME_TRAILING)
_MAX_MARKER_ROWS: Final = 18  # categories on the marker panel; the rest share "other"
_KEYS: Final = ("W", "A", "S", "D", "inspect")
# Fields plotted, as paths into a row (JSON) or dotted column names (flattened Parquet).
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "battery": ("battery",),
    "health": ("health",),
    "fuel": ("fuel",),
    "damage": ("damage",),
    "vx": ("robot", "velocity", "x"),
    "vy": ("robot", "velocity", "y"),
    "vz": ("robot", "velocity", "z"),
    **{f"key_{k}": ("key_presses", k) for k in _KEYS},
}
# What reading a session's data can raise without it being a bug: a damaged or missing output,
# a corrupt archive member; shown on the page instead of stopping the report.
_SOFT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    ReactureError, OSError, ValueError, KeyError, IndexError, EOFError, pa.ArrowException,
)


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One session's page and the pictures it shows (thumbnails first, then plots)."""

    session: str  # the session name as recorded (untrusted text, shown escaped)
    html: Path
    thumbnails: tuple[Path, ...] = ()
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What ``write_report`` wrote: the index, one page per session, every file."""

    report_dir: Path
    index: Path
    pages: tuple[SessionPage, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written: the index, then each page and its pictures."""
        out = [self.index]
        for p in self.pages:
            out += [p.html, *p.thumbnails, *p.plots]
        return tuple(out)


# --------------------------------------------------------------------------------------------
# what one session page is made of


@dataclass(frozen=True, slots=True)
class _Facts:
    """The catalog facts of one session (or of one unconverted bundle)."""

    session: str
    page: str  # file stem of its page: always a safe name
    status: str
    source: str
    prefix: str | None = None
    metadata_session_id: str | None = None
    n_frames: int | None = None
    n_rows: int | None = None
    blank_frames: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    reason: str | None = None

    def count(self, severity: Severity) -> int:
        return sum(f.severity is severity for f in self.findings)


@dataclass(frozen=True, slots=True)
class _Marker:
    t_s: float
    kind: str  # "event" | "action"
    name: str


@dataclass(frozen=True, slots=True)
class _Timeline:
    """The periodic rows as time series (sorted by time), and the event/action markers."""

    t_s: npt.NDArray[np.float64]
    values: Mapping[str, npt.NDArray[np.float64]]  # battery, health, fuel, damage, speed
    keys: Mapping[str, npt.NDArray[np.bool_]]
    markers: tuple[_Marker, ...]
    pauses: tuple[tuple[float, float], ...]  # game_paused .. game_resumed, seconds
    n_periodic: int
    n_events: int
    n_actions: int
    end_s: float | None  # time of game_end


FrameReader = Callable[[Sequence[int]], npt.NDArray[np.uint8]]


@dataclass(frozen=True, slots=True)
class _Session:
    """Everything one page shows; ``notes`` say what could not be read, and why."""

    facts: _Facts
    timestamps: npt.NDArray[np.float64] | None = None  # frame times, ms
    read_frames: FrameReader | None = None  # frames as stored, in the order asked
    n_stored: int = 0  # frames that read_frames can read
    bottom_up: bool = True
    timeline: _Timeline | None = None
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# entry point


def write_report(
    target: str | Path,
    report_dir: str | Path,
    sessions: Sequence[str] | None = None,
    storage_options: StorageOptions | None = None,
) -> ReportResult:
    """Write the HTML report of ``target`` into the local folder ``report_dir``.

    ``target`` is a converted dataset (a folder or URL holding ``catalog.parquet``) or anything
    ``discover`` accepts (bundle folder, archive, glob, URL). ``sessions`` restricts the report
    to these session names (or bundle prefixes); an unknown name raises ``InputError`` listing
    the known ones. A session whose data cannot be read still gets a page that says why.
    Overwrites the pages and ``<session>_files/`` folders it writes; leaves other files alone.
    """
    target = str(target)
    opts = dict(storage_options or {})
    out = Output(target, opts)
    dataset = _is_dataset(out)
    loose: tuple[Finding, ...] = ()
    if dataset:
        facts = _dataset_facts(out)
    else:
        facts, loose = _bundle_facts(target, opts)
    facts = _select(facts, sessions)
    root = Path(report_dir)
    root.mkdir(parents=True, exist_ok=True)
    pages, shown = [], []
    for item in facts:
        if dataset:
            session = _load_dataset_session(item[0], item[1], out)
            pages.append(_write_session(root, session))
        else:
            bundle, bundle_opts = item[1]
            # a legacy four-file export is read through its five-file view while its page is drawn
            with as_five_file(bundle, bundle_opts) as (view, _):
                session = _load_bundle_session(item[0], (view or bundle, bundle_opts))
                pages.append(_write_session(root, session))
        shown.append(session.facts)
    index = root / INDEX
    kind = "converted dataset" if dataset else "unconverted bundle(s)"
    index.write_text(_index_html(target, kind, shown, loose), encoding="utf-8")
    return ReportResult(root, index, tuple(pages))


def _is_dataset(out: Output) -> bool:
    """True when ``out`` is a converted dataset (holds catalog.parquet)."""
    with contextlib.suppress(OSError, ValueError, ImportError):
        return out.exists(CATALOG)
    return False


def _select(
    facts: list[tuple[_Facts, Any]], sessions: Sequence[str] | None
) -> list[tuple[_Facts, Any]]:
    """The sessions asked for (all when None), in the order found."""
    if sessions is None:
        return facts
    known = {f.session for f, _ in facts} | {f.prefix for f, _ in facts if f.prefix}
    unknown = [s for s in sessions if s not in known]
    if unknown:
        names = ", ".join(sorted({f.session for f, _ in facts})) or "none"
        raise InputError(f"no session named {', '.join(map(repr, unknown))}; known sessions: "
                         f"{names}")
    wanted = set(sessions)
    return [(f, x) for f, x in facts if f.session in wanted or f.prefix in wanted]


def _unique(base: str, used: set[str]) -> str:
    """A safe page name derived from ``base``, not yet in ``used`` (which it joins)."""
    name = base if is_safe_name(base) else session_name(base)
    if name == INDEX.removesuffix(".html"):
        name += "-session"
    stem, k = name, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


# --------------------------------------------------------------------------------------------
# a converted dataset


def _dataset_facts(out: Output) -> list[tuple[_Facts, Any]]:
    """One entry per catalog row; converted (live) rows first under their own name."""
    entries = sorted(read_catalog(out), key=lambda e: (not e.status.is_live,
                                                       e.session or "", e.source))
    used: set[str] = set()
    facts: list[tuple[_Facts, Any]] = []
    for e in entries:
        name = e.session or e.prefix or "bundle"
        live = e.status.is_live
        page = _unique(name if live else f"{name}-{e.status}", used)
        facts.append((_Facts(
            session=name, page=page, status=e.status, source=e.source, prefix=e.prefix,
            metadata_session_id=e.metadata_session_id, n_frames=e.n_frames, n_rows=e.n_rows,
            blank_frames=e.blank_frames, findings=e.findings, reason=e.reason), e))
    return facts


def _load_dataset_session(facts: _Facts, entry: CatalogEntry, out: Output) -> _Session:
    """Read a converted session's Zarr group and rows (only when its outputs are live)."""
    if not entry.status.is_live:
        return _Session(facts, notes=(f"not converted (status {entry.status}): no outputs to "
                                      "show" + (f"; {entry.reason}" if entry.reason else ""),))
    session = entry.session or ""
    if not is_safe_name(session):
        return _Session(facts, notes=(f"the catalog names this session {session!r}, which is "
                                      "not a safe name: its outputs are not read",))
    notes: list[str] = []
    result = _Session(facts)
    try:
        store = open_store(out.url_of("zarr", f"{session}.zarr"), out.storage_options)
        group = zarr.open_group(store, mode="r")
        attrs = dict(group.attrs)
        metadata = attrs.get("metadata")
        if isinstance(metadata, Mapping):
            result = replace(result, facts=replace(facts, metadata=metadata))
        frames, ts = group["frames"], group["timestamps"]
        if not isinstance(frames, zarr.Array) or not isinstance(ts, zarr.Array):
            raise InputError("'frames' and 'timestamps' must be arrays")
        result = replace(result, timestamps=np.asarray(ts[:], dtype=np.float64),
                         bottom_up=_bottom_up(attrs))
        if tuple(frames.shape[1:]) == FRAME_TRAILING and str(frames.dtype) == "uint8":
            result = replace(result, read_frames=_zarr_reader(frames),
                             n_stored=int(frames.shape[0]))
        else:
            notes.append(f"zarr frames have shape {frames.shape} {frames.dtype}, not "
                         "(N, 128, 128, 3) uint8: no thumbnails")
    except _SOFT_ERRORS as e:
        notes.append(f"zarr/{session}.zarr cannot be read ({type(e).__name__}: {e})")
    try:
        with out.fs.open(out.path("rows", f"{session}.parquet"), "rb") as f:
            table = pq.read_table(f, columns=_row_columns(pq.read_schema(f)))
        result = replace(result, timeline=_timeline_from_table(table))
    except _SOFT_ERRORS as e:
        notes.append(f"rows/{session}.parquet cannot be read ({type(e).__name__}: {e})")
    return replace(result, notes=tuple(notes))


def _bottom_up(attrs: Mapping[str, Any]) -> bool:
    """Whether the stored frames are bottom row first (the game's order; the default)."""
    info = attrs.get("frames")
    return not (isinstance(info, Mapping) and info.get("orientation") == "top-down")


def _zarr_reader(frames: Any) -> FrameReader:
    def read(indices: Sequence[int]) -> npt.NDArray[np.uint8]:
        out = np.empty((len(indices), *FRAME_TRAILING), dtype=np.uint8)
        for k, i in enumerate(indices):
            out[k] = np.asarray(frames[i])
        return out

    return read


def _row_columns(schema: pa.Schema) -> list[str]:
    wanted = ("kind", "event", "action", "timestamp_ms", "battery", "health", "fuel", "damage",
              "robot", "key_presses")
    return [c for c in wanted if c in schema.names]


def _flat(table: pa.Table) -> pa.Table:
    """Flatten nested struct columns to dotted names (``robot.velocity.x``)."""
    while any(pa.types.is_struct(c.type) for c in table.columns):
        table = table.flatten()
    return table


def _timeline_from_table(table: pa.Table) -> _Timeline:
    cols = _flat(table).to_pydict()
    n = table.num_rows
    builder = _TimelineBuilder()
    fields = {name: cols.get(".".join(path), [None] * n) for name, path in _FIELDS.items()}
    for i in range(n):
        builder.add(
            cols["kind"][i], cols["timestamp_ms"][i], _get(cols, "event", i),
            _get(cols, "action", i), {name: values[i] for name, values in fields.items()},
        )
    return builder.result()


def _get(cols: Mapping[str, list[Any]], name: str, i: int) -> Any:
    values = cols.get(name)
    return values[i] if values is not None else None


# --------------------------------------------------------------------------------------------
# unconverted bundles


def _bundle_facts(
    target: str, opts: StorageOptions
) -> tuple[list[tuple[_Facts, Any]], tuple[Finding, ...]]:
    """Validate every bundle found under ``target``: their facts, and the loose findings."""
    found = discover([target], opts)
    if not found.bundles:
        detail = "; ".join(f"{f.code}: {f.file}: {f.message}" for f in found.findings)
        cls = InputNotFoundError if any(f.code == "INPUT_NOT_FOUND" for f in found.findings) \
            else InputError
        raise cls(f"{target}: no converted dataset (catalog.parquet) and no bundle found"
                  + (f" ({detail})" if detail else ""))
    used: set[str] = set()
    facts: list[tuple[_Facts, Any]] = []
    for bundle in found.bundles:
        report = validate_bundle(bundle, opts)
        name = session_name(bundle.prefix)
        facts.append((_Facts(
            session=name, page=_unique(name, used),
            status="valid (not converted)" if report.ok else "invalid (would be rejected)",
            source=bundle.source, prefix=bundle.prefix,
            metadata_session_id=report.metadata_session_id, n_frames=report.n_frames,
            n_rows=report.n_rows, blank_frames=report.blank_frames,
            metadata=dict(report.metadata or {}), findings=report.findings),
            (bundle, opts)))
    return facts, found.findings


def _load_bundle_session(facts: _Facts, ctx: tuple[BundleRef, StorageOptions]) -> _Session:
    """Read a bundle's timestamps and rows (streaming); frames are read when shown."""
    bundle, opts = ctx
    notes: list[str] = []
    result = _Session(facts)
    if "timestamps.npy" in bundle.files:
        try:
            result = replace(result, timestamps=_bundle_timestamps(bundle, opts))
        except _SOFT_ERRORS as e:
            notes.append(f"timestamps cannot be read ({type(e).__name__}: {e})")
    if "frames.npy" in bundle.files:
        try:
            header = _bundle_header(bundle, "frames.npy", opts, "|u1", FRAME_TRAILING, 4)
            result = replace(result, read_frames=_npy_reader(bundle, header, opts),
                             n_stored=header.shape[0])
        except _SOFT_ERRORS as e:
            notes.append(f"frames cannot be read ({type(e).__name__}: {e})")
    if "data.jsonl" in bundle.files:
        try:
            result = replace(result, timeline=_bundle_timeline(bundle, opts))
        except _SOFT_ERRORS as e:
            notes.append(f"data.jsonl cannot be read ({type(e).__name__}: {e})")
    missing = [r for r in ("frames.npy", "timestamps.npy", "data.jsonl") if r not in bundle.files]
    if missing:
        notes.append(f"missing file(s): {', '.join(missing)}")
    return replace(result, notes=tuple(notes))


def _bundle_header(
    bundle: BundleRef, role: str, opts: StorageOptions, dtype: str,
    trailing: tuple[int, ...], ndim: int,
) -> NpyHeader:
    """The parsed header of a bundle's .npy file; InputError when it is unusable."""
    ref = bundle.files[role]
    with open_file(ref, opts) as f:
        header, findings = read_npy_header(f, ref.size, ref.name)
    if header is not None:
        findings += check_layout(header, ref.name, dtype=dtype, trailing_shape=trailing, ndim=ndim)
    bad = [f for f in findings if f.severity is Severity.ERROR]
    if header is None or bad:
        raise InputError("; ".join(f.message for f in bad) or f"{ref.name}: unusable header")
    return header


def _bundle_timestamps(bundle: BundleRef, opts: StorageOptions) -> npt.NDArray[np.float64]:
    header = _bundle_header(bundle, "timestamps.npy", opts, "<f4", (), 1)
    ref = bundle.files["timestamps.npy"]
    with open_file(ref, opts) as f:
        return np.asarray(read_npy_small(f, header, file=ref.name), dtype=np.float64)


def _npy_reader(bundle: BundleRef, header: NpyHeader, opts: StorageOptions) -> FrameReader:
    """Reads only the frames asked for: seeks (or skips forward in an archive member)."""
    ref = bundle.files["frames.npy"]

    def read(indices: Sequence[int]) -> npt.NDArray[np.uint8]:
        out = np.empty((len(indices), *FRAME_TRAILING), dtype=np.uint8)
        order = sorted(range(len(indices)), key=lambda k: indices[k])
        with open_file(ref, opts) as f:
            for k in order:
                i = indices[k]
                if not 0 <= i < header.shape[0]:
                    raise IndexError(f"frame {i} out of range")
                _seek_forward(f, header.data_offset + i * _FRAME_BYTES, ref.name)
                data = f.read(_FRAME_BYTES)
                if len(data) != _FRAME_BYTES:
                    raise InputError(f"{ref.name}: ends inside frame {i}")
                out[k] = np.frombuffer(data, dtype=np.uint8).reshape(FRAME_TRAILING)
        return out

    return read


def _seek_forward(f: IO[bytes], offset: int, name: str) -> None:
    """Go to ``offset``: seek when the stream can, else read and drop what lies before it."""
    if f.seekable():
        f.seek(offset)
        return
    pos = f.tell()
    while pos < offset:
        skipped = f.read(min(offset - pos, 1 << 20))
        if not skipped:
            raise InputError(f"{name}: ends at byte {pos}, before byte {offset}")
        pos += len(skipped)


def _bundle_timeline(bundle: BundleRef, opts: StorageOptions) -> _Timeline:
    ref = bundle.files["data.jsonl"]
    builder = _TimelineBuilder()
    with open_file(ref, opts) as f:
        for item in iter_jsonl(f, ref.name):
            if isinstance(item, ParsedRow):
                obj = item.obj
                builder.add(item.kind, item.timestamp_ms, obj.get("event"), obj.get("action"),
                            {name: _dig(obj, path) for name, path in _FIELDS.items()})
    return builder.result()


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


# --------------------------------------------------------------------------------------------
# rows -> timeline


def _num(value: Any) -> float:
    """A JSON number as float; NaN for anything else (null, bool, string, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    x = float(value)
    return x if math.isfinite(x) else math.nan


class _TimelineBuilder:
    """Collects rows one at a time (file order) and sorts them by time at the end."""

    def __init__(self) -> None:
        self.periodic: list[tuple[float, Mapping[str, Any]]] = []
        self.markers: list[_Marker] = []
        self.n_events = 0
        self.n_actions = 0

    def add(self, kind: Any, t_ms: Any, event: Any, action: Any,
            values: Mapping[str, Any]) -> None:
        t = _num(t_ms)
        if kind == "periodic":
            if not math.isnan(t):
                self.periodic.append((t / 1000.0, values))
            return
        name = event if kind == "event" else action
        if kind == "event":
            self.n_events += 1
        elif kind == "action":
            self.n_actions += 1
        else:
            return
        if not math.isnan(t):
            self.markers.append(_Marker(t / 1000.0, kind, str(name) if name is not None else "?"))

    def result(self) -> _Timeline:
        rows = sorted(self.periodic, key=lambda r: r[0])
        t = np.array([r[0] for r in rows], dtype=np.float64)

        def col(name: str) -> npt.NDArray[np.float64]:
            return np.array([_num(r[1].get(name)) for r in rows], dtype=np.float64)

        speed = np.sqrt(col("vx") ** 2 + col("vy") ** 2 + col("vz") ** 2)
        values = {k: col(k) for k in ("battery", "health", "fuel", "damage")} | {"speed": speed}
        keys = {k: np.array([r[1].get(f"key_{k}") is True for r in rows], dtype=np.bool_)
                for k in _KEYS}
        markers = tuple(sorted(self.markers, key=lambda m: m.t_s))
        ends = [m.t_s for m in markers if m.kind == "event" and m.name == "game_end"]
        return _Timeline(t, values, keys, markers, _pauses(markers), len(rows),
                         self.n_events, self.n_actions, max(ends) if ends else None)


def _pauses(markers: Sequence[_Marker]) -> tuple[tuple[float, float], ...]:
    """``game_paused`` .. next ``game_resumed`` spans; an unmatched pause runs to the end."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for m in markers:
        if m.kind != "action":
            continue
        if m.name == "game_paused" and start is None:
            start = m.t_s
        elif m.name == "game_resumed" and start is not None:
            spans.append((start, m.t_s))
            start = None
    if start is not None:
        spans.append((start, max([start, *(m.t_s for m in markers)])))
    return tuple(spans)


def _gaps(times_s: npt.NDArray[np.float64]) -> tuple[list[tuple[float, float]], float | None]:
    """Spans between consecutive times more than GAP_FACTOR x the median interval apart."""
    finite = times_s[np.isfinite(times_s)]
    diffs = np.diff(finite)
    good = diffs[diffs >= 0]
    if good.size == 0:
        return [], None
    median = float(np.median(good))
    if median <= 0:
        return [], median
    idx = np.flatnonzero(diffs > GAP_FACTOR * median)
    return [(float(finite[i]), float(finite[i + 1])) for i in idx], median


# --------------------------------------------------------------------------------------------
# pictures


def _sample_indices(n: int, k: int = N_THUMBS) -> list[int]:
    """``min(k, n)`` frame indices spread evenly from the first to the last frame."""
    if n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def _write_thumbnail(frame: npt.NDArray[np.uint8], bottom_up: bool, path: Path) -> None:
    """One frame as a PNG: right way up, enlarged THUMB_SCALE x with nearest neighbour."""
    from PIL import Image

    picture = frame[::-1] if bottom_up else frame
    image = Image.fromarray(np.ascontiguousarray(picture))
    image.resize(THUMB_SIZE, Image.Resampling.NEAREST).save(path, format="PNG", optimize=True)


def _figure(size: tuple[int, int]) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})


def _broken(t: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
            gaps: Sequence[tuple[float, float]]) -> tuple[npt.NDArray[np.float64], ...]:
    """``t, y`` with a NaN inserted inside each gap, so lines do not bridge a pause."""
    if not gaps or t.size == 0:
        return t, y
    cut = np.searchsorted(t, [b for _, b in gaps])
    return np.insert(t, cut, np.nan), np.insert(y, cut, np.nan)


def _shade(ax: Any, gaps: Sequence[tuple[float, float]],
           pauses: Sequence[tuple[float, float]]) -> None:
    for a, b in gaps:
        ax.axvspan(a, b, color="0.6", alpha=0.25, lw=0, zorder=0)
    for a, b in pauses:
        ax.axvspan(a, b, facecolor="none", edgecolor="tab:orange", hatch="//", lw=0, zorder=0)


def _write_timeline(session: _Session, path: Path) -> None:
    """Four panels on one time axis: state, speed, held keys, events and actions."""
    from matplotlib.patches import Patch

    tl = session.timeline
    assert tl is not None  # the caller checks
    frame_s = session.timestamps / 1000.0 if session.timestamps is not None else tl.t_s
    gaps, _ = _gaps(frame_s if frame_s.size > 1 else tl.t_s)
    fig = _figure(TIMELINE_SIZE)
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.6, 3.4]})
    fig.subplots_adjust(left=0.17, right=0.93, top=0.955, bottom=0.06, hspace=0.12)
    state, speed_ax, keys_ax, mark_ax = axes
    # the game keeps battery equal to fuel: a wide pale line under a thin one shows both
    for name, colour, lw, ls in (("battery", "#7fc97f", 4.0, "-"), ("health", "tab:red", 1.4, "-"),
                                 ("fuel", "tab:blue", 1.4, "-")):
        state.plot(*_broken(tl.t_s, tl.values[name], gaps), color=colour, lw=lw, ls=ls,
                   label=name)
    state.set_ylim(-5, 105)
    state.set_ylabel("battery / health / fuel")
    dmg = state.twinx()
    dmg.plot(*_broken(tl.t_s, tl.values["damage"], gaps), color="tab:purple", lw=1.2, ls="--",
             label="damage (right axis)")
    dmg.set_ylim(-0.05, 1.05)
    dmg.set_ylabel("damage (0-1)")
    handles = [*state.get_legend_handles_labels()[0], *dmg.get_legend_handles_labels()[0]]
    if gaps:
        handles.append(Patch(color="0.6", alpha=0.4,
                             label=f"gap > {GAP_FACTOR:g}x median frame interval"))
    if tl.pauses:
        handles.append(Patch(facecolor="none", edgecolor="tab:orange", hatch="//",
                             label="paused (game_paused .. game_resumed)"))
    fig.legend(handles=handles, loc="upper center", ncol=6, fontsize=8, frameon=False)
    speed_ax.plot(*_broken(tl.t_s, tl.values["speed"], gaps), color="black", lw=1.2)
    speed_ax.set_ylabel("speed |velocity|")
    speed_ax.set_ylim(bottom=0)
    _plot_keys(keys_ax, tl)
    _plot_markers(mark_ax, tl)
    for ax in axes:
        _shade(ax, gaps, tl.pauses)
        ax.grid(axis="x", color="0.9")
    mark_ax.set_xlabel("time since game start (s)")
    ends = [x for x in (tl.t_s.max() if tl.t_s.size else None, tl.end_s,
                        frame_s.max() if frame_s.size else None,
                        max((m.t_s for m in tl.markers), default=None)) if x is not None]
    left = min(0.0, float(tl.t_s[0])) if tl.t_s.size else 0.0
    mark_ax.set_xlim(left, max([1.0, *ends]) * 1.01)
    if tl.n_periodic == 0:
        state.text(0.5, 0.5, "no periodic rows", transform=state.transAxes, ha="center")
    _save(fig, path)


def _plot_keys(ax: Any, tl: _Timeline) -> None:
    """A raster: one line per key, a bar where the key was held at a periodic sample."""
    t = tl.t_s
    if t.size:
        step = np.diff(t, append=t[-1])
        median = float(np.median(step[:-1])) if t.size > 1 else 0.1
        width = np.minimum(np.where(step > 0, step, median), 2 * median)
    for row, key in enumerate(_KEYS):
        if t.size:
            held = tl.keys[key]
            ax.broken_barh(list(zip(t[held], width[held], strict=True)), (row - 0.4, 0.8),
                           color="tab:blue" if key != "inspect" else "tab:cyan")
    ax.set_yticks(range(len(_KEYS)), list(_KEYS), fontsize=8)
    ax.set_ylim(len(_KEYS) - 0.5, -0.5)
    ax.set_ylabel("keys held")


def _marker_rows(markers: Sequence[_Marker]) -> list[tuple[str, str]]:
    """The (kind, name) categories of the marker panel, events first, in order of appearance."""
    seen: dict[tuple[str, str], None] = {}
    for kind in ("event", "action"):
        for m in markers:
            if m.kind == kind:
                seen.setdefault((kind, _category(m)), None)
    rows = list(seen)
    if len(rows) > _MAX_MARKER_ROWS:
        rows = [*rows[: _MAX_MARKER_ROWS - 1], ("other", "other")]
    return rows


def _category(m: _Marker) -> str:
    """Movement key actions share one line (the key raster shows them in detail)."""
    if m.kind == "action" and m.name.startswith("move_"):
        return "move_* start/stop"
    return m.name


def _plot_markers(ax: Any, tl: _Timeline) -> None:
    rows = _marker_rows(tl.markers)
    where = {r: i for i, r in enumerate(rows)}
    styles = {"event": ("tab:red", "o"), "action": ("tab:blue", "|"), "other": ("0.4", "x")}
    for kind in ("event", "action"):
        ms = [m for m in tl.markers if m.kind == kind]
        ys = [where.get((kind, _category(m)), where.get(("other", "other"), 0)) for m in ms]
        colour, marker = styles[kind]
        ax.scatter([m.t_s for m in ms], ys, s=40 if marker == "|" else 18, c=colour,
                   marker=marker, linewidths=1.5, zorder=3)
    labels = [("event: " if k == "event" else "action: " if k == "action" else "") + n
              for k, n in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    ax.set_ylabel("events / actions")
    if not rows:
        ax.text(0.5, 0.5, "no event or action rows", transform=ax.transAxes, ha="center")


def _write_cadence(session: _Session, path: Path) -> None:
    """Histogram of the intervals between consecutive frames (ms, log scale)."""
    fig = _figure(CADENCE_SIZE)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.12, right=0.97, top=0.88, bottom=0.17)
    ts = session.timestamps
    diffs = np.diff(ts[np.isfinite(ts)]) if ts is not None else np.empty(0)
    diffs = diffs[diffs >= 0]
    if diffs.size == 0:
        ax.text(0.5, 0.5, "fewer than two frame times", transform=ax.transAxes, ha="center")
        ax.set_axis_off()
    else:
        shown = np.maximum(diffs, 1.0)
        lo, hi = float(shown.min()), float(shown.max())
        bins = np.geomspace(lo / 1.1, max(hi * 1.1, lo * 2), 40)
        ax.hist(shown, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_xscale("log")
        median = float(np.median(diffs))
        ax.axvline(median, color="black", lw=1.2, label=f"median {median:.0f} ms")
        rate = session.facts.metadata.get("sampling_rate_hz")
        if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
            ax.axvline(1000 / rate, color="tab:green", ls="--", lw=1.2,
                       label=f"metadata {rate:g} Hz ({1000 / rate:.0f} ms)")
        if median > 0:
            ax.axvline(GAP_FACTOR * median, color="0.4", ls=":", lw=1.2,
                       label=f"gap threshold {GAP_FACTOR:g}x median")
        ax.legend(fontsize=8, frameon=False)
        ax.set_xlabel("interval between consecutive frames (ms, log scale)")
        ax.set_ylabel("intervals")
    ax.set_title(f"frame cadence ({diffs.size} intervals)", fontsize=10)
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# one session


def _write_session(root: Path, session: _Session) -> SessionPage:
    """Write a session's pictures into ``<page>_files/`` and then its page."""
    facts = session.facts
    assets = root / f"{facts.page}_files"
    if assets.is_dir():
        shutil.rmtree(assets)
    assets.mkdir()
    notes = list(session.notes)
    thumbs = _write_thumbnails(session, assets, notes)
    plots: list[Path] = []
    if session.timestamps is not None and session.timestamps.size > 1:
        plots.append(assets / "cadence.png")
        _write_cadence(session, plots[-1])
    if session.timeline is not None:
        plots.append(assets / "timeline.png")
        _write_timeline(session, plots[-1])
    page = root / f"{facts.page}.html"
    page.write_text(_session_html(replace(session, notes=tuple(notes)), root, thumbs, plots),
                    encoding="utf-8")
    return SessionPage(facts.session, page, tuple(p for p, _, _ in thumbs), tuple(plots))


def _write_thumbnails(
    session: _Session, assets: Path, notes: list[str]
) -> list[tuple[Path, int, bool]]:
    """(path, frame index, blank) of each thumbnail written."""
    if session.read_frames is None or not session.n_stored:
        return []
    indices = _sample_indices(session.n_stored)
    try:
        frames = session.read_frames(indices)
    except _SOFT_ERRORS as e:
        notes.append(f"frames cannot be read ({type(e).__name__}: {e})")
        return []
    out = []
    for i, frame in zip(indices, frames, strict=True):
        path = assets / f"frame_{i:06d}.png"
        _write_thumbnail(frame, session.bottom_up, path)
        out.append((path, i, not frame.any()))
    return out


# --------------------------------------------------------------------------------------------
# HTML


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_CSS: Final = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2em 1.5em; color: #222; }
h1 { font-size: 1.5em; margin: 0.2em 0; word-break: break-all; }
h2 { font-size: 1.15em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.facts { width: 640px; max-width: 100%; }
.facts th { width: 11em; }
.facts td { overflow-wrap: anywhere; }
.top { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.banner { padding: 0.5em 0.8em; border-radius: 4px; margin: 0.6em 0; }
.bad { background: #fde2e1; border: 1px solid #e0a3a0; }
.good { background: #e3f4e1; border: 1px solid #a6d3a0; }
.note { background: #fff4d6; border: 1px solid #e6cf8b; }
.strip { display: flex; gap: 6px; overflow-x: auto; padding-bottom: 6px; }
.strip figure { margin: 0; flex: none; text-align: center; font-size: 12px; }
.strip img { display: block; image-rendering: pixelated; background: #000; }
figure { margin: 0; }
.sev-error { color: #b00020; font-weight: 600; }
.sev-warning { color: #9a6700; font-weight: 600; }
.sev-info { color: #0b5394; }
.small { color: #666; font-size: 12px; }
"""

# Marks <html data-images-ok="N/M" data-errors="K"> once loaded; warns when a picture failed.
_SCRIPT: Final = """
(function () {
  var errors = 0;
  window.addEventListener("error", function () { errors += 1; }, true);
  window.addEventListener("load", function () {
    var images = document.images, ok = 0;
    for (var i = 0; i < images.length; i += 1) {
      if (images[i].complete && images[i].naturalWidth > 0) { ok += 1; }
    }
    var root = document.documentElement;
    root.setAttribute("data-images-ok", ok + "/" + images.length);
    root.setAttribute("data-errors", String(errors));
    var warn = document.getElementById("missing-images");
    if (warn && ok !== images.length) {
      warn.hidden = false;
      warn.textContent = (images.length - ok) + " of " + images.length +
        " pictures could not be shown: keep the report folder and its _files folders together.";
    }
  });
}());
"""


def _page(title: str, body: Iterable[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="reacture-convert {_e(__version__)}">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head>",
        "<body>",
        '<p id="missing-images" class="banner bad" hidden></p>',
        *body,
        f'<footer class="small"><p>Written by reacture-convert {_e(__version__)} on '
        f"{_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}.</p></footer>",
        "</body>",
        "</html>",
        "",
    ])


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table; ``head`` is plain text (escaped here), row cells are HTML already escaped."""
    attr = f' class="{cls}"' if cls else ""
    out = [f"<table{attr}>", "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
           + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows]
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _td(value: Any, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if num else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{'&mdash;' if value is None or value == '' else _e(value)}</td>"


def _fmt_s(value: Any) -> str | None:
    x = _num(value)
    return None if math.isnan(x) else f"{x:.1f}"


def _blank_text(facts: _Facts) -> str | None:
    n, b = facts.n_frames, facts.blank_frames
    if b is None:
        return None
    return f"{b} of {n} (all)" if n and b == n else f"{b} of {n}"


def _environment(meta: Mapping[str, Any]) -> str | None:
    env, name = meta.get("environment"), meta.get("environment_name")
    if env is None:
        return None
    return f"{env} ({name})" if name and name != env else str(env)


def _index_html(target: str, kind: str, facts: Sequence[_Facts],
                loose: Sequence[Finding]) -> str:
    head = ["session", "status", "environment", "frames", "rows", "duration (s)",
            "blank frames", "errors", "warnings", "info"]
    rows = []
    for f in facts:
        all_blank = bool(f.n_frames) and f.blank_frames == f.n_frames
        rows.append([
            f'<td><a href="{_e(f.page)}.html">{_e(f.session)}</a></td>',
            _td(f.status), _td(_environment(f.metadata)), _td(f.n_frames, True),
            _td(f.n_rows, True), _td(_fmt_s(f.metadata.get("duration_s")), True),
            _td(_blank_text(f), True, "sev-warning" if all_blank else ""),
            _td(f.count(Severity.ERROR), True), _td(f.count(Severity.WARNING), True),
            _td(f.count(Severity.INFO), True),
        ])
    body = [
        "<h1>ReActure sessions</h1>",
        f"<p>{len(facts)} session(s) of the {_e(kind)} <code>{_e(target)}</code>. Each "
        "session's page shows its frames, its timeline and its validation findings.</p>",
        _table(head, rows) if facts else "<p>No sessions.</p>",
    ]
    if loose:
        body += ["<h2>Other findings (not tied to a bundle)</h2>", _findings_table(loose)]
    return _page("ReActure sessions", body)


def _findings_table(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>No findings.</p>"
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    rows = [[_td(f.severity, cls=f"sev-{f.severity}"), f"<td><code>{_e(f.code)}</code></td>",
             _td(f.file), _td(f.line, True), _td(f.frame, True), _td(f.message)]
            for f in sorted(findings, key=lambda f: order[f.severity])]
    return _table(["severity", "code", "file", "line", "frame", "message"], rows)


def _blank_banner(facts: _Facts) -> str:
    n, b = facts.n_frames, facts.blank_frames
    if b is None or n is None:
        return '<p class="banner note">Blank frames: unknown (frames not scanned).</p>'
    if n and b == n:
        return (f'<p class="banner bad"><strong>All {n} frames are blank (all zeros).</strong> '
                "This is the game's known black-frame export (WebGL preserveDrawingBuffer "
                "off): the frames are useless for vision.</p>")
    if b:
        return f'<p class="banner note">{b} of {n} frames are blank (all zeros).</p>'
    return f'<p class="banner good">No blank frames: all {n} frames hold pictures.</p>'


def _fact_rows(session: _Session) -> Iterator[tuple[str, Any]]:
    f, meta, tl = session.facts, session.facts.metadata, session.timeline
    yield "status", f.status
    if f.reason:
        yield "reason", f.reason
    yield "source", f.source
    yield "file prefix", f.prefix
    yield "metadata session_id", f.metadata_session_id
    yield "environment", _environment(meta)
    yield "start time", meta.get("start_time")
    yield "duration (metadata)", _fmt_s(meta.get("duration_s")) and \
        f"{_fmt_s(meta.get('duration_s'))} s (until Download Data was pressed)"
    if tl is not None and tl.end_s is not None:
        yield "game time (game_end)", f"{tl.end_s:.1f} s"
    yield "frames", f.n_frames
    yield "blank frames", _blank_text(f)
    rows: Any = f.n_rows
    if tl is not None:
        rows = f"{f.n_rows} ({tl.n_periodic} periodic, {tl.n_events} events, " \
               f"{tl.n_actions} actions)"
    yield "rows", rows
    ts = session.timestamps
    if ts is not None and ts.size > 1:
        gaps, median = _gaps(ts / 1000.0)
        if median:
            rate = meta.get("sampling_rate_hz")
            yield "frame cadence", (f"median {median * 1000:.0f} ms ({1 / median:.1f} Hz); "
                                    f"metadata says {rate} Hz")
        yield "gaps", f"{len(gaps)} (intervals > {GAP_FACTOR:g}x median)"
    if tl is not None and tl.pauses:
        yield "pauses", ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in tl.pauses)
    result = meta.get("game_result")
    if isinstance(result, Mapping):
        yield "game result", (f"{result.get('completion_status')}; score "
                              f"{result.get('final_score')}; victims saved "
                              f"{result.get('victims_saved')}/{result.get('victims_total')}")
    counts = [f"{f.count(s)} {s}{'s' if s is not Severity.INFO and f.count(s) != 1 else ''}"
              for s in Severity]
    yield "findings", ", ".join(counts)


def _session_html(session: _Session, root: Path,
                  thumbs: Sequence[tuple[Path, int, bool]], plots: Sequence[Path]) -> str:
    f = session.facts
    rel = {p: p.relative_to(root).as_posix() for p in [*(t[0] for t in thumbs), *plots]}
    facts_table = _table(["fact", "value"], (
        [f"<th>{_e(k)}</th>", _td(v)] for k, v in _fact_rows(session) if v is not None),
        cls="facts")
    top = [facts_table]
    cadence = next((p for p in plots if p.name == "cadence.png"), None)
    if cadence is not None:
        w, h = CADENCE_SIZE
        top.append(f'<figure><img src="{_e(rel[cadence])}" width="{w}" height="{h}" '
                   f'alt="histogram of frame intervals of {_e(f.session)}"></figure>')
    body = [
        f'<nav><a href="{INDEX}">&larr; all sessions</a></nav>',
        f"<h1>{_e(f.session)}</h1>",
        _blank_banner(f),
        *(f'<p class="banner note">{_e(n)}</p>' for n in session.notes),
        '<div class="top">', *top, "</div>",
        "<h2>Frames</h2>",
    ]
    if thumbs:
        ts = session.timestamps
        orient = "stored bottom row first, flipped for display" if session.bottom_up \
            else "stored top row first"
        body.append(f"<p>{len(thumbs)} of {session.n_stored} frames at regular intervals, "
                    f"right way up ({orient}), enlarged {THUMB_SCALE}x with nearest "
                    "neighbour.</p>")
        body.append('<div class="strip">')
        for path, i, blank in thumbs:
            t = f" &middot; {ts[i] / 1000:.1f} s" if ts is not None and i < ts.size else ""
            body.append(f'<figure><img src="{_e(rel[path])}" width="{THUMB_SIZE[0]}" '
                        f'height="{THUMB_SIZE[1]}" alt="frame {i}"><figcaption>frame {i}{t}'
                        f'{" &middot; blank" if blank else ""}</figcaption></figure>')
        body.append("</div>")
    else:
        body.append("<p>No frames to show.</p>")
    timeline = next((p for p in plots if p.name == "timeline.png"), None)
    body.append("<h2>Timeline</h2>")
    if timeline is not None:
        w, h = TIMELINE_SIZE
        body.append(
            f'<figure><img src="{_e(rel[timeline])}" width="{w}" height="{h}" '
            f'alt="timeline of {_e(f.session)}"><figcaption class="small">Periodic samples: '
            "battery, health, fuel (left axis) and damage (right axis); speed |velocity|; keys "
            "held at each sample. Markers: event rows (red dots) and player actions (blue "
            "ticks). Grey: gaps between frames longer than "
            f"{GAP_FACTOR:g}x the median interval; orange hatching: paused.</figcaption>"
            "</figure>")
    else:
        body.append("<p>No rows to plot.</p>")
    body += [f"<h2>Validation findings ({len(f.findings)})</h2>", _findings_table(f.findings)]
    return _page(f"{f.session}: ReActure session", body)

