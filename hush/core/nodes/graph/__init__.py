"""Graph containers."""

from hush.core.nodes.graph.graph_node import GraphNode

__all__ = ["GraphNode"]
