"""What iteration nodes share, and ``Each``."""

from __future__ import annotations

from typing import ClassVar

from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.refs import Each

__all__ = ["Each", "IterationNode"]


class IterationNode(GraphNode):
    """A graph whose body runs many times (once per item or per iteration)."""

    kind = "iteration"
    trace_kind = "map"
    allows_each: ClassVar[bool] = True
