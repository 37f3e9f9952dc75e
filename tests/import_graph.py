"""tokstep's own import graph, read with `ast` (nothing is imported): which module imports which, where.

Used by tests/test_import_graph.py; `python tests/import_graph.py` prints the function-level imports.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {
    "tokstep": "tokstep",
    "tokstep.engine": "engine",
    "tokstep.tui": "tui",
}  # pyproject's package-dir
# Third-party packages slow enough to import that a module defers them to the function that needs them.
HEAVY = frozenset(
    {
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "accelerate",
        "huggingface_hub",
        "datasets",
        "pyarrow",
        "duckdb",
        "numpy",
        "textual",
        "rich",
    }
)


@dataclass(frozen=True)
class Import:
    """One import statement: who, what (a tokstep module or a third-party top-level name), where."""

    source: str
    target: str
    line: int
    in_function: bool
    type_checking: bool
    commented: bool  # a comment on the statement or in the run of import/comment lines just above it


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every tokstep module: its import name -> its file."""
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _commented(lines: list[str], body: list[ast.stmt], k: int) -> bool:
    """A comment on body[k] or on the run of import statements it ends, or on the line right above that run."""
    j = k
    while j > 0 and isinstance(body[j - 1], (ast.Import, ast.ImportFrom)):
        j -= 1
    first, last = body[j].lineno, body[k].end_lineno or body[k].lineno
    if any("#" in lines[i - 1] for i in range(first, last + 1)):
        return True
    return first >= 2 and lines[first - 2].strip().startswith("#")


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    """The import statements of one module, resolved to tokstep modules or third-party top-level names."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    is_package = path.name == "__init__.py"

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name if a.name in known else a.name.split(".")[0] for a in node.names]
        base = node.module or ""
        if node.level:  # relative: from the module's package
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        if not base.startswith("tokstep"):
            return [base.split(".")[0]]
        found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        if base in known and len(found) < len(node.names):
            found.append(base)
        return found

    def walk(node: ast.AST, in_function: bool, type_checking: bool) -> Iterator[Import]:
        blocks = [b for f in ("body", "orelse", "finalbody") if isinstance(b := getattr(node, f, None), list)]
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                siblings = next((b for b in blocks if child in b), [child])
                commented = _commented(lines, siblings, siblings.index(child))
                for target in targets(child):
                    if target != name:
                        yield Import(name, target, child.lineno, in_function, type_checking, commented)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from walk(child, in_function, True)
            else:
                function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                yield from walk(child, in_function or function, type_checking)

    yield from walk(tree, False, False)


def all_imports(root: Path = ROOT) -> list[Import]:
    known = modules(root)
    return [i for name, path in known.items() for i in imports(name, path, known)]


def heavy_loads(found: list[Import]) -> dict[str, frozenset[str]]:
    """Per tokstep module, the heavy packages importing it loads (through its module-level imports)."""
    loads: dict[str, set[str]] = {}
    for i in found:
        if not i.in_function and not i.type_checking:
            loads.setdefault(i.source, set()).add(i.target)
    heavy: dict[str, set[str]] = {m: loads.get(m, set()) & HEAVY for m in modules()}
    changed = True
    while changed:
        changed = False
        for module, targets in loads.items():
            reached = set().union(*(heavy.get(t, set()) for t in targets)) if targets else set()
            if not reached <= heavy[module]:
                heavy[module] |= reached
                changed = True
    return {m: frozenset(h) for m, h in heavy.items()}


def deferred(i: Import, heavy: dict[str, frozenset[str]]) -> frozenset[str]:
    """The heavy packages a function-level import keeps out of its module's import (empty: nothing)."""
    target = frozenset({i.target}) & HEAVY or heavy.get(i.target, frozenset())
    return target - heavy.get(i.source, frozenset())


def cycles(found: list[Import]) -> list[list[str]]:
    """Strongly connected groups of tokstep modules (function-level imports included, TYPE_CHECKING not)."""
    graph: dict[str, set[str]] = {}
    known = modules()
    for i in found:
        if not i.type_checking and i.target in known:
            graph.setdefault(i.source, set()).add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


if __name__ == "__main__":
    every = all_imports()
    heavy = heavy_loads(every)
    for i in every:
        if i.in_function and not i.type_checking:
            kind = ",".join(sorted(deferred(i, heavy))) or "NOTHING"
            note = "" if i.commented else "  (no reason)"
            print(f"{kind} {i.source}:{i.line} -> {i.target}{note}")
    print(cycles(every) or "no cycles", file=sys.stderr)
