"""The output formats: ``zarr`` (``zarr``, ``rows`` and ``alignment``: Zarr frames, the rows
Parquet and the alignment table) and ``wds`` (``webdataset``: WebDataset shards).

``WRITERS`` maps a format's name to what the converter needs to know about it, so that
conversion loops over the formats asked for instead of testing their names, and ``FORMATS``
lists the names. ``writer_specs`` turns names into specs and refuses an unknown one. Each spec
opens the format's writer of a session (``writers.base.FormatWriter``); adding a format is one
module plus one line here (``docs/adding-a-format.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from reacture_convert.errors import ConfigError
from reacture_convert.output.layout import session_parts
from reacture_convert.writers.base import FormatWriter, SessionContext, Written
from reacture_convert.writers.session import open_session
from reacture_convert.writers.webdataset.session import open_samples

__all__ = [
    "FORMATS",
    "WRITERS",
    "FormatWriter",
    "SessionContext",
    "WriterSpec",
    "Written",
    "session_writers",
    "writer_specs",
]


@dataclass(frozen=True, slots=True)
class WriterSpec:
    """One output format as the converter drives it.

    ``session_outputs(session)``: what a session commits under OUT (paths relative to OUT),
    written into staging while validation reads the bundle; none when the format has no
    per-session output. ``merged``: the format's output spans sessions: every session leaves a
    sample tar in staging (even when its other outputs are up to date), and the batch merges
    them once all sessions are done. ``open(context, options)``: the format's writer of one
    session, given the format's options (the ``ConvertOptions`` field named as the format).
    In a conversion the writers are opened in ``WRITERS`` order: the first one's
    ``block_frames`` sizes the blocks of frames that the read hands to all of them."""

    name: str
    description: str
    session_outputs: Callable[[str], list[str]]
    open: Callable[[SessionContext, Any], FormatWriter]
    merged: bool = False


def _no_outputs(session: str) -> list[str]:
    return []


WRITERS: Final[Mapping[str, WriterSpec]] = MappingProxyType(
    {
        "zarr": WriterSpec("zarr", "Zarr + rows + alignment table", session_parts, open_session),
        "wds": WriterSpec("wds", "WebDataset shards", _no_outputs, open_samples, merged=True),
    }
)
FORMATS: Final = tuple(WRITERS)


def writer_specs(formats: Iterable[str]) -> tuple[WriterSpec, ...]:
    """The specs of ``formats`` (at least one; each once, in the order given). Raises
    ConfigError for an unknown name or none, listing the formats there are."""
    names = tuple(dict.fromkeys(formats))
    bad = [name for name in names if name not in WRITERS]
    if bad or not names:
        what = f"unknown output format {', '.join(map(repr, bad))}" if bad else "no output format"
        choices = ", ".join(f"{s.name} ({s.description})" for s in WRITERS.values())
        raise ConfigError(f"{what}; choose one or more of {choices}")
    return tuple(WRITERS[name] for name in names)


def session_writers(formats: Iterable[str]) -> tuple[WriterSpec, ...]:
    """The specs of ``formats`` in the order a conversion opens their writers (``WRITERS``
    order, whatever the order asked: the first writer sizes the read's frame blocks)."""
    asked = {spec.name for spec in writer_specs(formats)}
    return tuple(spec for spec in WRITERS.values() if spec.name in asked)
