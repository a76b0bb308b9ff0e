"""hush: an asyncio DAG workflow engine for LLM pipelines.

The nodes a user writes, the engine and the run options are importable from here;
the LLM nodes load the provider layer (and the OpenAI SDK) on first use.
"""

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
    RunOptionError,
    code_node,
)
from hush.core.extensions import register
from hush.core.nodes.iteration import ForLoopNode, MapNode, WhileLoopNode
from hush.core.run_options import Budget, Checkpoint, Labels, Progress

if TYPE_CHECKING:
    from hush.providers import EmbeddingNode, LLMNode, PromptNode, RerankNode, ResponseCache

__version__ = "0.1.0"

__all__ = [
    "END",
    "PARENT",
    "START",
    "BranchNode",
    "Budget",
    "Checkpoint",
    "CodeNode",
    "Each",
    "EmbeddingNode",
    "ForLoopNode",
    "GraphBuildError",
    "GraphNode",
    "Hush",
    "LLMNode",
    "Labels",
    "MapNode",
    "NodeError",
    "ParserNode",
    "Progress",
    "PromptNode",
    "RerankNode",
    "ResponseCache",
    "RetryPolicy",
    "RunError",
    "RunOptionError",
    "WhileLoopNode",
    "__version__",
    "code_node",
]

register("hush.providers.llm_run:run_extensions")
"""Every run gets the LLM spend ledger, budget and cache (imported at the first run)."""

_PROVIDED = frozenset({"EmbeddingNode", "LLMNode", "PromptNode", "RerankNode", "ResponseCache"})


def __getattr__(name: str) -> Any:
    """Provider nodes, imported on first use (so ``import hush`` does not load the SDK)."""
    if name in _PROVIDED:
        import hush.providers

        return getattr(hush.providers, name)
    raise AttributeError(f"module 'hush' has no attribute {name!r}")
