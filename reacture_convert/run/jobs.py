"""Job files: ``pipelines/NAME.toml`` describes a run; ``reacture-convert run`` executes it.

A job file has a ``[job]`` table (inputs, output, formats, scheduler, workers, on-error
policy, force), optional ``[zarr]`` and ``[wds]`` tables with the same knobs as the command
line, and ``[storage.input]`` / ``[storage.output]`` tables of fsspec options (endpoint,
credentials profile, ...). Unknown keys are errors, so a typo never silently does nothing.
Relative paths are relative to the directory the command runs in. Command-line options
override the file (``load_job(path, overrides)``). ``watch = true`` makes the job a watcher
(``watch.run_watch``) with the ``settle``, ``poll`` and ``incomplete_timeout`` keys (durations:
``"5s"``, ``"10m"``, or seconds).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reacture_convert.errors import ConfigError
from reacture_convert.run.convert import ConvertOptions
from reacture_convert.run.options import ON_ERROR, OPTION_KEYS, convert_options, parse_duration
from reacture_convert.run.scheduler import check_scheduler
from reacture_convert.run.watch import WatchOptions

__all__ = ["Job", "load_job", "ON_ERROR"]

_WATCH_KEYS = ("settle", "poll", "incomplete_timeout")
_KEYS: dict[str, set[str]] = {
    "job": {
        *OPTION_KEYS["job"],
        "inputs",
        "out",
        "scheduler",
        "workers",
        "on_error",
        "description",
        "watch",
        *_WATCH_KEYS,
    },
    "zarr": set(OPTION_KEYS["zarr"]),
    "wds": set(OPTION_KEYS["wds"]),
    "storage": {"input", "output"},
}


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
    watch: bool = False  # keep running: convert bundles as they arrive (run_watch)
    watch_options: WatchOptions = WatchOptions()


def _check_keys(table: str, data: Mapping[str, Any]) -> None:
    unknown = set(data) - _KEYS[table]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(sorted(unknown))} in [{table}]; "
            f"valid keys: {', '.join(sorted(_KEYS[table]))}"
        )


def _read_tables(path: Path) -> dict[str, Any]:
    """The file's tables, checked for unknown tables and keys."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("no such job file; see pipelines/ for examples") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    unknown_tables = set(data) - set(_KEYS)
    if unknown_tables:
        raise ConfigError(
            f"unknown table(s) {', '.join(sorted(unknown_tables))}; "
            f"valid: {', '.join(sorted(_KEYS))}"
        )
    for table in _KEYS:
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"[{table}] must be a table")
        _check_keys(table, data.get(table, {}))
    for side in ("input", "output"):
        if not isinstance(data.get("storage", {}).get(side, {}), dict):
            raise ConfigError(
                f"[storage.{side}] must be a table of fsspec options, e.g. "
                'client_kwargs = { endpoint_url = "http://127.0.0.1:9000" }'
            )
    return data


def _inputs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str | list | tuple):
        raise ConfigError(
            f"[job] inputs must be a list of folders, archives or URLs (strings), not {value!r}"
        )
    inputs = (value,) if isinstance(value, str) else tuple(value)
    if not inputs:
        raise ConfigError("[job] inputs is empty; give at least one folder, archive or URL")
    if not all(isinstance(i, str) and i for i in inputs):
        raise ConfigError(
            "[job] inputs must be a list of folders, archives or URLs (strings), "
            f"not {list(inputs)!r}"
        )
    return inputs


def _workers(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"[job] workers must be a whole number >= 1, not {value!r}")
    return value


def _options(
    data: Mapping[str, Any], o: Mapping[str, Any], input_options: Mapping[str, Any]
) -> ConvertOptions:
    """The file's [job]/[zarr]/[wds] option keys, then the overrides, through the one builder
    the command line uses too."""
    values = {
        k: v
        for table, keys in OPTION_KEYS.items()
        for k, v in data.get(table, {}).items()
        if k in keys
    }
    values.update({k: o[k] for keys in OPTION_KEYS.values() for k in keys if k in o})
    return convert_options(values, input_options)


def load_job(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Job:
    """Read a job file; ``overrides`` (CLI values; None means 'not given') win over the file.

    Override keys: inputs, out, scheduler, workers, on_error, input_options, output_options,
    watch, settle, poll, incomplete_timeout, and every key of ``options.OPTION_KEYS`` (formats,
    force, chunk_frames, shard_size, shuffle, ...). Raises ConfigError naming the file and the
    problem.
    """
    path = Path(path)
    try:
        return _load(path, overrides or {})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _load(path: Path, overrides: Mapping[str, Any]) -> Job:
    data = _read_tables(path)
    job = data.get("job", {})
    storage = data.get("storage", {})
    o = {k: v for k, v in overrides.items() if v is not None and v != ()}
    inputs = _inputs(o.get("inputs", job.get("inputs", ())))
    out = o.get("out", job.get("out"))
    if not out or not isinstance(out, str):
        raise ConfigError("[job] out is missing; give a folder or URL for the dataset")
    on_error = o.get("on_error", job.get("on_error", "continue"))
    if on_error not in ON_ERROR:
        raise ConfigError(f"[job] on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    scheduler = check_scheduler(str(o.get("scheduler", job.get("scheduler", "auto"))))
    input_options = {**storage.get("input", {}), **o.get("input_options", {})}
    output_options = {**storage.get("output", {}), **o.get("output_options", {})}
    options = _options(data, o, input_options)
    return Job(
        name=path.stem,
        inputs=inputs,
        out=out,
        options=options,
        scheduler=scheduler,
        workers=_workers(o.get("workers", job.get("workers"))),
        on_error=on_error,
        output_storage=output_options,
        description=str(job.get("description", "")),
        **_watch(job, o, options.formats),
    )


def _watch(
    job: Mapping[str, Any], o: Mapping[str, Any], formats: tuple[str, ...]
) -> dict[str, Any]:
    """``watch`` and its durations; they only mean something together."""
    on = o.get("watch", job.get("watch", False))
    if not isinstance(on, bool):
        raise ConfigError(f"[job] watch must be true or false, not {on!r}")
    given = {k: o.get(k, job.get(k)) for k in _WATCH_KEYS if o.get(k, job.get(k)) is not None}
    if given and not on:
        raise ConfigError(f"[job] {', '.join(sorted(given))} only apply with watch = true")
    durations: dict[str, Any] = {}  # WatchOptions fields
    for key, value in given.items():
        try:
            durations[key] = parse_duration(value)
        except ConfigError as e:
            raise ConfigError(f"[job] {key}: {e}") from None
    try:
        return {"watch": on, "watch_options": WatchOptions(**durations)}
    except ConfigError as e:
        raise ConfigError(f"[job] {e}") from None
