"""The package's import graph has no cycle, counting every ``import`` (top level and inside functions).

Nodes are the package's modules; ``from ..data import x`` is an edge to ``seqvision.data`` (its ``__init__``),
``from ..data._collate import x`` to that module. Run as a script to print the graph's cycles.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "seqvision"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: {imported package modules}}`` for every module of seqvision."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[: len(base) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                # `from pkg import submodule` needs the submodule; `from pkg import name`, pkg's __init__
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
            for t in targets:
                while t and t not in modules:  # an attribute of a module: the module itself
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name and t.startswith("seqvision"):
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_config_models_tasks_train_import_no_cycle():
    graph = import_graph()
    assert "seqvision.models._registry" not in graph["seqvision.config"]
    assert "seqvision.models" not in graph["seqvision.config"]
    found = cycles(graph)
    core = {"seqvision.config", "seqvision.presets", "seqvision.tasks", "seqvision.train", "seqvision.models"}
    assert not [c for c in found if core & {m.rsplit("._", 1)[0] for m in c}], found


if __name__ == "__main__":
    for comp in cycles(import_graph()):
        print(" <-> ".join(comp))
