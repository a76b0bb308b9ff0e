"""LLM nodes, resources, the per-resource client and its rate limiter, costs, budgets and the
response cache.

Names are imported on first use, so importing a light module of this package (every
run imports :mod:`hush.providers.llm_run`, its LLM extension) does not load the OpenAI SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hush.providers.client_scope import client_scope

if TYPE_CHECKING:
    from hush.providers.cache import ResponseCache
    from hush.providers.client import LLMClient, LLMResult
    from hush.providers.clients import aclose_all, complete, get_client
    from hush.providers.embedding import EmbeddingNode, EmbeddingResult
    from hush.providers.errors import (
        BudgetExceededError,
        LLMCallError,
        ResourceError,
        ResourceUnavailableError,
    )
    from hush.providers.limiter import LimiterStats, ResourceLimiter, all_limiters, get_limiter
    from hush.providers.llm import LLMNode
    from hush.providers.pricing import Price, price_of
    from hush.providers.prompt import PromptError, PromptNode, render_messages
    from hush.providers.rerank import RerankNode, RerankResult
    from hush.providers.resources import (
        EmbeddingResource,
        LangfuseResource,
        LLMResource,
        RerankResource,
        ResourceRegistry,
        get_registry,
    )
    from hush.providers.spend import RunSpend

__all__ = [
    "BudgetExceededError",
    "EmbeddingNode",
    "EmbeddingResource",
    "EmbeddingResult",
    "LLMCallError",
    "LLMClient",
    "LLMNode",
    "LLMResource",
    "LLMResult",
    "LangfuseResource",
    "LimiterStats",
    "Price",
    "PromptError",
    "PromptNode",
    "RerankNode",
    "RerankResource",
    "RerankResult",
    "ResourceError",
    "ResourceLimiter",
    "ResourceRegistry",
    "ResourceUnavailableError",
    "ResponseCache",
    "RunSpend",
    "aclose_all",
    "all_limiters",
    "client_scope",
    "complete",
    "get_client",
    "get_limiter",
    "get_registry",
    "price_of",
    "render_messages",
]

_MODULES = {
    "LLMClient": "hush.providers.client",
    "LLMResult": "hush.providers.client",
    "aclose_all": "hush.providers.clients",
    "complete": "hush.providers.clients",
    "get_client": "hush.providers.clients",
    "LLMCallError": "hush.providers.errors",
    "ResourceError": "hush.providers.errors",
    "ResourceUnavailableError": "hush.providers.errors",
    "LimiterStats": "hush.providers.limiter",
    "ResourceLimiter": "hush.providers.limiter",
    "all_limiters": "hush.providers.limiter",
    "get_limiter": "hush.providers.limiter",
    "LLMNode": "hush.providers.llm",
    "PromptError": "hush.providers.prompt",
    "PromptNode": "hush.providers.prompt",
    "render_messages": "hush.providers.prompt",
    "LangfuseResource": "hush.providers.resources",
    "LLMResource": "hush.providers.resources",
    "ResourceRegistry": "hush.providers.resources",
    "get_registry": "hush.providers.resources",
    "ResponseCache": "hush.providers.cache",
    "BudgetExceededError": "hush.providers.errors",
    "Price": "hush.providers.pricing",
    "price_of": "hush.providers.pricing",
    "RunSpend": "hush.providers.spend",
    "EmbeddingNode": "hush.providers.embedding",
    "EmbeddingResult": "hush.providers.embedding",
    "RerankNode": "hush.providers.rerank",
    "RerankResult": "hush.providers.rerank",
    "EmbeddingResource": "hush.providers.resources",
    "RerankResource": "hush.providers.resources",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
