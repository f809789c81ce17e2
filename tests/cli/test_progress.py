"""What ``convert`` shows of a run's progress on a terminal (rich, rendered to a console that
the test forces to be one), and that it shows nothing when not on one."""

from __future__ import annotations

import datetime as dt
import io
import re

from rich.console import Console

from reacture_convert.cli.convert import progress_reporter
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.status import Status
from reacture_convert.run.progress import FramesWritten, SessionDone, Started, WaitingForLock

SESSION = "reacture_1795637238001"


def _terminal() -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, force_terminal=True, width=160, color_system=None), text


def _plain(text: io.StringIO) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text.getvalue())


def test_a_session_in_flight_shows_frames_bytes_rate_and_eta() -> None:
    console, text = _terminal()
    with progress_reporter(True, console) as progress:
        assert progress is not None
        progress(Started("/data/out", 2))
        progress(FramesWritten(SESSION, 5_000, 20_000, 245_760_000, 983_040_000, 2.0))
    shown = _plain(text)
    assert "0/2 sessions" in shown
    assert SESSION in shown
    assert "5,000/20,000 frames" in shown
    assert "245.8 MB/983.0 MB" in shown
    assert "2,500 frames/s" in shown
    assert "ETA 0:00:06" in shown


def test_a_finished_session_counts_and_its_late_frames_are_ignored() -> None:
    console, text = _terminal()
    entry = CatalogEntry(
        session=SESSION,
        source="/in/b",
        prefix=SESSION,
        status=Status.CONVERTED,
        n_frames=92,
        converted_at=dt.datetime.now(dt.UTC),
    )
    with progress_reporter(True, console) as progress:
        assert progress is not None
        progress(Started("/data/out", 1))
        progress(SessionDone(entry, 1, 1))
        progress(FramesWritten(SESSION, 92, 92, 1, 1, 1.0))  # after its result: not shown
    shown = _plain(text).split("\n")
    assert any("1/1 sessions" in line and "92 frames" in line for line in shown)
    assert not any("92/92 frames" in line for line in shown)


def test_waiting_behind_a_lock_says_whose_it_is() -> None:
    console, text = _terminal()
    with progress_reporter(True, console) as progress:
        assert progress is not None
        progress(WaitingForLock("/data/out", "host-a:4242 (since 2026-12-06T23:00:00+00:00)"))
        waiting = _plain(text)
        progress(Started("/data/out", 1))
    assert "waiting for the lock held by host-a:4242 (since 2026-12-06T23:00:00+00:00)" in waiting
    assert "converting" not in waiting
    assert "converting" in _plain(text)


def test_nothing_is_shown_off_a_terminal_or_when_quiet() -> None:
    text = io.StringIO()
    with progress_reporter(True, Console(file=text, force_terminal=False)) as progress:
        assert progress is None
    console, text = _terminal()
    with progress_reporter(False, console) as progress:
        assert progress is None
    assert text.getvalue() == ""


def test_sessions_done_stay_counted_while_others_are_in_flight() -> None:
    console, text = _terminal()
    entry = CatalogEntry(
        session=SESSION,
        source="/in/a",
        prefix=SESSION,
        status=Status.CONVERTED,
        n_frames=10,
        converted_at=dt.datetime.now(dt.UTC),
    )
    with progress_reporter(True, console) as progress:
        assert progress is not None
        progress(Started("/data/out", 3))
        progress(FramesWritten(SESSION, 5, 10, 5, 10, 1.0))
        progress(SessionDone(entry, 1, 3))
        progress(FramesWritten("reacture_1795637238002", 4, 8, 4, 8, 1.0))
    last = [line for line in _plain(text).split("\n") if "sessions" in line][-1]
    assert "1/3 sessions  14 frames" in last
