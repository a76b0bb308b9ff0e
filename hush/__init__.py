"""hush: an asyncio DAG workflow engine for LLM pipelines."""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from hush.providers import EmbeddingNode, LLMNode, PromptNode, RerankNode

__version__ = "0.1.0"

__all__ = [
    "END",
    "PARENT",
    "START",
    "BranchNode",
    "CodeNode",
    "Each",
    "EmbeddingNode",
    "ForLoopNode",
    "GraphBuildError",
    "GraphNode",
    "Hush",
    "LLMNode",
    "MapNode",
    "NodeError",
    "ParserNode",
    "PromptNode",
    "RerankNode",
    "RetryPolicy",
    "RunError",
    "WhileLoopNode",
    "__version__",
    "code_node",
]

_PROVIDED = frozenset({"EmbeddingNode", "LLMNode", "PromptNode", "RerankNode"})


def __getattr__(name: str) -> Any:
    """Provider nodes, imported on first use (so ``import hush`` does not load the SDK)."""
    if name in _PROVIDED:
        import hush.providers

        return getattr(hush.providers, name)
    raise AttributeError(f"module 'hush' has no attribute {name!r}")
