"""Job files: ``pipelines/NAME.toml`` describes a run; ``reacture-convert run`` executes it.

A job file has a ``[job]`` table (inputs, output, formats, scheduler, workers, on-error
policy, force), optional ``[zarr]`` and ``[wds]`` tables with the same knobs as the command
line, and ``[storage.input]`` / ``[storage.output]`` tables of fsspec options (endpoint,
credentials profile, ...). Unknown keys are errors, so a typo never silently does nothing.
Relative paths are relative to the directory the command runs in. Command-line options
override the file (``load_job(path, overrides)``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reacture_convert.convert import FORMATS, ConvertOptions
from reacture_convert.errors import ConfigError, ReactureError
from reacture_convert.to_webdataset import DEFAULT_SHARD_SIZE, WdsOptions
from reacture_convert.to_zarr import ZarrOptions

__all__ = ["Job", "load_job", "parse_size", "ON_ERROR"]

ON_ERROR = ("continue", "stop")
_KEYS: dict[str, set[str]] = {
    "job": {"inputs", "out", "formats", "scheduler", "workers", "on_error", "force", "description"},
    "zarr": {"chunk_frames", "shard_frames", "codec", "level"},
    "wds": {"shard_size", "shard_count", "shuffle", "encoding", "name", "shuffle_buffer"},
    "storage": {"input", "output"},
}
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}


def parse_size(value: int | str) -> int:
    """``256MiB``, ``500MB``, ``1000000`` -> bytes."""
    if isinstance(value, int):
        return value
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("kmgib")
    try:
        return int(float(number) * _UNITS[text[len(number):]])
    except (KeyError, ValueError):
        raise ConfigError(f"{value!r} is not a size like 256MiB, 500MB or 1000000") from None


@dataclass(frozen=True)
class Job:
    """A resolved run: what ``run_convert`` needs, plus the policy around it."""

    name: str
    inputs: tuple[str, ...]
    out: str
    options: ConvertOptions
    scheduler: str = "auto"
    workers: int | None = None
    on_error: str = "continue"
    output_storage: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def _check_keys(table: str, data: Mapping[str, Any], where: str) -> None:
    unknown = set(data) - _KEYS[table]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} in [{table}]; "
                          f"valid keys: {', '.join(sorted(_KEYS[table]))}")


def load_job(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """Read a job file; ``overrides`` (CLI values; None means 'not given') win over the file.

    Override keys: inputs, out, formats, scheduler, workers, on_error, force, chunk_frames,
    shard_frames, codec, shard_size, shard_count, shuffle, encoding, input_options,
    output_options.
    """
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such job file; see pipelines/ for examples") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    unknown_tables = set(data) - set(_KEYS)
    if unknown_tables:
        raise ConfigError(f"{where}: unknown table(s) {', '.join(sorted(unknown_tables))}; "
                          f"valid: {', '.join(sorted(_KEYS))}")
    for table in _KEYS:
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"{where}: [{table}] must be a table")
        _check_keys(table, data.get(table, {}), where)
    job, zarr_t, wds_t = data.get("job", {}), data.get("zarr", {}), data.get("wds", {})
    storage = data.get("storage", {})
    o = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}

    def pick(key: str, table: Mapping[str, Any], default: Any, file_key: str | None = None) -> Any:
        return o[key] if key in o else table.get(file_key or key, default)

    inputs = tuple(pick("inputs", job, ()))
    out = pick("out", job, None)
    if not inputs:
        raise ConfigError(f"{where}: [job] inputs is empty; give at least one folder, archive or URL")
    if not out:
        raise ConfigError(f"{where}: [job] out is missing; give a folder or URL for the dataset")
    formats = pick("formats", job, ["zarr"])
    formats = tuple(formats.split(",") if isinstance(formats, str) else formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"{where}: unknown format(s) {bad}; choose from {', '.join(FORMATS)}")
    on_error = pick("on_error", job, "continue")
    if on_error not in ON_ERROR:
        raise ConfigError(f"{where}: on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    try:
        zopts = ZarrOptions(
            chunk_frames=int(pick("chunk_frames", zarr_t, ZarrOptions().chunk_frames)),
            shard_frames=pick("shard_frames", zarr_t, None),
            codec=pick("codec", zarr_t, ZarrOptions().codec),
            level=int(zarr_t.get("level", ZarrOptions().level)),
        )
        wopts = WdsOptions(
            shard_size=parse_size(pick("shard_size", wds_t, DEFAULT_SHARD_SIZE)),
            shard_count=pick("shard_count", wds_t, None),
            shuffle_seed=pick("shuffle", wds_t, None),
            encoding=pick("encoding", wds_t, "npy"),
            name=wds_t.get("name", "reacture"),
            shuffle_buffer=int(wds_t.get("shuffle_buffer", 512)),
        )
    except (ReactureError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    input_options = {**storage.get("input", {}), **o.get("input_options", {})}
    output_options = {**storage.get("output", {}), **o.get("output_options", {})}
    workers = pick("workers", job, None)
    return Job(
        name=path.stem,
        inputs=inputs,
        out=str(out),
        options=ConvertOptions(formats=formats, zarr=zopts, wds=wopts,
                               force=bool(pick("force", job, False)), input_options=input_options),
        scheduler=str(pick("scheduler", job, "auto")),
        workers=int(workers) if workers is not None else None,
        on_error=on_error,
        output_storage=output_options,
        description=str(job.get("description", "")),
    )
