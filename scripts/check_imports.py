"""What import-linter does not check: that no relay module imports in a circle, that every part of
relay has a place in the layers contract, and that relay/ itself holds at most 12 modules.

    python scripts/check_imports.py            # exit 1 and name the problem when one is found
    python scripts/check_imports.py --report   # also the numbers: modules, imports, longest chain

Every explicit import counts, wherever it stands: inside a function, under TYPE_CHECKING (grimp,
which import-linter is built on, reads them all). A package's `__init__` that imports a module
which imports the package back is a circle too: grimp names the package itself as a module.
"""

from __future__ import annotations

import sys
import tomllib
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "relay"
MAX_TOP_LEVEL = 12


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of two or more modules, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a long chain cannot reach Python's recursion limit.
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[module] = min(low[module], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1 or graph.direct_import_exists(
                        importer=module, imported=module
                    ):
                        found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def layered_parts() -> set[str]:
    """Every module or package named in pyproject.toml's layers contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    named: set[str] = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        for layer in contract.get("layers", []):
            for part in layer.replace(":", "|").split("|"):
                named.add(part.strip())
    return named


def unplaced(graph: grimp.ImportGraph) -> list[str]:
    """relay's direct children (modules and sub-packages) that no layer names."""
    children = {m for m in graph.modules if m.count(".") == 1}
    return sorted(children - layered_parts())


def top_level_files() -> list[str]:
    return sorted(p.name for p in (ROOT / PACKAGE).glob("*.py"))


def longest_chain(graph: grimp.ImportGraph) -> list[str]:
    """The longest path of imports (the graph has no circles when this is asked)."""

    @cache
    def longest_from(module: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for child in graph.find_modules_directly_imported_by(module):
            path = longest_from(child)
            if len(path) > len(best):
                best = path
        return (module, *best)

    return list(max((longest_from(m) for m in graph.modules), key=len))


def report(graph: grimp.ImportGraph) -> None:
    imports = sum(len(graph.find_modules_directly_imported_by(m)) for m in graph.modules)
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / PACKAGE).rglob("*.py")
    }
    largest = max(sizes, key=lambda k: sizes[k])
    chain = longest_chain(graph)
    print(f"modules: {len(graph.modules)}, imports between them: {imports}")
    print(f".py files directly in relay/: {len(top_level_files())}")
    print(f"longest chain of imports: {len(chain)} modules: {' -> '.join(chain)}")
    print(f"largest module: {largest} ({sizes[largest]} lines)")


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(PACKAGE, include_external_packages=False)
    problems = []
    for group in circles(graph):
        problems.append("these modules import each other in a circle: " + ", ".join(group))
    for part in unplaced(graph):
        problems.append(f"{part} has no layer in pyproject.toml's layers contract")
    files = top_level_files()
    if len(files) > MAX_TOP_LEVEL:
        problems.append(
            f"relay/ holds {len(files)} .py files (at most {MAX_TOP_LEVEL}): {', '.join(files)}"
            " — move a part into its folder"
        )
    for problem in problems:
        print(f"check_imports: {problem}", file=sys.stderr)
    if "--report" in argv and not any("circle" in p for p in problems):
        report(graph)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
