"""Which graph is open while nodes are being created (``with GraphNode(...):``)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hush.core.nodes.graph.graph_node import GraphNode

_open_graphs: ContextVar[tuple[GraphNode, ...]] = ContextVar("hush_open_graphs", default=())


def current_graph() -> GraphNode | None:
    """The innermost graph whose ``with`` block is open, if any."""
    stack = _open_graphs.get()
    return stack[-1] if stack else None


def push_graph(graph: GraphNode) -> None:
    """Open ``graph``: nodes created from now on belong to it."""
    _open_graphs.set((*_open_graphs.get(), graph))


def pop_graph(graph: GraphNode) -> None:
    """Close ``graph``; it must be the innermost one."""
    stack = _open_graphs.get()
    if stack and stack[-1] is graph:
        _open_graphs.set(stack[:-1])
