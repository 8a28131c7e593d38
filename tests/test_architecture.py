"""The package layout: dependencies run one way. Read from the source of every module (imports
at module level and inside functions alike), not from what happens to be loaded. Imports for
type annotations only (under ``if TYPE_CHECKING:``) are not dependencies: a hook is typed with
the trainer that calls it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import yolov3

ROOT = Path(yolov3.__file__).parent


def module_name(path: Path) -> str:
    parts = ["yolov3", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                stack.extend(child.orelse)
            else:
                stack.append(child)
    return found


def imports_of(name: str) -> set[str]:
    """The project modules that module ``name`` imports anywhere in its source: ``from a.b
    import c`` is ``a.b.c`` when that is a module, else ``a.b``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def package_of(name: str) -> str:
    """The top-level subpackage of yolov3 that module ``name`` belongs to
    (``yolov3.datasets.check`` -> ``yolov3.datasets``); a top-level module (``yolov3.fileio``)
    and the root package are their own."""
    return ".".join(name.split(".")[:2])


# The imports between packages: each module collapsed to its package, imports within one dropped.
PACKAGE_GRAPH: dict[str, set[str]] = {}
for _module, _imported in GRAPH.items():
    PACKAGE_GRAPH.setdefault(package_of(_module), set()).update(
        package_of(m) for m in _imported if package_of(m) != package_of(_module))


def reaches(start: str, goal: str, graph: dict[str, set[str]] = GRAPH) -> list[str] | None:
    """A chain of imports from ``start`` to ``goal`` in ``graph``, if there is one."""
    stack, seen = [[start]], {start}
    while stack:
        chain = stack.pop()
        for nxt in sorted(graph[chain[-1]]):
            if nxt == goal:
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*chain, nxt])
    return None


def test_the_graph_is_read_from_the_source() -> None:
    assert "yolov3.loss.assign" in GRAPH["yolov3.loss.yolo_loss"]
    assert "yolov3.train.hooks" in GRAPH["yolov3.train.trainer"]  # at module level
    assert "yolov3.train.trainer" not in GRAPH["yolov3.train.hooks"]  # for annotations only
    assert "yolov3.model.network" in GRAPH["yolov3.inference.detector"]
    assert len(MODULES) > 60


def test_no_import_cycle() -> None:
    cycles = [chain for name in GRAPH if (chain := reaches(name, name))]
    assert not cycles, " -> ".join(cycles[0])


def test_the_package_graph_collapses_modules_to_their_packages() -> None:
    assert package_of("yolov3.datasets.check") == "yolov3.datasets"
    assert package_of("yolov3.fileio") == "yolov3.fileio"
    assert "yolov3.datasets" in PACKAGE_GRAPH["yolov3.inputs"]
    assert "yolov3.model" not in PACKAGE_GRAPH["yolov3.model"]


def test_no_import_cycle_between_packages() -> None:
    """Dependencies between packages run one way: no package reaches itself through others
    (``yolov3.inputs`` depends on ``yolov3.datasets``, so nothing there may import inputs)."""
    cycles = sorted(chain for name in PACKAGE_GRAPH
                    if (chain := reaches(name, name, PACKAGE_GRAPH)))
    assert not cycles, "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("side", ["yolov3.datasets", "yolov3.inputs", "yolov3.images"])
def test_the_data_side_does_not_depend_on_inference(side: str) -> None:
    for name in (m for m in GRAPH if m == side or m.startswith(side + ".")):
        for other in ("yolov3.inference", "yolov3.evaluation", "yolov3.train", "yolov3.cli"):
            chains = [c for m in MODULES if m.startswith(other) and (c := reaches(name, m))]
            assert not chains, " -> ".join(chains[0])


def test_the_loss_depends_on_the_yolo_layers_not_the_network() -> None:
    for name in (m for m in GRAPH if m.startswith("yolov3.loss")):
        assert reaches(name, "yolov3.model.network") is None, name
    assert "yolov3.model.layers" in GRAPH["yolov3.loss.assign"]


def test_the_model_knows_nothing_of_training_data_or_inference() -> None:
    for name in (m for m in GRAPH if m.startswith("yolov3.model")):
        for other in ("yolov3.loss", "yolov3.train", "yolov3.datasets", "yolov3.inputs",
                      "yolov3.inference", "yolov3.weights", "yolov3.cli"):
            chains = [c for m in MODULES if m.startswith(other) and (c := reaches(name, m))]
            assert not chains, " -> ".join(chains[0])


def test_inference_does_not_depend_on_export() -> None:
    """Export builds on inference (the folded network, the number formats, int8), so
    inference reaches no module of export, directly or through others; what needs both (the
    ONNX Runtime engine of make_detector) lives above them, in yolov3.backends."""
    exports = [m for m in MODULES if m == "yolov3.export" or m.startswith("yolov3.export.")]
    for name in (m for m in GRAPH if m.startswith("yolov3.inference")):
        chains = [c for m in exports if (c := reaches(name, m))]
        assert not chains, " -> ".join(chains[0])
    assert "yolov3.inference.fast" in GRAPH["yolov3.export"]  # the one way it runs
