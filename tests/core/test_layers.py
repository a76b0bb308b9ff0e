"""The node-attempt lifecycle's modules form layers: no circle of imports among them."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import hush.core

CORE = Path(hush.core.__file__).parent
LIFECYCLE = ("runtime", "lifecycle", "attempts", "call", "items", "outcome")


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Modules imported when the code runs: module level and inside functions, not the
    ``if TYPE_CHECKING:`` blocks (only the type checker reads those)."""
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return found


def lifecycle_graph(core: Path) -> dict[str, set[str]]:
    """Which lifecycle module imports which, at run time."""
    graph: dict[str, set[str]] = {}
    for name in LIFECYCLE:
        imported = _runtime_imports(ast.parse((core / f"{name}.py").read_text()))
        graph[name] = {other for other in LIFECYCLE if f"hush.core.{other}" in imported} - {name}
    return graph


def test_the_lifecycle_modules_import_each_other_in_layers() -> None:
    graph = lifecycle_graph(CORE)
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("outcome") < order.index("items") < order.index("call")
    assert order.index("call") < order.index("attempts") < order.index("lifecycle")
    assert order.index("lifecycle") < order.index("runtime")


def test_a_function_level_import_that_closes_a_circle_is_found(tmp_path: Path) -> None:
    for name in LIFECYCLE:
        (tmp_path / f"{name}.py").write_text((CORE / f"{name}.py").read_text())
    items = tmp_path / "items.py"
    items.write_text(items.read_text() + "\n\ndef _late():\n    from hush.core import runtime\n")
    with pytest.raises(graphlib.CycleError) as found:
        list(graphlib.TopologicalSorter(lifecycle_graph(tmp_path)).static_order())
    assert {"runtime", "items"} <= set(found.value.args[1])
