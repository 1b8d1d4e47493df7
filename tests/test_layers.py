"""Imports between the packages of verl_agent_ext/ point one way, lazy (function-level) imports included.

Every module is parsed with `ast` (nothing is imported); an import of `verl_agent_ext.<pkg>` from a module of another
package is an edge. No cycle may exist between packages, and the order the README states ("Layers point one way: ...")
must hold: a package imports only packages to its right.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "verl_agent_ext"

Edges = dict[str, dict[str, list[str]]]


def _package(path: Path) -> str:
    """The first-level package (or top-level module) of a source file: `local`, `verl_plugin`, `cli`, ..."""
    return path.relative_to(SOURCE).parts[0].removesuffix(".py")


def _module_name(path: Path) -> list[str]:
    parts = ["verl_agent_ext", *path.relative_to(SOURCE).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(node: ast.AST, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = _module_name(path)
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        return [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return []


def package_edges() -> Edges:
    """{importing package: {imported package: ["file:line", ...]}} over every module, all import statements."""
    edges: Edges = defaultdict(lambda: defaultdict(list))
    for path in sorted(SOURCE.rglob("*.py")):
        source = _package(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported(node, path):
                parts = name.split(".")
                if parts[0] != "verl_agent_ext" or len(parts) < 2:
                    continue
                target = parts[1]
                known = (SOURCE / target).is_dir() or (SOURCE / f"{target}.py").is_file()
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if known and target != source and where not in edges[source][target]:
                    edges[source][target].append(where)
    return edges


def find_cycle(edges: Edges) -> list[str] | None:
    """One cycle of packages (first package repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, {})):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def readme_layers() -> list[list[str]]:
    """The README's layer order, top first: 'Layers point one way: `a`, `b` -> `c` -> ...' -> [[a, b], [c], ...]."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"Layers point one way[^:]*:\s*(.+?)[;.]\s", text, re.S)
    assert match, "README.md lost its 'Layers point one way: ...' sentence"
    return [re.findall(r"`(\w+)`", rank) for rank in match.group(1).split("->")]


def test_no_import_cycle_between_packages():
    edges = package_edges()
    cycle = find_cycle(edges)
    if cycle:
        detail = "; ".join(f"{a} -> {b} ({', '.join(edges[a][b][:3])})" for a, b in pairwise(cycle))
        raise AssertionError(f"import cycle between packages: {' -> '.join(cycle)}: {detail}")


def test_imports_follow_the_readme_layer_order():
    layers = readme_layers()
    rank = {package: index for index, names in enumerate(layers) for package in names}
    packages = {path.name for path in SOURCE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    assert packages <= set(rank), f"packages missing from README's layer sentence: {sorted(packages - set(rank))}"
    upward = [
        f"{source} -> {target} ({', '.join(places[:2])})"
        for source, targets in package_edges().items()
        for target, places in targets.items()
        if source in rank and target in rank and rank[source] >= rank[target]
    ]
    assert not upward, f"imports against README's layer order {layers}: {upward}"


def test_the_cycle_finder_sees_a_lazy_import_cycle():
    edges = {"local": {"verl_plugin": ["local/advantages.py:25"]}, "verl_plugin": {"local": ["hf_rollout.py:39"]}}
    assert find_cycle(edges) == ["local", "verl_plugin", "local"]
    assert find_cycle({"a": {"b": []}, "b": {"c": []}}) is None
