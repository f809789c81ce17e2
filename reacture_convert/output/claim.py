"""Whether a run may write into OUT: it is absent, empty, or a reacture-convert dataset; a
folder that holds other files only when the user says so (``allow_other_files``), and then
none of them is ever overwritten.

A dataset is a folder holding ``catalog.parquet`` or the catalog's log ``.catalog/``. Before
its first catalog row a run has put nothing in OUT but ``layout.RUN_FILES`` (the dataset card:
a ``README.md`` that carries ``CARD_MARK``, older cards known by their wording; staging; the
lock) and, when it was killed, sessions it committed (``zarr/``, ``rows/``, ``frames/``, ``wds/``
holding only such names). Anything else is the user's. ``README.md`` that is not a card is never
replaced: the card goes to ``DATASET_CARD.md`` beside it (``writers.card``).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from reacture_convert.errors import OutRefusedError
from reacture_convert.output.layout import (
    CARD,
    CARD_ASIDE,
    CATALOG,
    LOCKED_WRITES,
    LOG_DIR,
    RUN_FILES,
    WDS_DIR,
)
from reacture_convert.output.lease import is_s3
from reacture_convert.output.storage import Output

__all__ = ["CARD_MARK", "OutState", "check_out", "is_card", "out_state", "read_text"]

CARD_MARK: Final = "<!-- reacture-convert dataset card -->"
_OLD_CARD: Final = "converted by reacture-convert"  # cards written before CARD_MARK
_SHOWN: Final = 3  # foreign names a message lists


def is_card(text: str) -> bool:
    """``text`` is a dataset card this package wrote (so a run may rewrite it)."""
    return CARD_MARK in text or (text.startswith("---") and _OLD_CARD in text)


def read_text(out: Output, rel: str) -> str | None:
    """The text of the small file ``rel`` in OUT, or None when it is not there."""
    try:
        data = out.read_bytes(out.path(rel))
    except (FileNotFoundError, IsADirectoryError):
        return None
    return data.decode("utf-8", errors="replace")


# The dataset's folders, and what each holds: a killed run can leave committed sessions before
# its first catalog row; a folder of the same name that holds anything else is the user's.
_FOLDERS: Final = {
    "zarr": re.compile(r"[A-Za-z0-9_-]+\.zarr"),
    "rows": re.compile(r"[A-Za-z0-9_-]+\.parquet"),
    "frames": re.compile(r"[A-Za-z0-9_-]+\.parquet"),
    WDS_DIR: re.compile(
        r"[A-Za-z0-9_.-]+\.tar(\.gz)?|(index\.json|README\.md|DATASET_CARD\.md)(\.tmp-\w+)?"
    ),
}


def _ours(out: Output, name: str) -> bool:
    """``name`` at OUT's top is what a run writes there before its first catalog row."""
    if name in RUN_FILES or _temporary(name):
        return True
    pattern = _FOLDERS.get(name)
    return pattern is not None and all(pattern.fullmatch(n) for n in out.list_names(out.path(name)))


def _temporary(name: str) -> bool:
    """A stray temporary of an atomic write (``catalog.parquet.tmp-*``)."""
    return any(name.startswith(f"{w}.tmp-") for w in LOCKED_WRITES if "/" not in w)


@dataclass(frozen=True)
class OutState:
    """What OUT is now: ``kind`` is ``absent``, ``empty`` (nothing but what a run puts there
    first), ``dataset``, ``other`` (a folder holding ``foreign`` names) or ``file``."""

    kind: str
    foreign: tuple[str, ...] = ()


def out_state(out: Output) -> OutState:
    """Look at OUT (one listing; a read of ``README.md`` when there is one). On an object
    store the check for a file and the listing go out together; a prefix with nothing under
    it is ``absent`` (S3 has no empty folders)."""
    fs = out.fs
    fs.invalidate_cache(out.root)
    with ThreadPoolExecutor(2, thread_name_prefix="reacture-claim") as pool:
        is_file = pool.submit(lambda: bool(out.root) and out.is_object(out.root))
        listed = pool.submit(out.list_names, out.root)
        if is_file.result():
            return OutState("file")
        try:
            names = sorted(listed.result())
        except NotADirectoryError:  # a file on the way: OUT cannot be made (the lock says so)
            return OutState("absent")
    if not names:
        return OutState("absent" if is_s3(out) or not fs.exists(out.root) else "empty")
    if CATALOG in names or LOG_DIR in names:
        return OutState("dataset")
    foreign = [n for n in names if not _ours(out, n)]
    for card in (CARD, CARD_ASIDE):
        if card in names and not is_card(read_text(out, card) or ""):
            foreign.insert(0, card)
    return OutState("other", tuple(foreign)) if foreign else OutState("empty")


def check_out(out: Output, *, allow_other_files: bool = False) -> OutState:
    """OUT's state, or OutRefusedError when a run may not write there: a file, or a folder
    with other files (unless ``allow_other_files``)."""
    state = out_state(out)
    if state.kind == "file":
        raise OutRefusedError(
            f"{out.url} is a file, not a folder; give a new or empty folder for the dataset",
            path=out.url,
        )
    if state.kind == "other" and not allow_other_files:
        shown = ", ".join(state.foreign[:_SHOWN])
        more = len(state.foreign) - _SHOWN
        raise OutRefusedError(
            f"{out.url} holds files that are not a reacture-convert dataset ({shown}"
            f"{f' and {more} more' if more > 0 else ''}); give a new or empty folder, or pass "
            "--allow-other-files (allow_other_files = true in a job file) to write the dataset "
            "beside them (none is overwritten)",
            path=out.url,
        )
    return state
