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
    graph["pcdms.pose"].add("pcdms.sampling.pipeline")  # the pipeline imports pose: this edge closes a circle
    assert any("pcdms.pose" in c and "pcdms.sampling.pipeline" in c for c in cycles(graph))


# The folders follow the flow (issue 29): a module may import its own layer and those below, never one above.
LAYERS = [
    ["errors", "validation", "configio", "recipes", "config", "progress", "names", "imageio", "checkpoints",
     "visualize"],
    ["pose", "framing", "data", "metrics"],  # inputs: poses, images into the model frame, datasets, measures
    ["models", "summary"],  # the networks, encoders, the diffusion process, model folders
    ["sampling"],  # PCDMsPipeline
    ["training"],  # the training loop (its previews sample through the pipeline)
    ["jobs"],  # batch generation, animation, augmentation, extraction
    ["app", "commands", "cli", "pipeline", ""],  # the page, the CLI, the kept public path, the package itself
]
# the one climb: PCDMsPipeline.animate, a convenience method, hands the pipeline to the animation job
ALLOWED_CLIMBS = {("pcdms.sampling.pipeline", "pcdms.jobs.animate")}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    found = [i for i, names in enumerate(LAYERS) if top in names]
    assert found, f"{module} is in no layer: add it to LAYERS"
    return found[0]


def climbs(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if layer_of(b) > layer_of(a) and (a, b) not in ALLOWED_CLIMBS)


def test_every_import_goes_down_the_layers_of_the_folder_tree():
    assert climbs(import_graph()) == []


def test_the_layer_check_finds_a_climb():
    graph = import_graph()
    graph["pcdms.models.diffusion"].add("pcdms.sampling.pipeline")
    assert climbs(graph) == [("pcdms.models.diffusion", "pcdms.sampling.pipeline")]


def test_the_public_import_path_of_the_pipeline_is_kept():
    from pcdms.pipeline import PCDMsPipeline
    from pcdms.sampling.pipeline import PCDMsPipeline as moved

    assert PCDMsPipeline is moved
