"""``wds/index.json``: what a dataset's shards hold. It records the options that shaped them,
the sessions with their sample counts and samples' sha256, and every shard's file name, sample
count, size, sha256, sessions and runs (where every ``SHARD_RUN`` samples begin), in shard
order (an append adds shards at the end). It holds no clock time, so the same inputs and
options give the same bytes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reacture_convert.errors import OutputError
from reacture_convert.formats.wds.compression import COMPRESSIONS, shard_suffix
from reacture_convert.output.layout import WDS_INDEX

if TYPE_CHECKING:
    from reacture_convert.output.storage import Output

__all__ = [
    "COMPRESSED",
    "EFFECTIVE",
    "FORMAT",
    "INDEX",
    "LAYOUT",
    "VERSION",
    "WdsIndex",
    "WdsSession",
    "WdsShard",
    "dataset_tag",
    "read_index",
]

INDEX = WDS_INDEX
FORMAT = "reacture-wds"
VERSION = 2
# Bumped whenever the bytes written for the same inputs change; part of the shard-name tag.
LAYOUT = 2
# The options that shape the shards, as the index records them and the tag hashes them (and,
# for compressed shards only, ``COMPRESSED``: a plain set's tags and index are as before).
EFFECTIVE = (
    "name",
    "encoding",
    "shuffle_seed",
    "shuffle_buffer",
    "shuffle_streams",
    "shard_size",
    "shard_count",
)
COMPRESSED = ("compression", "compression_level")


def dataset_tag(
    sessions: Sequence[tuple[str, str]], effective: Mapping[str, Any], previous: str | None
) -> str:
    """The ``<tag>`` of the shards written for ``sessions`` ((session, sha256 of its samples),
    in session order) with the ``effective`` options (``EFFECTIVE``), after the shards of tag
    ``previous`` (an append), or as a new set (None)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "layout": LAYOUT,
        "sessions": [[s, sha] for s, sha in sessions],
        "options": dict(effective),
        **({"after": previous} if previous is not None else {}),
    }
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class WdsSession:
    """A session in the set: its sample count and the sha256 of its samples as written."""

    session: str
    samples: int
    sha256: str


@dataclass(frozen=True, slots=True)
class WdsShard:
    """One shard: ``url`` is the file name relative to ``wds/``."""

    url: str
    samples: int
    bytes: int
    sha256: str
    sessions: tuple[str, ...]
    # (stored offset, tar offset) where each run of ``SHARD_RUN`` samples and the end of the
    # archive begin (``formats.wds.compression``): the two are equal in a plain shard; () for a
    # plain shard of a set written before plain shards listed them (read through its headers)
    runs: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class WdsIndex:
    """What ``wds/index.json`` says (see ``to_dict`` for the file's layout)."""

    name: str
    encoding: str
    tag: str
    shuffle_seed: int | None
    shuffle_buffer: int | None
    shuffle_streams: int | None
    shard_size: int | None
    shard_count: int | None
    sessions: tuple[WdsSession, ...]
    total_samples: int
    shards: tuple[WdsShard, ...] = field(default=())
    # sessions were taken out (``remove``): shards of old and new tags, numbers with gaps
    pruned: bool = False
    # ``none`` (``.tar``), or ``gzip`` (``.tar.gz``: one member flushed every run, at this level)
    compression: str = "none"
    compression_level: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "tag": self.tag,
            "encoding": self.encoding,
            "shuffle_seed": self.shuffle_seed,
            "shuffle_buffer": self.shuffle_buffer,
            "shuffle_streams": self.shuffle_streams,
            "shard_size": self.shard_size,
            "shard_count": self.shard_count,
            "sessions": [
                {"session": s.session, "samples": s.samples, "sha256": s.sha256}
                for s in self.sessions
            ],
            "total_samples": self.total_samples,
            "shards": [
                {
                    "url": s.url,
                    "samples": s.samples,
                    "bytes": s.bytes,
                    "sha256": s.sha256,
                    "sessions": list(s.sessions),
                    **({"runs": [list(r) for r in s.runs]} if s.runs else {}),
                }
                for s in self.shards
            ],
            **({"pruned": True} if self.pruned else {}),
            **(
                {"compression": self.compression, "compression_level": self.compression_level}
                if self.compression != "none"
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WdsIndex:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise OutputError(
                f"{INDEX}: not a {FORMAT} version {VERSION} index (format {d.get('format')!r}, "
                f"version {d.get('version')!r}); convert again with the wds format to rewrite it"
            )
        if d.get("compression", "none") not in COMPRESSIONS:
            raise OutputError(
                f"{INDEX}: shard compression {d.get('compression')!r} is not one this version "
                f"reads ({', '.join(COMPRESSIONS)}); upgrade reacture-convert"
            )
        return cls(
            name=d["name"],
            encoding=d["encoding"],
            tag=d["tag"],
            shuffle_seed=d["shuffle_seed"],
            shuffle_buffer=d["shuffle_buffer"],
            shuffle_streams=d["shuffle_streams"],
            shard_size=d["shard_size"],
            shard_count=d["shard_count"],
            sessions=tuple(
                WdsSession(s["session"], s["samples"], s["sha256"]) for s in d["sessions"]
            ),
            total_samples=d["total_samples"],
            shards=tuple(
                WdsShard(
                    s["url"],
                    s["samples"],
                    s["bytes"],
                    s["sha256"],
                    tuple(s["sessions"]),
                    tuple((int(c), int(u)) for c, u in s.get("runs", ())),
                )
                for s in d["shards"]
            ),
            pruned=d.get("pruned", False) is True,
            compression=d.get("compression", "none"),
            compression_level=d.get("compression_level"),
        )

    def effective(self) -> dict[str, Any]:
        """The options the shards were written with (``EFFECTIVE``, and ``COMPRESSED`` for
        compressed shards), as the tag hashes them."""
        keys = EFFECTIVE + (COMPRESSED if self.compression != "none" else ())
        return {k: getattr(self, k) for k in keys}

    @property
    def suffix(self) -> str:
        """How the set's shard names end: ``.tar``, or ``.tar.gz`` when compressed."""
        return shard_suffix(self.compression)

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode("ascii")


def read_index(out: Output) -> WdsIndex | None:
    """The dataset's ``wds/index.json``, or None when there is none."""
    try:
        data = out.read_bytes(out.path(INDEX))
    except FileNotFoundError:
        return None
    return WdsIndex.from_dict(json.loads(data))
