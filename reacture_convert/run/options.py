"""Option values as people write them, parsed once for the command line and for job files.

``parse_size``, ``parse_duration``, ``parse_formats`` and ``parse_storage_options`` each read
one kind of value (a string from the command line, a TOML value from a job file) and raise a
``ConfigError`` that says what is expected. ``convert_options`` turns a plain mapping of option
values into ``ConvertOptions``; its keys are those of a job file's ``[job]``, ``[zarr]`` and
``[wds]`` tables (``OPTION_KEYS``). ``reacture-convert convert`` and ``watch`` collect their
flags into such a mapping; ``jobs.load_job`` merges the file's tables and the command line's
overrides into one. The click types of the CLI only wrap these parsers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reacture_convert.errors import ConfigError
from reacture_convert.units import parse_size

if TYPE_CHECKING:
    from reacture_convert.run.convert import ConvertOptions

__all__ = [
    "ON_ERROR",
    "OPTION_KEYS",
    "WatchOptions",
    "convert_options",
    "parse_duration",
    "parse_formats",
    "parse_size",
    "parse_storage_options",
]

ON_ERROR = ("continue", "stop")  # what a run does after a bundle that is not converted

# The keys ``convert_options`` reads, by the job-file table they belong to.
OPTION_KEYS: Mapping[str, tuple[str, ...]] = {
    "job": ("formats", "force", "readmit", "allow_other_files"),
    "zarr": ("chunk_frames", "shard_frames", "codec", "level"),
    "wds": (
        "shard_size",
        "shard_count",
        "shuffle",
        "encoding",
        "name",
        "shuffle_buffer",
        "append",
        "compression",
        "compression_level",
    ),
}
_TABLE = {key: table for table, keys in OPTION_KEYS.items() for key in keys}


# --- one value each -------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|min|h)?")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: float | str) -> float:
    """``5s``, ``500ms``, ``10m``, ``1.5h``, ``2`` (seconds) -> seconds; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a duration like 5s, 500ms, 10m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{value!r}: a duration cannot be negative")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ConfigError(f"{value!r} is not a duration like 5s, 500ms, 10m or 1h")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"zarr,wds"`` or ``["zarr", "wds"]`` -> ``("zarr", "wds")``, blanks dropped; the names
    are checked by ``writers.writer_specs``."""
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, list | tuple) or not all(isinstance(f, str) for f in value):
        raise ConfigError(
            f'formats must be names like "zarr,wds" or ["zarr", "wds"], not {value!r}'
        )
    formats = tuple(f.strip() for f in value if f.strip())
    from reacture_convert.writers import writer_specs  # (the command line's --help needs none)

    writer_specs(formats)
    return formats


def _typed(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        return raw


def parse_storage_options(values: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to fsspec options: dots nest (``client_kwargs.endpoint_url=URL``
    -> ``{"client_kwargs": {"endpoint_url": URL}}``); ``true``/``false`` and whole numbers
    are typed, everything else stays a string."""
    opts: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        path = key.split(".")
        if not sep or not all(path):
            raise ConfigError(
                f"{item!r}: expected KEY=VALUE, e.g. anon=true or "
                "client_kwargs.endpoint_url=http://127.0.0.1:9000"
            )
        target = opts
        for i, part in enumerate(path[:-1]):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(
                    f"{item!r}: {'.'.join(path[: i + 1])} is already a value, "
                    "so it cannot hold options"
                )
        target[path[-1]] = _typed(raw)
    return opts


# --- all of them: ConvertOptions ----------------------------------------------------------------


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, not {value!r}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"must be a whole number, not {value!r}")
    return value


def _count(value: Any) -> int:
    if _integer(value) < 1:
        raise ConfigError(f"must be a whole number >= 1, not {value!r}")
    return int(value)


def _shard_frames(value: Any) -> int | str | None:
    """Frames per Zarr shard: a count, ``0`` for no sharding, or ``"auto"``."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f'must be a whole number >= 0 (0: no sharding) or "auto", not {value!r}')
    return value or None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, not {value!r}")
    return value


def parse_sessions(value: str | Iterable[str]) -> frozenset[str]:
    """``"a,b"`` or ``["a", "b"]`` -> session names (blanks dropped)."""
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(v, str) for v in value
    ):
        raise ConfigError(f'must be session names like "a,b" or ["a", "b"], not {value!r}')
    return frozenset(v.strip() for v in value if v.strip())


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "formats": parse_formats,
    "force": _flag,
    "readmit": parse_sessions,
    "allow_other_files": _flag,
    "chunk_frames": _count,
    "shard_frames": _shard_frames,
    "codec": _text,
    "level": _integer,
    "shard_size": parse_size,
    "shard_count": _count,
    "shuffle": _integer,
    "encoding": _text,
    "name": _text,
    "shuffle_buffer": _count,
    "append": _flag,
    "compression": _text,
    "compression_level": _integer,
}
_WDS_FIELDS = {"shuffle": "shuffle_seed"}  # option key -> WdsOptions field, where they differ


def convert_options(
    values: Mapping[str, Any], input_options: Mapping[str, Any] | None = None
) -> ConvertOptions:
    """``ConvertOptions`` from option values keyed as in ``OPTION_KEYS``.

    A key that is missing or None takes the default of ``ConvertOptions``, ``ZarrOptions`` or
    ``WdsOptions``. Raises ConfigError naming the key (``[wds] shard_size: ...``) for a value of
    the wrong kind, an unknown key, or options that do not go together."""
    from reacture_convert.run.convert import ConvertOptions
    from reacture_convert.writers.webdataset import WdsOptions
    from reacture_convert.writers.zarr import ZarrOptions

    unknown = sorted(set(values) - set(_PARSERS))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(_PARSERS))}"
        )
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        try:
            parsed[key] = _PARSERS[key](value)
        except ConfigError as e:
            raise ConfigError(f"[{_TABLE[key]}] {key}: {e}") from None

    def fields(table: str, rename: Mapping[str, str]) -> dict[str, Any]:
        return {rename.get(k, k): parsed[k] for k in OPTION_KEYS[table] if k in parsed}

    return ConvertOptions(
        **fields("job", {}),
        zarr=ZarrOptions(**fields("zarr", {})),
        wds=WdsOptions(**fields("wds", _WDS_FIELDS)),
        input_options=dict(input_options or {}),
    )


@dataclass(frozen=True)
class WatchOptions:
    """A watcher's timing: when a bundle is ready, how often to look, whether to keep running.

    ``settle``: seconds a bundle's files must stay unchanged; ``poll``: seconds between looks;
    ``incomplete_timeout``: seconds an incomplete bundle or unreadable archive may stay so
    (unchanged) before it gets a ``rejected`` catalog row; ``once``: look once, convert what is
    ready then, and return (cron, tests).
    """

    settle: float = 5.0
    poll: float = 1.0
    incomplete_timeout: float = 600.0
    once: bool = False

    def __post_init__(self) -> None:
        if self.settle < 0 or self.incomplete_timeout < 0:
            raise ConfigError("settle and incomplete_timeout cannot be negative")
        if self.poll <= 0:
            raise ConfigError(f"poll must be more than 0 seconds, not {self.poll!r}")
