"""Mutation testing: break the code one small way at a time and check that a test fails.

Two kinds of mutants:

- **curated** (``CURATED`` below): deliberate bugs, each one a check that once had no test
  (issue #25's list: the tar checksum without the USTAR prefix, the fsync of atomic writes,
  catalogs over 4,096 rows, outputs deleted by hand, verify's per-session count, blank frames,
  fractional legacy times, a periodic row at row 0), with the tests meant to kill it;
- **automatic** (``--auto FILE_OR_FOLDER ...``): every comparison operator flipped (``==``/``!=``,
  ``<``/``<=``, ``>``/``>=``, ``in``/``not in``, ``is``/``is not``), ``and``/``or`` swapped,
  ``+``/``-`` swapped, ``not`` dropped, an integer constant plus one, ``True``/``False``
  swapped, and a one-line call statement replaced by ``pass``; nothing inside a ``raise`` or an
  f-string (messages). ``--limit N`` takes N of them at random (``--seed``).

Each mutant is written into a private copy of the repository (the working tree is never
touched), and the tests that cover its file run there (``pytest -x``): a test failure *kills*
it, all tests passing means it *survived*. The tests of a file come from ``TESTS`` (longest
matching prefix) unless ``--tests`` gives them. Prints one line per mutant and a summary;
``--markdown FILE`` also writes the table. Exit 0 whatever survived (the list is the result).

    python tools/mutation.py                       # the curated mutants
    python tools/mutation.py --auto reacture_convert/read/verify.py --limit 30
    python tools/mutation.py --list                # what would run
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository
    old: str  # exact text, found once in the file (curated) ...
    new: str
    what: str
    tests: tuple[str, ...] = ()
    line: int = 0  # ... or (automatic) the 1-based line and byte span in it
    span: tuple[int, int] | None = None

    def apply(self, source: str) -> str:
        if self.span is None:
            if source.count(self.old) != 1:
                raise SystemExit(
                    f"{self.id}: {self.old!r} is not found exactly once in {self.path}"
                )
            return source.replace(self.old, self.new)
        lines = source.splitlines(keepends=True)
        raw = lines[self.line - 1].encode()
        a, b = self.span
        assert raw[a:b].decode() == self.old, (self.id, raw[a:b], self.old)
        lines[self.line - 1] = (raw[:a] + self.new.encode() + raw[b:]).decode()
        return "".join(lines)


# --- curated --------------------------------------------------------------------------------------
_TAR = ("tests/formats/test_wds_tar.py", "tests/writers/test_long_session_names.py")
_CATALOG = ("tests/output/test_catalog_large.py", "tests/output/test_catalog_log.py")
_BLANK = ("tests/read/test_blank_first_row.py",)

CURATED = (
    Mutant(
        "tar-checksum-prefix",
        "reacture_convert/formats/wds/tar.py",
        "+ sum(size_field) + sum(prefix)",
        "+ sum(size_field)",
        "the tar header checksum leaves out the USTAR prefix field (names over 100 bytes)",
        _TAR,
    ),
    Mutant(
        "atomic-no-fsync",
        "reacture_convert/output/storage.py",
        "                f.flush()\n                os.fsync(f.fileno())\n",
        "                f.flush()\n",
        "an atomic write renames its temporary file without fsyncing it",
        ("tests/output/test_atomic_fsync.py", "tests/output/test_storage.py"),
    ),
    Mutant(
        "atomic-no-flush",
        "reacture_convert/output/storage.py",
        "                f.flush()\n                os.fsync(f.fileno())\n",
        "                os.fsync(f.fileno())\n",
        "an atomic write fsyncs before flushing Python's buffer (the tail is not synced)",
        ("tests/output/test_atomic_fsync.py",),
    ),
    Mutant(
        "compact-first-slice-only",
        "reacture_convert/output/catalog/core.py",
        "for i in range(0, len(order), _SLICE):",
        "for i in range(0, min(len(order), _SLICE), _SLICE):",
        "a compaction writes only the first 4,096 rows of the catalog",
        _CATALOG,
    ),
    Mutant(
        "replay-chunk-short",
        "reacture_convert/output/catalog/core.py",
        "block = range(start, min(start + CHUNK, rows.stop))",
        "block = range(start, min(start + CHUNK - 1, rows.stop))",
        "replaying a catalog skips the last row of every 4,096-row chunk",
        _CATALOG,
    ),
    Mutant(
        "store-chunk-lookup",
        "reacture_convert/output/catalog/store.py",
        'np.searchsorted(np.asarray(self._starts), pos[sealed], "right") - 1',
        'np.searchsorted(np.asarray(self._starts), pos[sealed], "left") - 1',
        "the row store looks the first row of each 4,096-row chunk up in the chunk before",
        _CATALOG,
    ),
    Mutant(
        "outputs-there-always",
        "reacture_convert/run/convert.py",
        "outputs_there = all(out.exists(p) for p in previous.outputs)",
        "outputs_there = True",
        "a re-run skips a session whose outputs were deleted by hand",
        ("tests/run/test_regenerate.py",),
    ),
    Mutant(
        "verify-no-session-count",
        "reacture_convert/read/verify.py",
        "        if found[s.session] != s.samples:",
        "        if False:",
        "verify no longer checks each session's shard sample count against index.json",
        ("tests/read/test_verify_counts.py", "tests/read/test_verify.py"),
    ),
    Mutant(
        "shards-blank-first-row",
        "reacture_convert/read/sources/shards.py",
        "not frame.any(),",
        "not frame[0].any(),",
        "the shard reader calls a frame blank when its first row is zero",
        _BLANK,
    ),
    Mutant(
        "shards-blank-last-row",
        "reacture_convert/read/sources/shards.py",
        "not frame.any(),",
        "not frame[-1].any(),",
        "the shard reader calls a frame blank when its last row is zero",
        _BLANK,
    ),
    Mutant(
        "convert-blank-first-row",
        "reacture_convert/ingest/validate.py",
        "lit = np.asarray(block.reshape(block.shape[0], -1).any(axis=1), dtype=bool)",
        "lit = np.asarray(block[:, 0].reshape(block.shape[0], -1).any(axis=1), dtype=bool)",
        "conversion marks a frame blank (alignment table, Zarr reader) when its first row is zero",
        _BLANK,
    ),
    Mutant(
        "legacy-times-truncated",
        "reacture_convert/ingest/legacy.py",
        "return raw, float(t)",
        "return raw, float(int(t))",
        "a legacy export's fractional frame times are truncated to whole milliseconds",
        ("tests/ingest/test_legacy_fractional_times.py", "tests/ingest/test_legacy.py"),
    ),
    Mutant(
        "alignment-row-0-null",
        "reacture_convert/writers/alignment.py",
        "valid=rows >= 0",
        "valid=rows > 0",
        "the alignment table stores row_index 0 as null (no row)",
        ("tests/writers/test_periodic_row_zero.py",),
    ),
    Mutant(
        "verify-skips-row-0",
        "reacture_convert/read/verify.py",
        "        if ri is None:\n            continue",
        "        if not ri:\n            continue",
        "verify does not check the frame whose periodic row is row 0",
        ("tests/writers/test_periodic_row_zero.py", "tests/read/test_verify.py"),
    ),
)

# --- which tests cover a file (longest prefix wins) -----------------------------------------------
TESTS: dict[str, tuple[str, ...]] = {
    "reacture_convert/read/verify.py": (
        "tests/read/test_verify.py",
        "tests/read/test_verify_counts.py",
        "tests/read/test_blank_first_row.py",
        "tests/writers/test_periodic_row_zero.py",
        "tests/ingest/test_legacy_fractional_times.py",
    ),
    "reacture_convert/writers/webdataset/": (
        "tests/writers/test_webdataset.py",
        "tests/writers/test_sample_sink.py",
        "tests/writers/test_long_session_names.py",
    ),
    "reacture_convert/writers/zarr.py": ("tests/writers/test_zarr.py",),
    "reacture_convert/writers/rows.py": ("tests/writers/test_rows.py",),
    "reacture_convert/writers/card.py": ("tests/writers/test_card.py",),
    "reacture_convert/writers/": ("tests/writers/",),
    "reacture_convert/output/catalog/": (
        "tests/output/test_catalog.py",
        "tests/output/test_catalog_log.py",
        "tests/output/test_catalog_large.py",
    ),
    "reacture_convert/output/storage.py": (
        "tests/output/test_storage.py",
        "tests/output/test_atomic_fsync.py",
    ),
    "reacture_convert/output/": ("tests/output/",),
}


def tests_for(path: str) -> tuple[str, ...]:
    best = max((p for p in TESTS if path.startswith(p)), key=len, default=None)
    if best is None:
        raise SystemExit(f"no tests known for {path}: give them with --tests")
    return TESTS[best]


# --- automatic ------------------------------------------------------------------------------------
_COMPARE = {
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
    ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"),
}
_BINOP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+")}
_BOOL = {ast.And: ("and", "or"), ast.Or: ("or", "and")}


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes inside a raise, an f-string, an annotation or a docstring."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise | ast.JoinedStr | ast.Assert):
            mark(node)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.arg):
            mark(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for decorator in node.decorator_list:
                mark(decorator)
            if not isinstance(node, ast.ClassDef):
                mark(node.returns)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            mark(node)  # docstrings
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in {
            "debug",
            "info",
            "warning",
            "error",
        }:
            mark(node)  # log messages
    return skip


def _between(lines: list[bytes], a: ast.AST, b: ast.AST, token: str) -> tuple[int, int, int] | None:
    """(line, start, end) of ``token`` between the end of node ``a`` and the start of ``b``, when
    both sit on one line."""
    if a.end_lineno != b.lineno or a.end_col_offset is None:
        return None
    raw = lines[b.lineno - 1]
    gap = raw[a.end_col_offset : b.col_offset].decode()
    m = re.search(rf"(?<![=<>!])(?:{re.escape(token)})(?![=<>])", gap)
    if m is None or len(re.findall(rf"\b{re.escape(token)}\b|{re.escape(token)}", gap)) != 1:
        return None
    start = a.end_col_offset + len(gap[: m.start()].encode())
    return b.lineno, start, start + len(token.encode())


def auto_mutants(path: str, tests: tuple[str, ...]) -> list[Mutant]:
    source = (REPO / path).read_text()
    lines = [line.encode() for line in source.splitlines()]
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    found: list[tuple[int, int, int, str, str, str]] = []  # line, start, end, old, new, kind

    def add(at: tuple[int, int, int] | None, old: str, new: str, kind: str) -> None:
        if at is not None:
            found.append((*at, old, new, kind))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            old, new = _COMPARE[type(node.ops[0])]
            add(_between(lines, node.left, node.comparators[0], old), old, new, "compare")
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
            old, new = _BINOP[type(node.op)]
            add(_between(lines, node.left, node.right, old), old, new, "arith")
        elif isinstance(node, ast.BoolOp) and type(node.op) in _BOOL:
            old, new = _BOOL[type(node.op)]
            add(_between(lines, node.values[0], node.values[1], old), old, new, "bool")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            raw = lines[node.lineno - 1]
            if raw[node.col_offset : node.col_offset + 4] == b"not ":
                add((node.lineno, node.col_offset, node.col_offset + 4), "not ", "", "not")
        elif isinstance(node, ast.Constant) and node.end_lineno == node.lineno:
            raw = lines[node.lineno - 1]
            text = raw[node.col_offset : node.end_col_offset].decode()
            if isinstance(node.value, bool):
                add(
                    (node.lineno, node.col_offset, node.end_col_offset or 0),
                    text,
                    str(not node.value),
                    "const",
                )
            elif isinstance(node.value, int) and text.isdigit():
                add(
                    (node.lineno, node.col_offset, node.end_col_offset or 0),
                    text,
                    str(node.value + 1),
                    "const",
                )
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and node.lineno == node.end_lineno
        ):
            raw = lines[node.lineno - 1]
            text = raw[node.col_offset : node.end_col_offset].decode()
            add((node.lineno, node.col_offset, node.end_col_offset or 0), text, "pass", "delete")
    mutants = []
    stem = Path(path).stem
    for line, a, b, old, new, kind in sorted(set(found)):
        shown = lines[line - 1].decode().strip()
        mutants.append(
            Mutant(
                f"{stem}:{line}.{a}:{kind}:{old.strip() or 'x'}->{new.strip() or 'x'}",
                path,
                old,
                new,
                f"line {line}: `{shown}` with `{old.strip()}` -> `{new.strip() or '(nothing)'}`",
                tests,
                line,
                (a, b),
            )
        )
    return mutants


# --- running --------------------------------------------------------------------------------------
def _copy_repo(dest: Path) -> Path:
    root = dest / "repo"
    anywhere = shutil.ignore_patterns(
        ".git", ".venv*", ".hypothesis", "__pycache__", ".mypy_cache", ".pytest_cache"
    )

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = {"data", "benchmarks"} if Path(folder) == REPO else set()  # make convert's output
        return set(anywhere(folder, names)) | (top & set(names))

    shutil.copytree(REPO, root, ignore=ignore, symlinks=True)
    venv = REPO / ".venv"
    os.symlink(venv.resolve() if venv.exists() else venv, root / ".venv")
    return root


def _pytest(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o"]
    cmd += ["addopts=", *tests]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    took = time.monotonic() - started
    if done.returncode == 0:
        return "survived", took
    if done.returncode in (1, 2, 3):  # failed, interrupted (import error), internal error
        return "killed", took
    sys.stderr.write(done.stdout[-1500:].decode(errors="replace"))
    return f"error {done.returncode}", took


def run(mutants: list[Mutant], timeout: float, markdown: Path | None) -> list[tuple[Mutant, str]]:
    results: list[tuple[Mutant, str]] = []
    with tempfile.TemporaryDirectory(prefix="reacture-mutation-") as tmp:
        root = _copy_repo(Path(tmp))
        for tests in dict.fromkeys(m.tests for m in mutants):  # the tests pass unmutated
            verdict, took = _pytest(root, tests, timeout)
            print(f"baseline {' '.join(tests)}: {verdict} ({took:.0f} s)", flush=True)
            if verdict != "survived":
                raise SystemExit("the tests fail without any mutation: fix them first")
        for k, m in enumerate(mutants, 1):
            target = root / m.path
            original = target.read_text()
            mutated = m.apply(original)
            ast.parse(mutated)
            target.write_text(mutated)
            try:
                verdict, took = _pytest(root, m.tests, timeout)
            finally:
                target.write_text(original)
            results.append((m, verdict))
            print(f"[{k}/{len(mutants)}] {verdict:8} {took:5.0f} s  {m.id}: {m.what}", flush=True)
    survived = [m for m, v in results if v != "killed"]
    print(f"\n{len(results) - len(survived)} killed, {len(survived)} not killed, of {len(results)}")
    for m in survived:
        print(f"  NOT KILLED {m.id}: {m.what}")
    if markdown is not None:
        markdown.write_text(_table(results))
    return results


def _table(results: list[tuple[Mutant, str]]) -> str:
    rows = ["| mutant | file | what it breaks | result |", "| --- | --- | --- | --- |"]
    for m, verdict in results:
        what = m.what.replace("|", "\\|")
        rows.append(f"| `{m.id}` | `{m.path}` | {what} | {verdict} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--auto", nargs="*", default=[], help="files to mutate automatically")
    parser.add_argument("--no-curated", action="store_true", help="only the automatic mutants")
    parser.add_argument("--only", help="run the mutants whose id contains this")
    parser.add_argument("--limit", type=int, help="at most this many automatic mutants a file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tests", nargs="*", help="the tests to run (default: TESTS)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a mutant's tests")
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    args = parser.parse_args(argv)
    mutants = [] if args.no_curated else list(CURATED)
    files = [p for path in args.auto for p in _python_files(Path(path))]
    for path in files:
        rel = str(path.resolve().relative_to(REPO))
        found = auto_mutants(rel, tuple(args.tests) if args.tests else tests_for(rel))
        if args.limit is not None and len(found) > args.limit:
            found = sorted(random.Random(args.seed).sample(found, args.limit), key=_order)
        mutants += found
    if args.only:
        mutants = [m for m in mutants if args.only in m.id]
    if args.tests and not args.auto:
        mutants = [Mutant(**{**m.__dict__, "tests": tuple(args.tests)}) for m in mutants]
    if args.list:
        for m in mutants:
            print(f"{m.id}: {m.what}  [{' '.join(m.tests)}]")
        return
    run(mutants, args.timeout, args.markdown)


def _python_files(path: Path) -> list[Path]:
    """A file, or the package modules under a folder (not ``__init__.py``, re-exports only)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.py") if p.name != "__init__.py")
    return [path]


def _order(m: Mutant) -> tuple[str, int]:
    return m.path, m.line


if __name__ == "__main__":
    main()
