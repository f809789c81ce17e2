"""The static HTML report: valid pages, only local files, right-sized pictures, escaped text,
and a page that headless Chromium shows with every picture loaded."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import zarr
from PIL import Image

import reacture_convert.report.bundles as bundles_mod
from reacture_convert.errors import InputError
from reacture_convert.findings import Finding, Severity
from reacture_convert.ingest.bundle import FileRef
from reacture_convert.output.catalog import CatalogEntry, read_catalog, write_catalog
from reacture_convert.output.storage import Output
from reacture_convert.report import (
    CADENCE_SIZE,
    N_THUMBS,
    THUMB_SIZE,
    TIMELINE_SIZE,
    ReportResult,
    write_report,
)
from tests.helpers.real import REAL_BUNDLES

CLI = Path(sys.executable).with_name("reacture-convert")
# The real recording whose frames hold pictures (the preserve-drawing-buffer variant, shipped
# in tests/data/real.tar.gz); the others' frames are all black.
VARIANT = "reacture_1795637148842"
PLOT_SIZES = {"timeline.png": TIMELINE_SIZE, "cadence.png": CADENCE_SIZE}
VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
HOSTILE = '<script>alert("x")</script>'


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every real fixture converted once with the command line (the sample is a duplicate)."""
    out = tmp_path_factory.mktemp("dataset") / "out"
    done = subprocess.run(
        [
            str(CLI),
            "convert",
            *map(str, REAL_BUNDLES),
            "--out",
            str(out),
            "--scheduler",
            "sync",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def dataset_report(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    return write_report(dataset, tmp_path_factory.mktemp("html") / "report")


REPORTS = ["dataset", *REAL_BUNDLES]


@pytest.fixture(
    scope="module", params=REPORTS, ids=["dataset", *(f"bundle-{p.name}" for p in REAL_BUNDLES)]
)
def any_report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ReportResult:
    """The report of the converted dataset, then of each real bundle folder read directly."""
    if request.param == "dataset":
        result: ReportResult = request.getfixturevalue("dataset_report")
        return result
    return write_report(request.param, tmp_path_factory.mktemp("html") / "report")


# --- an HTML checker -------------------------------------------------------------------------


class _Page(HTMLParser):
    """Parses a page and records what a structural check needs; ``errors`` lists violations."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doctype = ""
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [k for k, _ in attrs]
        if len(names) != len(set(names)):
            self.errors.append(f"<{tag}> repeats an attribute: {names}")
        a = dict(attrs)
        if "id" in a:
            if a["id"] in self.ids:
                self.errors.append(f"duplicate id {a['id']!r}")
            self.ids.add(a["id"] or "")
        if not self.stack and tag != "html":
            self.errors.append(f"<{tag}> outside <html>")
        self.tags.append((tag, a))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag of void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(t == tag for t, _ in self.tags)

    def attrs(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def check_structure(path: Path) -> _Page:
    """A well-formed HTML5 document: doctype, html/head/body once each, title, charset, every
    element closed in order, images with src, alt and their size."""
    page = parse_page(path)
    assert page.doctype.lower() == "doctype html", path
    assert page.errors == [], (path, page.errors)
    assert page.stack == [], (path, page.stack)
    tags = [t for t, _ in page.tags]
    assert tags[:3] == ["html", "head", "meta"], (path, tags[:3])
    assert [page.count(t) for t in ("html", "head", "body", "title", "h1")] == [1] * 5, path
    assert page.attrs("html")[0].get("lang") == "en"
    assert page.attrs("meta")[0] == {"charset": "utf-8"}
    assert tags.index("body") > tags.index("title")
    for img in page.attrs("img"):
        assert img.get("src") and img.get("alt") and img.get("width") and img.get("height"), img
    return page


def local_refs(path: Path) -> list[str]:
    page = parse_page(path)
    return [v for _, a in page.tags for k, v in a.items() if k in ("src", "href") and v]


def html_files(result: ReportResult) -> list[Path]:
    return [result.index, *(p.html for p in result.pages)]


# --- the report of real fixtures --------------------------------------------------------------


def test_dataset_report_has_a_page_per_catalog_row(
    dataset: Path, dataset_report: ReportResult
) -> None:
    catalog = read_catalog(Output(str(dataset)))
    assert len(dataset_report.pages) == len(catalog)
    index = parse_page(dataset_report.index)
    assert index.count("tr") == len(catalog) + 1  # the head row
    links = {a["href"] for a in index.attrs("a")}
    assert links == {p.html.name for p in dataset_report.pages}
    live = [p for p in dataset_report.pages if p.thumbnails]
    assert {p.session for p in live} == {
        e.session for e in catalog if e.status in ("converted", "skipped")
    }
    for page in live:
        assert len(page.thumbnails) == N_THUMBS
        assert sorted(p.name for p in page.plots) == sorted(PLOT_SIZES)


def test_index_shows_catalog_facts(dataset: Path, dataset_report: ReportResult) -> None:
    text = " ".join(parse_page(dataset_report.index).text)
    for e in read_catalog(Output(str(dataset))):
        assert str(e.session) in text and e.status in text
        assert f"{e.blank_frames} of {e.n_frames}" in text
        meta = _group(dataset, str(e.session)).attrs["metadata"]
        assert f"{meta['environment']} ({meta['environment_name']})" in text
        assert f"{meta['duration_s']:.1f}" in text


def test_pages_are_valid_html(any_report: ReportResult) -> None:
    for path in html_files(any_report):
        check_structure(path)


def test_pages_reference_only_files_the_report_wrote(any_report: ReportResult) -> None:
    root = any_report.report_dir.resolve()
    written = {p.resolve() for p in any_report.files}
    referenced = set()
    for path in html_files(any_report):
        for ref in local_refs(path):
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc and not ref.startswith("/"), ref
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_relative_to(root) and target.is_file(), ref
            assert target in written, ref
            referenced.add(target)
    assert referenced == written  # and every file written is shown somewhere
    on_disk = {p.resolve() for p in root.rglob("*") if p.is_file()}
    assert on_disk == written


def test_images_have_the_expected_sizes(any_report: ReportResult) -> None:
    for page in any_report.pages:
        for thumb in page.thumbnails:
            with Image.open(thumb) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "RGB", THUMB_SIZE)
        for plot in page.plots:
            with Image.open(plot) as im:
                assert (im.format, im.size) == ("PNG", PLOT_SIZES[plot.name])
        for img in parse_page(page.html).attrs("img"):
            with Image.open(page.html.parent / str(img["src"])) as im:
                assert im.size == (int(str(img["width"])), int(str(img["height"])))


def _group(dataset: Path, session: str) -> Any:
    return zarr.open_group(str(dataset / "zarr" / f"{session}.zarr"), mode="r")


def test_thumbnails_are_frames_flipped_and_doubled(
    dataset: Path, dataset_report: ReportResult
) -> None:
    """Each thumbnail is its stored frame upside down (bottom row first), 2x nearest."""
    for page in dataset_report.pages:
        if not page.thumbnails:
            continue
        frames = _group(dataset, page.session)
        n = frames["frames"].shape[0]
        expected = [int(round(x)) for x in np.linspace(0, n - 1, N_THUMBS)]
        assert [int(p.stem.split("_")[1]) for p in page.thumbnails] == expected
        for thumb, i in zip(page.thumbnails, expected, strict=True):
            frame = np.asarray(frames["frames"][i])[::-1]
            want = frame.repeat(2, axis=0).repeat(2, axis=1)
            with Image.open(thumb) as im:
                assert np.array_equal(np.asarray(im), want), thumb


def test_bundle_and_dataset_reports_show_the_same_frames(
    dataset_report: ReportResult, any_report: ReportResult
) -> None:
    by_session = {p.session: p for p in dataset_report.pages if p.thumbnails}
    for page in any_report.pages:
        twin = by_session[page.session]
        assert [t.read_bytes() for t in page.thumbnails] == [
            t.read_bytes() for t in twin.thumbnails
        ]


def test_pages_say_whether_frames_are_blank(dataset: Path, any_report: ReportResult) -> None:
    blank = {e.session: (e.blank_frames, e.n_frames) for e in read_catalog(Output(str(dataset)))}
    for page in any_report.pages:
        n_blank, n = blank[page.session]
        text = " ".join(parse_page(page.html).text)
        lit = [bool(np.asarray(Image.open(t)).any()) for t in page.thumbnails]
        if n_blank == 0:
            assert f"No blank frames: all {n} frames hold pictures" in text
            assert all(lit)
        else:
            assert n_blank == n and f"All {n} frames are blank" in text
            assert not any(lit) and "blank" in text


def test_session_page_lists_every_finding(dataset: Path, dataset_report: ReportResult) -> None:
    catalog = {e.session: e for e in read_catalog(Output(str(dataset))) if e.status == "converted"}
    for page in dataset_report.pages:
        entry = catalog.get(page.session)
        if entry is None:
            continue
        text = page.html.read_text(encoding="utf-8")
        codes = re.findall(r"<td><code>([A-Z0-9_]+)</code></td>", text)
        assert sorted(codes) == sorted(f.code for f in entry.findings)


# --- bundles of other kinds, filters, hostile text ------------------------------------------


def _variant() -> Path:
    return next(p for p in REAL_BUNDLES if p.name == VARIANT)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_gives_the_same_thumbnails(
    kind: str, tmp_path: Path, dataset_report: ReportResult
) -> None:
    src = _variant()
    archive = tmp_path / f"bundle.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(src.iterdir()):
                zf.write(f, f"inner/{f.name}")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src, arcname="inner")
    [page] = write_report(archive, tmp_path / "report").pages
    [twin] = [p for p in dataset_report.pages if p.session == VARIANT and p.thumbnails]
    assert [t.read_bytes() for t in page.thumbnails] == [t.read_bytes() for t in twin.thumbnails]


class _CountingReader:
    """A stream proxy that counts the bytes read through it."""

    def __init__(self, stream: IO[bytes], counter: list[int]) -> None:
        self.stream, self.counter = stream, counter

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.counter.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def test_frames_are_read_only_where_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    """The report's frame reader reads the N_THUMBS frames it shows, not the whole file
    (the header is read by ingest.files, and validate_bundle's streaming scan by its own
    module: neither goes through the report's open_file)."""
    folder = make_bundle(n_frames=300)
    counter: list[int] = []
    real_open = bundles_mod.open_file

    @contextlib.contextmanager
    def counting_open(ref: FileRef, opts: Any = None) -> Iterator[Any]:
        with real_open(ref, opts) as f:
            yield _CountingReader(f, counter) if ref.name.endswith("_frames.npy") else f

    monkeypatch.setattr(bundles_mod, "open_file", counting_open)
    [page] = write_report(folder, tmp_path / "report").pages
    assert len(page.thumbnails) == N_THUMBS
    assert sum(counter) == N_THUMBS * 128 * 128 * 3


def _truncate(folder: Path) -> None:
    f = next(folder.glob("*_frames.npy"))
    os.truncate(f, f.stat().st_size - 1000)


def _unlink_timestamps(folder: Path) -> None:
    next(folder.glob("*_timestamps.npy")).unlink()


def _empty_jsonl(folder: Path) -> None:
    next(folder.glob("*_data.jsonl")).write_bytes(b"")


def _not_npy(folder: Path) -> None:
    next(folder.glob("*_frames.npy")).write_bytes(b"not an npy file")


def _nothing(folder: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("damage", "n_frames", "code", "n_thumbs"),
    [
        (_truncate, 30, "NPY_TRUNCATED", 0),
        (_unlink_timestamps, 30, "BUNDLE_MISSING_FILE", N_THUMBS),
        (_empty_jsonl, 30, "JSONL_EMPTY", N_THUMBS),
        (_not_npy, 30, "NPY_BAD_MAGIC", 0),
        (_nothing, 1, None, 1),
    ],
    ids=["truncated-frames", "missing-timestamps", "empty-jsonl", "frames-not-npy", "one-frame"],
)
def test_broken_bundle_still_gets_a_page(
    damage: Callable[[Path], None],
    n_frames: int,
    code: str | None,
    n_thumbs: int,
    make_bundle: Callable[..., Path],
    tmp_path: Path,
) -> None:
    folder = make_bundle(n_frames=n_frames)
    damage(folder)
    result = write_report(folder, tmp_path / "report")
    [page] = result.pages
    check_structure(page.html)
    assert len(page.thumbnails) == n_thumbs
    text = page.html.read_text(encoding="utf-8")
    if code is not None:
        assert f"<td><code>{code}</code></td>" in text
        assert "invalid (would be rejected)" in text


def test_frames_are_skipped_forward_in_a_stream_that_cannot_seek() -> None:
    class Forward(io.BytesIO):
        def seekable(self) -> bool:
            return False

    stream = Forward(bytes(range(200)))
    bundles_mod.seek_forward(stream, 150, "x")
    assert stream.read(3) == bytes([150, 151, 152])
    with pytest.raises(InputError, match="before byte 500"):
        bundles_mod.seek_forward(stream, 500, "x")


def test_sessions_filter(dataset: Path, tmp_path: Path) -> None:
    result = write_report(dataset, tmp_path / "r", sessions=[VARIANT])
    assert [p.session for p in result.pages] == [VARIANT]
    assert {a["href"] for a in parse_page(result.index).attrs("a")} == {f"{VARIANT}.html"}
    with pytest.raises(InputError, match="no session named 'nope'.*reacture_1795637148842"):
        write_report(dataset, tmp_path / "r2", sessions=["nope"])


def test_target_without_bundles_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no bundle found"):
        write_report(tmp_path / "missing", tmp_path / "r")


def _assert_escaped(result: ReportResult, texts: list[str]) -> None:
    """No markup from the data: one <script> (ours) per page, no event handler attributes,
    and the hostile strings shown as text."""
    shown = []
    for path in html_files(result):
        page = check_structure(path)
        assert page.count("script") == 1, path
        for _, attrs in page.tags:
            assert not any(k.startswith("on") for k in attrs), (path, attrs)
        shown.append("".join(page.text))
    for text in texts:
        assert any(text in s for s in shown), text


def test_hostile_bundle_text_is_escaped(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    prefix = "reacture_1<img src=x onerror=alert(1)>"
    folder = make_bundle(prefix=prefix, environment=HOSTILE, n_frames=8)
    data = folder / f"{prefix}_data.jsonl"
    with open(data, "a", encoding="utf-8") as f:
        f.write('\n{"type": "<b onmouseover=alert(2)>bold</b>"}')
    result = write_report(folder, tmp_path / "report")
    [page] = result.pages
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.html", page.html.name)
    _assert_escaped(result, [prefix, HOSTILE, "<b onmouseover=alert(2)>bold</b>"])


def test_hostile_catalog_text_is_escaped(tmp_path: Path) -> None:
    out = Output(str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    bad = Finding(Severity.ERROR, "ROW_SCHEMA", f"{HOSTILE}.jsonl", f"bad {HOSTILE} & more", line=3)
    write_catalog(
        out,
        [
            CatalogEntry(
                session="../../etc/x<i>",
                source=f"/tmp/{HOSTILE}",
                prefix=HOSTILE,
                status="rejected",
                reason=HOSTILE,
                findings=(bad,),
            ),
            CatalogEntry(
                session="index",
                source="/elsewhere",
                prefix="index",
                status="converted",
                n_frames=1,
                n_rows=1,
            ),
        ],
    )
    result = write_report(out.url, tmp_path / "report")
    names = sorted(p.html.name for p in result.pages)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+\.html", n) for n in names)
    assert "index.html" not in names and len(set(names)) == 2
    _assert_escaped(result, ["../../etc/x<i>", f"bad {HOSTILE} & more", f"/tmp/{HOSTILE}"])
    text = " ".join(parse_page(result.pages[0].html).text + parse_page(result.pages[1].html).text)
    assert "cannot be read" in text  # the converted row's outputs do not exist: said, no crash


# --- headless Chromium ----------------------------------------------------------------------


def _find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, which `make test` installs (the Makefile's browser step)."""
    found = _find_chromium()
    if not found:
        pytest.fail(
            "no chromium command: `make test` installs Debian's chromium package (apt-get "
            "install chromium); install it, or a Chromium that `chromium` names, and re-run"
        )
    return found


def _run_chromium(chromium: str, tmp: Path, page: Path, *args: str) -> str:
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_chromium_shows_every_image(
    chromium: str, dataset_report: ReportResult, tmp_path: Path
) -> None:
    variant = next(p for p in dataset_report.pages if p.session == VARIANT)
    for page in (dataset_report.index, variant.html):
        dom = _run_chromium(chromium, tmp_path, page, "--virtual-time-budget=5000", "--dump-dom")
        n_img = parse_page(page).count("img")
        m = re.search(r'<html[^>]*data-images-ok="(\d+)/(\d+)"', dom)
        assert m, dom[:500]
        assert (int(m[1]), int(m[2])) == (n_img, n_img)
        assert re.search(r'<html[^>]*data-errors="0"', dom), dom[:500]
    shot = tmp_path / "shot.png"
    _run_chromium(
        chromium,
        tmp_path,
        variant.html,
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
    )
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        assert len(np.unique(np.asarray(im.convert("L")))) > 50  # pictures, not a blank page
