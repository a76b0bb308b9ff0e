"""A stable, printable description of a graph tree (for fingerprints and display)."""

from __future__ import annotations

from typing import Any

from hush.core.nodes.base import BaseNode
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.refs import Each, Ref


def _value(value: Any) -> Any:
    if isinstance(value, Ref | Each):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if callable(value):
        return getattr(value, "__qualname__", type(value).__name__)
    return type(value).__name__


def describe(node: BaseNode) -> dict[str, Any]:
    """Kind, name, inputs, outputs, options and (for graphs) children and edges."""
    info: dict[str, Any] = {
        "kind": node.kind,
        "name": node.name,
        "inputs": {k: _value(v) for k, v in node.inputs.items()},
        "outputs": sorted(node.output_map),
        "options": node.describe_options(),
    }
    if isinstance(node, GraphNode):
        info["nodes"] = [describe(n) for n in node.nodes.values()]
        info["edges"] = sorted(f"{s!r}>>{'~' if soft else ''}{d!r}" for s, d, soft in node.edges)
    return info
