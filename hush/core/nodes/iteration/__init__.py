"""Iteration nodes: run a body per item or while a condition holds."""

from hush.core.nodes.iteration.base import Each, IterationNode
from hush.core.nodes.iteration.for_loop_node import ForLoopNode
from hush.core.nodes.iteration.map_node import MapNode
from hush.core.nodes.iteration.while_loop_node import MaxIterationsError, WhileLoopNode

__all__ = ["Each", "ForLoopNode", "IterationNode", "MapNode", "MaxIterationsError", "WhileLoopNode"]
