"""Writing the dataset cards ``OUT/README.md`` and ``OUT/wds/README.md`` (their text:
``formats.card``).

A card that would not change is not written again. It carries ``CARD_MARK``; a ``README.md``
without it is the user's own file and is never replaced: the card is written beside it as
``DATASET_CARD.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from reacture_convert.formats.card import (
    LICENCE_TO_FILL,
    card_text,
    kept_licence,
    shard_features,
    shards_card_text,
)
from reacture_convert.formats.wds.index import read_index
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.claim import is_card, read_text
from reacture_convert.output.layout import CARD, CARD_ASIDE, WDS_CARD, WDS_CARD_ASIDE
from reacture_convert.output.storage import Output

__all__ = [
    "CARD",
    "LICENCE_TO_FILL",
    "WDS_CARD",
    "card_text",
    "shard_features",
    "shards_card_text",
    "write_card",
]


def _place(read: Callable[[str], str | None], rel: str, aside: str) -> tuple[str, str | None]:
    """Where a card goes, and the text there now: ``rel``, unless ``rel`` is a file of the
    user's (not a card): then ``aside``."""
    text = read(rel)
    if text is None or is_card(text):
        return rel, text
    return aside, read(aside)


def _put(out: Output, rel: str, now: str | None, text: str) -> None:
    """Write ``text`` to ``rel`` atomically, unless it is there already (a re-run that changes
    nothing writes nothing)."""
    if now != text:
        out.write_bytes_atomic(rel, text.encode("utf-8"))


def write_card(out: Output, catalog_rows: Sequence[CatalogEntry]) -> None:
    """Write ``OUT/README.md`` for these catalog rows and, when there are shards,
    ``OUT/wds/README.md`` for the shards ``wds/index.json`` lists; each atomically, keeping the
    licence of the card already there, and only when its text changes. Where ``README.md`` is
    the user's own file, the card is ``DATASET_CARD.md`` beside it. What is there now is read
    first, all at once (from an object store, one round trip instead of one per file)."""
    names = (CARD, CARD_ASIDE, WDS_CARD, WDS_CARD_ASIDE)
    with ThreadPoolExecutor(len(names) + 1, thread_name_prefix="reacture-card") as pool:
        found = pool.submit(read_index, out)
        texts = dict(zip(names, pool.map(lambda rel: read_text(out, rel), names), strict=True))
        index = found.result()
    rel, now = _place(texts.__getitem__, CARD, CARD_ASIDE)
    licence = kept_licence(now)
    _put(out, rel, now, card_text(catalog_rows, index, licence))
    if rel == CARD and is_card(texts[CARD_ASIDE] or ""):  # README.md is ours again
        out.remove_files([out.path(CARD_ASIDE)])
    if index is not None and index.shards:
        rel, now = _place(texts.__getitem__, WDS_CARD, WDS_CARD_ASIDE)
        _put(out, rel, now, shards_card_text(index, licence if now is None else kept_licence(now)))
