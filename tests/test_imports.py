"""No import circles in `src/pcdms` (issue 29), counting imports inside functions too: data flows one way
(models -> diffusion -> pipeline -> jobs -> commands/app), and a circle hidden in a function-local import is
still a circle. An import of a module's own parent package is not counted: Python imports it first anyway."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "pcdms").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the pcdms modules it imports anywhere in its file (submodules named in `from x import y`)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pcdms":
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [n for n in names if n in modules]
                if len(targets) < len(names):  # some names are attributes of node.module itself
                    targets.append(node.module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "pcdms"]
            else:
                continue
            for target in targets:
                while target not in modules:
                    target = target.rsplit(".", 1)[0]
                if target != name and not name.startswith(f"{target}."):  # a parent package: always imported
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_counting_function_local_imports():
    assert cycles(import_graph()) == []


def test_the_check_finds_a_circle():
    graph = import_graph()
    graph["pcdms.pose"].add("pcdms.pipeline")  # the pipeline imports pose: this edge closes a circle
    assert any("pcdms.pose" in c and "pcdms.pipeline" in c for c in cycles(graph))
