"""hush: an asyncio DAG workflow engine for LLM pipelines."""

from hush.core import (
    END,
    PARENT,
    START,
    BranchNode,
    CodeNode,
    Each,
    GraphBuildError,
    GraphNode,
    Hush,
    NodeError,
    ParserNode,
    RetryPolicy,
    RunError,
    code_node,
)
from hush.core.nodes.iteration import ForLoopNode, MapNode, WhileLoopNode

__version__ = "0.1.0"

__all__ = [
    "END",
    "PARENT",
    "START",
    "BranchNode",
    "CodeNode",
    "Each",
    "ForLoopNode",
    "GraphBuildError",
    "GraphNode",
    "Hush",
    "MapNode",
    "NodeError",
    "ParserNode",
    "RetryPolicy",
    "RunError",
    "WhileLoopNode",
    "__version__",
    "code_node",
]
