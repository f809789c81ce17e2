"""The dataset cards' text: ``OUT/README.md`` (``card_text``) and ``OUT/wds/README.md``
(``shards_card_text``), so that Hugging Face ``datasets`` (and the Hub) understand a converted
folder. ``writers.card`` writes them; ``verify`` writes them again from the catalog and the
index and compares the bytes.

Its YAML header lists ``configs`` whose ``data_files`` are the live sessions' files, named from
the catalog (never a glob, so leftovers of killed runs are never read):

- ``rows`` (the default): ``rows/<session>.parquet``, so ``datasets.load_dataset(OUT)`` gives
  every data.jsonl row;
- ``frames``: the alignment tables ``frames/<session>.parquet``;
- ``shards``: the WebDataset shards that ``wds/index.json`` lists, with their ``features``
  declared in ``dataset_info`` (``datasets`` cannot infer them from the first samples: early
  samples hold empty lists and nulls whose type JSON does not say).

The body lists the sessions with their frame, blank-frame and row counts, says where the
layout is described, and leaves the licence to fill in: the ``license:`` line of an existing
card is kept when the card is rewritten (every other line is regenerated). The card holds no
clock time: the same catalog and shards give the same bytes, and a card that would not change
is not written again. It carries ``CARD_MARK``; a ``README.md`` without it is the user's own
file and is never replaced: the card is written beside it as ``DATASET_CARD.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa

from reacture_convert import __version__
from reacture_convert.formats.wds.index import WdsIndex
from reacture_convert.formats.wds.sample_json import SAMPLE_TYPE
from reacture_convert.output.catalog import CatalogEntry
from reacture_convert.output.claim import CARD_MARK
from reacture_convert.output.layout import WDS_DIR, frames_table_path, rows_path

__all__ = [
    "LICENCE_TO_FILL",
    "LICENCE_NOTE",
    "card_text",
    "card_version",
    "kept_licence",
    "shard_features",
    "shards_card_text",
]

LICENCE_TO_FILL: Final = "unknown"
LICENCE_NOTE: Final = re.compile(
    r"^`[^`\n]*`( \(not filled in yet: set the `license:` line above\))?$"
)
_VERSION: Final = re.compile(r"converted by reacture-convert (\S+)\. This card")
_LICENCE_LINE: Final = re.compile(r"^license:[ \t]*(\S[^\n#]*?)[ \t]*(?:#.*)?$", re.MULTILINE)
_SCALARS: Final = {
    pa.float64(): "float64",
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.string(): "string",
    pa.bool_(): "bool",
}


# --- Hugging Face features of a sample ------------------------------------------------------------
def _feature(t: pa.DataType) -> dict[str, Any]:
    """The body of one feature in ``datasets``' YAML form (``dtype``, ``struct`` or ``list``)."""
    if pa.types.is_struct(t):
        return {"struct": [{"name": f.name, **_feature(f.type)} for f in t]}
    if pa.types.is_list(t):
        inner = _feature(t.value_type)
        return {"list": inner.get("struct", inner.get("dtype"))}
    return {"dtype": _SCALARS[t]}


def shard_features(encoding: str) -> list[dict[str, Any]]:
    """The features of a shard sample as ``datasets``' webdataset builder yields it: ``json``
    (the sample structure), the picture (``npy``: a (128, 128, 3) uint8 array; ``png`` and
    ``webp``: an image), ``__key__`` and ``__url__``."""
    picture: dict[str, Any] = (
        {"dtype": {"array3_d": {"shape": [128, 128, 3], "dtype": "uint8"}}}
        if encoding == "npy"
        else {"dtype": "image"}
    )
    return [
        {"name": "json", **_feature(SAMPLE_TYPE)},
        {"name": encoding, **picture},
        {"name": "__key__", "dtype": "string"},
        {"name": "__url__", "dtype": "string"},
    ]


# --- a small YAML writer (JSON strings are YAML double-quoted scalars) -------------------------
def _yaml(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        lines: list[str] = []
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines += [
                    f"{pad}{key}:",
                    *_yaml(item, indent + (0 if isinstance(item, list) else 2)),
                ]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            sub = _yaml(item, indent + 2)
            lines += [f"{pad}- {sub[0].lstrip()}", *sub[1:]]
        return lines
    return [f"{pad}{_scalar(value)}"]


def _scalar(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


# --- the card -------------------------------------------------------------------------------------
def _live(catalog_rows: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """One live row per session (the catalog keeps one), in session order."""
    rows = {e.session: e for e in catalog_rows if e.session and e.status.is_live}
    return [rows[s] for s in sorted(rows)]


def _config(name: str, files: Sequence[str], default: bool = False) -> dict[str, Any]:
    head: dict[str, Any] = {"config_name": name, **({"default": True} if default else {})}
    return {**head, "data_files": [{"split": "train", "path": list(files)}]}


def _shards_header(index: WdsIndex, folder: str) -> dict[str, Any]:
    """``configs`` and ``dataset_info`` of a ``shards`` config over the index's shards."""
    files = [f"{folder}{s.url}" for s in index.shards]
    return {
        "configs": [_config("shards", files, default=True)],
        "dataset_info": [{"config_name": "shards", "features": shard_features(index.encoding)}],
    }


def _header(fields: Mapping[str, Any]) -> list[str]:
    body = [
        line if not line.startswith("license:") else f"{line}  # fill in: the data's licence"
        for line in _yaml(fields, 0)
    ]
    return ["---", *body, "---", CARD_MARK, ""]


def _licence_note(licence: str) -> str:
    """The line under ``## Licence`` (``LICENCE_NOTE`` finds it)."""
    todo = (
        " (not filled in yet: set the `license:` line above)" if licence == LICENCE_TO_FILL else ""
    )
    return f"`{licence}`{todo}"


def card_text(
    catalog_rows: Iterable[CatalogEntry],
    index: WdsIndex | None,
    licence: str = LICENCE_TO_FILL,
    version: str = __version__,
) -> str:
    """``OUT/README.md`` for these catalog rows and shards, as converter ``version`` writes it
    (``writers.card.write_card`` writes it)."""
    live = _live(catalog_rows)
    tables = [e.session for e in live if e.session and rows_path(e.session) in e.outputs]
    fields: dict[str, Any] = {"pretty_name": "ReActure sessions", "license": licence}
    fields["tags"] = ["reacture", "robotics", "video-game", "webdataset"]
    if tables:  # one builder per folder: the tables here, the shards in wds/
        fields["configs"] = [
            _config("rows", [rows_path(s) for s in tables], default=True),
            _config("frames", [frames_table_path(s) for s in tables]),
        ]
    elif index is not None and index.shards:
        fields.update(_shards_header(index, f"{WDS_DIR}/"))
    frames = sum(e.n_frames or 0 for e in live)
    blank = sum(e.blank_frames or 0 for e in live)
    in_shards = {s.session for s in index.sessions} if index is not None else set()
    loading = (
        [
            'rows = datasets.load_dataset("OUT", split="train")            # every data.jsonl row',
            'frames = datasets.load_dataset("OUT", "frames", split="train")  # alignment tables',
        ]
        if tables
        else []
    ) + (
        ['samples = datasets.load_dataset("OUT/wds", split="train")      # WebDataset samples']
        if in_shards
        else []
    )
    return "\n".join(
        [
            *_header(fields),
            "# ReActure sessions",
            "",
            f"{len(live)} session(s), {frames:,} frames ({blank:,} blank), converted by "
            f"reacture-convert {version}. This card is rewritten when the catalog changes: "
            "edit only its `license:` line, which is kept.",
            "",
            "## Loading",
            "",
            "```python",
            "import datasets",
            *loading,
            "```",
            "",
            "## Sessions",
            "",
            "| session | frames | blank frames | rows | in shards |",
            "| --- | ---: | ---: | ---: | --- |",
            *(
                f"| {e.session} | {e.n_frames or 0:,} | {e.blank_frames or 0:,} | "
                f"{e.n_rows or 0:,} | {'yes' if e.session in in_shards else 'no'} |"
                for e in live
            ),
            "",
            "## Layout",
            "",
            "- `catalog.parquet`: every bundle seen and its state; read the dataset through its "
            "live rows (`status in ('converted', 'skipped')`).",
            "- `zarr/<session>.zarr`: frames (N, 128, 128, 3) uint8, stored bottom-up, and "
            "timestamps.",
            "- `rows/<session>.parquet`: every data.jsonl row, losslessly (config `rows`).",
            "- `frames/<session>.parquet`: one row per frame, the join of frames and rows "
            "(config `frames`).",
            "- `wds/`: WebDataset shards listed by `wds/index.json`, one sample per frame: "
            "`<key>.json` (the frame's periodic row and events, one structure for every sample) "
            "and the picture; `wds/README.md` declares their features.",
            "",
            "The full description is docs/output-layout.md in reacture-convert.",
            "",
            "## Licence",
            "",
            _licence_note(licence),
            "",
        ]
    )


def shards_card_text(index: WdsIndex, licence: str = LICENCE_TO_FILL) -> str:
    """``OUT/wds/README.md``: the shards as a ``datasets`` folder with declared features."""
    fields: dict[str, Any] = {"pretty_name": "ReActure sessions (WebDataset shards)"}
    fields.update({"license": licence, **_shards_header(index, "")})
    return "\n".join(
        [
            *_header(fields),
            "# ReActure sessions: WebDataset shards",
            "",
            f"{index.total_samples:,} samples of {len(index.sessions)} session(s) in "
            f"{len(index.shards)} shard(s), listed by `index.json`; one sample per frame: "
            f"`<key>.json` and `<key>.{index.encoding}`. See `../README.md`.",
            "",
            "## Licence",
            "",
            _licence_note(licence),
            "",
        ]
    )


def kept_licence(text: str | None) -> str:
    """The ``license:`` of a card's ``text``, or ``LICENCE_TO_FILL``."""
    if text is None or not text.startswith("---"):
        return LICENCE_TO_FILL
    end = text.find("\n---", 3)
    found = _LICENCE_LINE.search(text[: end if end > 0 else len(text)])
    return found.group(1).strip().strip("\"'") if found else LICENCE_TO_FILL


def card_version(text: str) -> str | None:
    """The converter version a ``README.md`` card names, or None."""
    found = _VERSION.search(text)
    return found.group(1) if found else None
