"""The HTML of the report: the index of sessions and one page per session.

Every text from the data (session names, sources, findings, metadata) is escaped. The style
sheet and the small script (``assets/report.css``, ``assets/report.js``) are inlined into every
page, so a page opened from disk needs no server and no network. The script marks
``<html data-images-ok="N/M" data-errors="K">`` once the page has loaded, and warns on the page
when a picture is missing, so a headless browser can prove that the page shows every picture.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reacture_convert import __version__
from reacture_convert.findings import Finding, Severity
from reacture_convert.report.data import INDEX, Facts, Session
from reacture_convert.report.plots import (
    CADENCE_SIZE,
    THUMB_SCALE,
    THUMB_SIZE,
    TIMELINE_SIZE,
    Thumbnail,
)
from reacture_convert.report.timeline import GAP_FACTOR, gaps, num

__all__ = ["index_html", "session_html"]


@functools.cache
def _asset(name: str) -> str:
    """The text of ``assets/<name>``, shipped as package data."""
    return (importlib.resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="reacture-convert {_e(__version__)}">',
            f"<title>{_e(title)}</title>",
            f"<style>\n{_asset('report.css')}</style>",
            f"<script>\n{_asset('report.js')}</script>",
            "</head>",
            "<body>",
            '<p id="missing-images" class="banner bad" hidden></p>',
            *body,
            f'<footer class="small"><p>Written by reacture-convert {_e(__version__)} on '
            f"{_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}.</p></footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table; ``head`` is plain text (escaped here), row cells are HTML already escaped."""
    attr = f' class="{cls}"' if cls else ""
    out = [
        f"<table{attr}>",
        "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>",
        "<tbody>",
    ]
    out += ["<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows]
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _td(value: Any, numeric: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("num" if numeric else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{'&mdash;' if value is None or value == '' else _e(value)}</td>"


def _fmt_s(value: Any) -> str | None:
    x = num(value)
    return None if math.isnan(x) else f"{x:.1f}"


def _blank_text(facts: Facts) -> str | None:
    n, b = facts.n_frames, facts.blank_frames
    if b is None:
        return None
    return f"{b} of {n} (all)" if n and b == n else f"{b} of {n}"


def _environment(meta: Mapping[str, Any]) -> str | None:
    env, name = meta.get("environment"), meta.get("environment_name")
    if env is None:
        return None
    return f"{env} ({name})" if name and name != env else str(env)


def index_html(target: str, kind: str, facts: Sequence[Facts], loose: Sequence[Finding]) -> str:
    head = [
        "session",
        "status",
        "environment",
        "frames",
        "rows",
        "duration (s)",
        "blank frames",
        "errors",
        "warnings",
        "info",
    ]
    rows = []
    for f in facts:
        all_blank = bool(f.n_frames) and f.blank_frames == f.n_frames
        rows.append(
            [
                f'<td><a href="{_e(f.page)}.html">{_e(f.session)}</a></td>',
                _td(f.status),
                _td(_environment(f.metadata)),
                _td(f.n_frames, True),
                _td(f.n_rows, True),
                _td(_fmt_s(f.metadata.get("duration_s")), True),
                _td(_blank_text(f), True, "sev-warning" if all_blank else ""),
                _td(f.count(Severity.ERROR), True),
                _td(f.count(Severity.WARNING), True),
                _td(f.count(Severity.INFO), True),
            ]
        )
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
    rows = [
        [
            _td(f.severity, cls=f"sev-{f.severity}"),
            f"<td><code>{_e(f.code)}</code></td>",
            _td(f.file),
            _td(f.line, True),
            _td(f.frame, True),
            _td(f.message),
        ]
        for f in sorted(findings, key=lambda f: order[f.severity])
    ]
    return _table(["severity", "code", "file", "line", "frame", "message"], rows)


def _blank_banner(facts: Facts) -> str:
    n, b = facts.n_frames, facts.blank_frames
    if b is None or n is None:
        return '<p class="banner note">Blank frames: unknown (frames not scanned).</p>'
    if n and b == n:
        return (
            f'<p class="banner bad"><strong>All {n} frames are blank (all zeros).</strong> '
            "This is the game's known black-frame export (WebGL preserveDrawingBuffer "
            "off): the frames are useless for vision.</p>"
        )
    if b:
        return f'<p class="banner note">{b} of {n} frames are blank (all zeros).</p>'
    return f'<p class="banner good">No blank frames: all {n} frames hold pictures.</p>'


def _fact_rows(session: Session) -> Iterator[tuple[str, Any]]:
    f, meta, tl = session.facts, session.facts.metadata, session.timeline
    yield "status", f.status
    if f.reason:
        yield "reason", f.reason
    yield "source", f.source
    yield "file prefix", f.prefix
    yield "metadata session_id", f.metadata_session_id
    yield "environment", _environment(meta)
    yield "start time", meta.get("start_time")
    yield (
        "duration (metadata)",
        _fmt_s(meta.get("duration_s"))
        and f"{_fmt_s(meta.get('duration_s'))} s (until Download Data was pressed)",
    )
    if tl is not None and tl.end_s is not None:
        yield "game time (game_end)", f"{tl.end_s:.1f} s"
    yield "frames", f.n_frames
    yield "blank frames", _blank_text(f)
    rows: Any = f.n_rows
    if tl is not None:
        rows = (
            f"{f.n_rows} ({tl.n_periodic} periodic, {tl.n_events} events, {tl.n_actions} actions)"
        )
    yield "rows", rows
    ts = session.timestamps
    if ts is not None and ts.size > 1:
        spans, median = gaps(ts / 1000.0)
        if median:
            rate = meta.get("sampling_rate_hz")
            yield (
                "frame cadence",
                (f"median {median * 1000:.0f} ms ({1 / median:.1f} Hz); metadata says {rate} Hz"),
            )
        yield "gaps", f"{len(spans)} (intervals > {GAP_FACTOR:g}x median)"
    if tl is not None and tl.pauses:
        yield "pauses", ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in tl.pauses)
    result = meta.get("game_result")
    if isinstance(result, Mapping):
        yield (
            "game result",
            (
                f"{result.get('completion_status')}; score "
                f"{result.get('final_score')}; victims saved "
                f"{result.get('victims_saved')}/{result.get('victims_total')}"
            ),
        )
    counts = [
        f"{f.count(s)} {s}{'s' if s is not Severity.INFO and f.count(s) != 1 else ''}"
        for s in Severity
    ]
    yield "findings", ", ".join(counts)


def session_html(
    session: Session, root: Path, thumbs: Sequence[Thumbnail], plots: Sequence[Path]
) -> str:
    f = session.facts
    rel = {p: p.relative_to(root).as_posix() for p in [*(t.path for t in thumbs), *plots]}
    facts_table = _table(
        ["fact", "value"],
        ([f"<th>{_e(k)}</th>", _td(v)] for k, v in _fact_rows(session) if v is not None),
        cls="facts",
    )
    top = [facts_table]
    cadence = next((p for p in plots if p.name == "cadence.png"), None)
    if cadence is not None:
        w, h = CADENCE_SIZE
        top.append(
            f'<figure><img src="{_e(rel[cadence])}" width="{w}" height="{h}" '
            f'alt="histogram of frame intervals of {_e(f.session)}"></figure>'
        )
    body = [
        f'<nav><a href="{INDEX}">&larr; all sessions</a></nav>',
        f"<h1>{_e(f.session)}</h1>",
        _blank_banner(f),
        *(f'<p class="banner note">{_e(n)}</p>' for n in session.notes),
        '<div class="top">',
        *top,
        "</div>",
        "<h2>Frames</h2>",
    ]
    if thumbs:
        ts = session.timestamps
        orient = (
            "stored bottom row first, flipped for display"
            if session.bottom_up
            else "stored top row first"
        )
        body.append(
            f"<p>{len(thumbs)} of {session.n_stored} frames at regular intervals, "
            f"right way up ({orient}), enlarged {THUMB_SCALE}x with nearest "
            "neighbour.</p>"
        )
        body.append('<div class="strip">')
        for thumb in thumbs:
            i = thumb.index
            t = f" &middot; {ts[i] / 1000:.1f} s" if ts is not None and i < ts.size else ""
            body.append(
                f'<figure><img src="{_e(rel[thumb.path])}" width="{THUMB_SIZE[0]}" '
                f'height="{THUMB_SIZE[1]}" alt="frame {i}"><figcaption>frame {i}{t}'
                f"{' &middot; blank' if thumb.blank else ''}</figcaption></figure>"
            )
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
            "</figure>"
        )
    else:
        body.append("<p>No rows to plot.</p>")
    body += [f"<h2>Validation findings ({len(f.findings)})</h2>", _findings_table(f.findings)]
    return _page(f"{f.session}: ReActure session", body)
