"""Node types."""

from hush.core.nodes.base import END, START, BaseNode
from hush.core.nodes.code_node import CodeNode, code_node
from hush.core.nodes.graph.graph_node import GraphNode

__all__ = ["END", "START", "BaseNode", "CodeNode", "GraphNode", "code_node"]
