"""Render a graph tree as a Mermaid flowchart."""

from __future__ import annotations

import re

from hush.core.nodes.base import END, START, BaseNode, Terminal
from hush.core.nodes.graph.graph_node import GraphNode


def _id(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", path)


def _label(node: BaseNode) -> str:
    return f"{node.name}<br/><i>{node.kind}</i>".replace('"', "'")


def to_mermaid(graph: GraphNode) -> str:
    """``flowchart TD`` text; nested graphs become subgraphs with their own START/END."""
    lines = ["flowchart TD"]
    _emit(graph, lines, "  ")
    return "\n".join(lines) + "\n"


def _endpoint(graph: GraphNode, node: BaseNode | Terminal) -> str:
    if node is START:
        return _id(graph.path) + "__start"
    if node is END:
        return _id(graph.path) + "__end"
    assert isinstance(node, BaseNode)
    if isinstance(node, GraphNode):
        return _id(node.path) + "__start"
    return _id(node.path)


def _exit(graph: GraphNode, node: BaseNode | Terminal) -> str:
    if isinstance(node, GraphNode):
        return _id(node.path) + "__end"
    return _endpoint(graph, node)


def _emit(graph: GraphNode, lines: list[str], indent: str) -> None:
    gid = _id(graph.path)
    lines.append(f'{indent}subgraph {gid}["{graph.name} ({graph.kind})"]')
    inner = indent + "  "
    lines.append(f"{inner}{gid}__start([START])")
    lines.append(f"{inner}{gid}__end([END])")
    for node in graph.nodes.values():
        if isinstance(node, GraphNode):
            _emit(node, lines, inner)
        else:
            lines.append(f'{inner}{_id(node.path)}["{_label(node)}"]')
    for src, dst, soft in graph.edges:
        arrow = "-.->" if soft else "-->"
        lines.append(f"{inner}{_exit(graph, src)} {arrow} {_endpoint(graph, dst)}")
    lines.append(f"{indent}end")
