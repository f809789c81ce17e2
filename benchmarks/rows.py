"""3: JSONL -> Parquet alone, lossless, against DuckDB and polars with the same threads (and what
each keeps of the rows). 3b: the whole ``convert`` of a rows-heavy bundle against DuckDB's
JSONL -> Parquet of its data.jsonl, each a whole process."""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import (
    TARGETS,
    Bench,
    ChildRun,
    Row,
    Stat,
    alternate,
    paired_ratio,
)

JSONL_READERS = ("product", "duckdb", "polars")
# The product's path runs on three threads: this one reads and checks the lines, one decodes them
# (pyarrow.json) and one encodes and writes Parquet row groups. The others get as many.
THREADS = 3


def measure_jsonl(b: Bench) -> list[Row]:
    jsonl = b.files(b.bundle(b.sizes.session))["data.jsonl"]
    mb = jsonl.stat().st_size / 1e6
    outs = {name: b.work / f"m3-{name}.parquet" for name in JSONL_READERS}
    threads = {"POLARS_MAX_THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS)}

    def contender(name: str) -> Callable[[int], ChildRun]:
        return lambda r: b.child(
            b.child_cmd(f"jsonl-{name}", jsonl, b.fresh(outs[name].name), THREADS), env=threads
        )

    runs = alternate(b.reps, [(name, contender(name)) for name in JSONL_READERS])
    secs = {name: [r.result()["seconds"] for r in rs] for name, rs in runs.items()}
    speed = {name: Stat.of(mb / s for s in ss) for name, ss in secs.items()}
    vs = {n: paired_ratio(secs[n], secs["product"]) for n in JSONL_READERS[1:]}
    fidelity = {
        name: compare_rows(jsonl, outs[name], rebuild=name == "product") for name in JSONL_READERS
    }
    lossless = fidelity["product"]["rows_differ"] == 0
    notes = [
        f"{mb:,.1f} MB of JSONL, {fidelity['product']['rows']:,} rows; MB/s of the work "
        f"alone (parse + write, interpreter start and imports excluded), {THREADS} threads each "
        "(the product's: reading and checking lines, decoding, writing Parquet); result: the "
        "product's speed as a multiple of DuckDB's, range of the per-round ratios; vs polars: "
        + vs["polars"].fmt("×")
    ]
    for name in JSONL_READERS:
        notes.append(f"{name}: {describe_fidelity(fidelity[name])}")
    base = "; ".join(f"{n}: {speed[n].fmt('MB/s', 0)}" for n in JSONL_READERS[1:])
    return [
        Row(
            "3",
            "JSONL → Parquet (rows table alone)",
            speed["product"].fmt("MB/s", 1),
            base,
            f"{vs['duckdb'].fmt('× DuckDB')}, " + ("lossless" if lossless else "**lossy**"),
            TARGETS["3"],
            vs["duckdb"].median >= 1.0 and lossless,
            notes,
            {
                "jsonl_mb": mb,
                "threads": THREADS,
                "mb_per_s": {n: list(s.samples) for n, s in speed.items()},
                "ratio_vs": {n: r.median for n, r in vs.items()},
                "fidelity": fidelity,
            },
        )
    ]


# --- 3b: the rows path end to end ----------------------------------------------------------------
def rows_heavy_bundle(b: Bench) -> Path:
    """A generated bundle whose data.jsonl is ``b.sizes.rows_heavy`` MB: each player_action row
    repeated in place (the same bytes again, as a game logging a held key would), metadata's
    counts made to match, so the bundle is valid. Made once per run."""
    n_frames, mb = b.sizes.rows_heavy
    folder = b.bundle(n_frames, seed=3, group="rows-heavy")
    files = b.files(folder)
    jsonl, meta = files["data.jsonl"], files["metadata.json"]
    lines = jsonl.read_bytes().split(b"\n")
    if jsonl.stat().st_size >= mb * 1e6 * 0.9:
        return folder
    action = [b'"type":"player_action"' in line for line in lines]
    of_actions = sum(len(line) + 1 for line, a in zip(lines, action, strict=True) if a)
    rest = sum(len(line) + 1 for line in lines) - of_actions
    times = max(1, round((mb * 1e6 - rest) / max(of_actions, 1)))
    out = [
        copy for line, a in zip(lines, action, strict=True) for copy in [line] * (times if a else 1)
    ]
    jsonl.write_bytes(b"\n".join(out))
    doc = json.loads(meta.read_text())
    doc["data_stats"]["total_samples"] = len(out)
    doc["data_stats"]["actions_logged"] = sum(action) * times
    meta.write_text(json.dumps(doc, indent=2))
    print(
        f"  rows-heavy: {folder.name}, {jsonl.stat().st_size / 1e6:,.1f} MB of JSONL "
        f"({len(out):,} rows, each action row {times}x)",
        flush=True,
    )
    return folder


def e2e_threads() -> int:
    """DuckDB's threads for 3b: the cores this process may use (the product's converter uses
    every core: its frames pool, the rows' reader, decoder and writer threads)."""
    return len(os.sched_getaffinity(0))


def measure_rows_end_to_end(b: Bench) -> list[Row]:
    src = rows_heavy_bundle(b)
    jsonl = b.files(src)["data.jsonl"]
    mb = jsonl.stat().st_size / 1e6
    threads = e2e_threads()

    def product(r: int) -> ChildRun:
        return b.child(b.convert_cmd(src, b.fresh("m3b-out"), "zarr", "--scheduler", "sync"))

    def duckdb(r: int) -> ChildRun:
        return b.child(b.child_cmd("duckdb-copy", jsonl, b.fresh("m3b-duckdb.parquet"), threads))

    runs = alternate(b.reps, [("convert (whole bundle)", product), ("duckdb COPY", duckdb)])
    prod = [r.seconds for r in runs["convert (whole bundle)"]]
    duck = [r.seconds for r in runs["duckdb COPY"]]
    ratio = paired_ratio(duck, prod)
    cpu = {name: Stat.of(r.cpu_s for r in rs) for name, rs in runs.items()}
    return [
        Row(
            "3b",
            f"convert of a rows-heavy bundle ({mb:,.0f} MB JSONL, {b.sizes.rows_heavy[0]:,} "
            "frames) vs DuckDB JSONL → Parquet",
            Stat.of(prod).fmt("s"),
            f"duckdb: {Stat.of(duck).fmt('s')}",
            ratio.fmt("× DuckDB"),
            TARGETS["3b"],
            ratio.median >= 1.0,
            [
                f"whole processes (interpreter start and imports included, both): `convert "
                f"--format zarr --scheduler sync` of the bundle (validation, rows and frames "
                f"tables, Zarr frames, alignment, sha256 of the sources, catalog) against "
                f"DuckDB's `COPY (SELECT * FROM read_json_auto(data.jsonl, sample_size=-1)) TO "
                f"... (FORMAT parquet)` with {threads} threads (sample_size=-1: the last row's "
                "`finalStats` is past DuckDB's default sample, which then fails); result: "
                "DuckDB's time over the product's (≥ 1: the product is as fast); CPU seconds: "
                + "; ".join(f"{n} {s.fmt('s')}" for n, s in cpu.items())
            ],
            {
                "jsonl_mb": mb,
                "threads": threads,
                "seconds": {"product": prod, "duckdb": duck},
                "cpu_s": {n: list(s.samples) for n, s in cpu.items()},
                "ratio": ratio.median,
            },
        )
    ]


def child_duckdb_copy(src: str, dest: str, threads: str) -> dict[str, Any]:
    """DuckDB's JSONL -> Parquet of ``src``, timed by the parent as a whole process."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute(
        f"COPY (SELECT * FROM read_json_auto({_sql_text(src)}, sample_size=-1)) "
        f"TO {_sql_text(dest)} (FORMAT parquet)"
    )
    return {}


def _type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}.get(
        type(v), type(v).__name__
    )


def diff_values(
    orig: Any,
    got: Any,
    path: str,
    found: Counter[tuple[str, str]],
    examples: dict[str, str] | None = None,
) -> None:
    """Count how ``got`` differs from ``orig`` (a parsed JSON value), by kind and path;
    keep the first example of each kind in ``examples``."""
    examples = {} if examples is None else examples
    to, tg = _type(orig), _type(got)

    def seen(kind: str, where: str, example: str | None = None) -> None:
        found[(kind, where)] += 1
        if example is not None:
            examples.setdefault(kind, f"`{where}`: {example}")

    if to != tg:
        seen(f"{to} → {tg}", path, f"{_short(orig)} → {_short(got)}")
    elif to == "object":
        shared = [k for k in orig if k in got]
        if [k for k in got if k in orig] != shared:
            seen(
                "key order changed",
                path or "(row)",
                f"{_short(list(orig))} → {_short([k for k in got if k in orig])}",
            )
        for k in orig:
            where = f"{path}.{k}".lstrip(".")
            if k not in got:
                seen("field dropped", where, _short(orig[k]))
            else:
                diff_values(orig[k], got[k], where, found, examples)
        for k in got:
            if k not in orig:
                where = f"{path}.{k}".lstrip(".")
                seen("absent → null" if got[k] is None else "field added", where)
    elif to == "list":
        if len(orig) != len(got):
            seen("list length changed", path, f"{len(orig)} → {len(got)}")
        for o, g in zip(orig, got, strict=False):
            diff_values(o, g, f"{path}[]", found, examples)
    elif orig != got:
        seen("value changed", path, f"{_short(orig)} → {_short(got)}")


def _short(v: Any, width: int = 60) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def compare_rows(jsonl: Path, parquet: Path, rebuild: bool) -> dict[str, Any]:
    """Round-trip every row of ``jsonl`` through ``parquet`` and say what differs."""
    import pyarrow.parquet as pq

    from reacture_convert.formats.rows import rebuild_row

    originals = [json.loads(line) for line in jsonl.read_bytes().split(b"\n") if line.strip()]
    records = pq.read_table(parquet).to_pylist()
    got = [rebuild_row(r) for r in records] if rebuild else records
    found: Counter[tuple[str, str]] = Counter()
    examples: dict[str, str] = {}
    rows_differ = 0
    ignored = {"session", "row_index", "kind", "frame_index", "extra"} if rebuild else set()
    for o, g in zip(originals, got, strict=False):
        before = sum(found.values())
        diff_values(o, {k: v for k, v in g.items() if k not in ignored}, "", found, examples)
        rows_differ += sum(found.values()) > before
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, path), n in sorted(found.items()):
        by_kind.setdefault(kind, {})[path] = n
    return {
        "rows": len(originals),
        "rows_read": len(records),
        "rows_differ": rows_differ,
        "differences": by_kind,
        "examples": examples,
    }


def describe_fidelity(f: dict[str, Any]) -> str:
    """One line: how many rows differ and how, with the fields concerned."""
    head = f"{f['rows_differ']:,} of {f['rows']:,} rows differ"
    if f["rows_read"] != f["rows"]:
        head += f" ({f['rows_read']:,} rows read back)"
    if not f["differences"]:
        return head + " (lossless, key order and types included)"
    parts = []
    for kind, paths in f["differences"].items():
        names = sorted(paths, key=lambda p: -paths[p])
        shown = ", ".join(f"`{p}` ×{paths[p]:,}" for p in names[:4])
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        example = f" (e.g. {f['examples'][kind]})" if kind in f.get("examples", {}) else ""
        parts.append(f"**{kind}**: {shown}{more}{example}")
    return head + ": " + "; ".join(parts)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def child_jsonl(reader: str, src: str, dest: str, threads: str = "1") -> dict[str, Any]:
    """Convert ``src`` JSONL to Parquet ``dest`` with one reader; time the work alone."""
    if reader == "product":
        import pyarrow.json  # noqa: F401 - imports are not the work
        import pyarrow.parquet  # noqa: F401

        from reacture_convert.ingest.rowscan import scan_rows
        from reacture_convert.writers.rows import write_rows

        t0 = time.perf_counter()
        with open(src, "rb") as f:
            n = write_rows(scan_rows(f, Path(src).name), "bench", dest)
    elif reader == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET threads = {int(threads)}")
        t0 = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM read_json_auto({_sql_text(src)})) "
            f"TO {_sql_text(dest)} (FORMAT parquet)"
        )
        n = -1
    elif reader == "polars":
        import polars as pl

        t0 = time.perf_counter()
        df = pl.read_ndjson(src)
        df.write_parquet(dest)
        n = df.height
    else:
        raise SystemExit(f"unknown reader {reader}")
    return {"seconds": time.perf_counter() - t0, "rows": n}


MEASUREMENTS: dict[str, Callable[[Bench], list[Row]]] = {
    "3": measure_jsonl,
    "3b": measure_rows_end_to_end,
}
CHILD_MODES: dict[str, Callable[..., dict[str, Any]]] = {
    **{f"jsonl-{name}": functools.partial(child_jsonl, name) for name in JSONL_READERS},
    "duckdb-copy": child_duckdb_copy,
}
