"""The package's import layers (docs/architecture.md): no module imports a layer above its own
or a sibling beside it, and no import circle, counting imports inside functions too (a lazy
import dodges a circle at run time but is still one for the reader)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import reacture_convert

PACKAGE = Path(reacture_convert.__file__).parent
NAME = "reacture_convert"

# bottom to top; one rank may hold siblings, which must not import each other
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset({"findings", "phases", "cores", "arrow", "units"}),
    frozenset({"ingest"}),
    frozenset({"output"}),
    frozenset({"formats"}),
    frozenset({"writers", "read"}),
    frozenset({"run", "testing"}),
    frozenset({"report"}),
    frozenset({"cli"}),
    frozenset({"__init__", "__main__", "torch_data"}),
)
# inside read/: the stored dataset and its helpers, the sources, the framework adapters, the
# facade, the tools over the facade (one rank's modules may import each other)
READ_LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "options",
            "labels",
            "batch",
            "windows",
            "plan",
            "splits",
            "chunks",
            "session",
            "resume",
            "cache",
            "quality",
        }
    ),
    frozenset({"sources"}),
    frozenset({"torch", "tensorflow"}),
    frozenset({"dataset"}),
    frozenset({"stats", "verify"}),
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join((NAME, *parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(module: str, path: Path) -> Iterator[str]:
    """Every package module ``module`` imports, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith(NAME + "."))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base]) if base else ".".join(up)
            if base.startswith(NAME + ".") or base == NAME:
                yield base
                for alias in node.names:  # `from pkg import submodule`
                    yield f"{base}.{alias.name}"


def rank(module: str, layers: tuple[frozenset[str], ...], depth: int) -> tuple[int, str] | None:
    parts = module.split(".")
    key = parts[depth] if len(parts) > depth else "__init__"
    for i, layer in enumerate(layers):
        if key in layer:
            return i, key
    return None


def edges() -> list[tuple[str, str]]:
    known = modules()
    found = []
    for module, path in known.items():
        for target in imports(module, path):
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            # the root package holds only ``__version__`` and lazy entry points (its imports
            # run on first use), so importing the version from it is no edge
            if target not in (module, NAME) and target in known:
                found.append((module, target))
    return found


def test_every_top_level_module_has_a_layer() -> None:
    unplaced = {m.split(".")[1] for m in modules() if m != NAME and rank(m, LAYERS, 1) is None}
    assert not unplaced, f"place these in LAYERS (and docs/architecture.md): {sorted(unplaced)}"


def test_every_read_module_has_a_rank() -> None:
    inside = {m.split(".")[2] for m in modules() if m.startswith(f"{NAME}.read.")}
    unplaced = {key for key in inside if not any(key in layer for layer in READ_LAYERS)}
    assert not unplaced, f"place these in READ_LAYERS (and docs/architecture.md): {unplaced}"


def upward(
    a: str, b: str, layers: tuple[frozenset[str], ...], depth: int, siblings: bool
) -> str | None:
    ra, rb = rank(a, layers, depth), rank(b, layers, depth)
    if ra is None or rb is None or ra[1] == rb[1]:
        return None
    if rb[0] > ra[0]:
        return f"{a} imports {b}, a layer above"
    if rb[0] == ra[0] and not siblings:
        return f"{a} imports {b}, a sibling layer"
    return None


def test_no_module_imports_upward_or_sideways() -> None:
    problems = []
    for a, b in edges():
        if a == NAME:
            continue
        problem = upward(a, b, LAYERS, 1, siblings=False)
        if problem is None and a.startswith(f"{NAME}.read.") and b.startswith(f"{NAME}.read."):
            problem = upward(a, b, READ_LAYERS, 2, siblings=True)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_no_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    for a, b in edges():
        # a package's __init__ re-exporting its own submodules is not a circle
        if not b.startswith(a + "."):
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from reacture_convert.read.sources import zarr\n", "reacture_convert.read.sources.zarr"),
        ("from . import base\n", "reacture_convert.read.sources.base"),
        ("from ..session import open_session\n", "reacture_convert.read.session"),
    ],
)
def test_imports_resolve_absolute_and_relative_forms(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = tmp_path / "shards.py"
    path.write_text(source)
    assert expected in set(imports("reacture_convert.read.sources.shards", path))
