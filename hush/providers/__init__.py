"""LLM nodes, resources, the per-resource client and its rate limiter."""

from hush.providers.client import LLMClient, LLMResult
from hush.providers.clients import aclose_all, complete, get_client
from hush.providers.errors import LLMCallError, ResourceError, ResourceUnavailableError
from hush.providers.limiter import LimiterStats, ResourceLimiter, all_limiters, get_limiter
from hush.providers.llm import LLMNode
from hush.providers.prompt import PromptError, PromptNode, render_messages
from hush.providers.resources import LangfuseResource, LLMResource, ResourceRegistry, get_registry

__all__ = [
    "LLMCallError",
    "LLMClient",
    "LLMNode",
    "LLMResource",
    "LLMResult",
    "LangfuseResource",
    "LimiterStats",
    "PromptError",
    "PromptNode",
    "ResourceError",
    "ResourceLimiter",
    "ResourceRegistry",
    "ResourceUnavailableError",
    "aclose_all",
    "all_limiters",
    "complete",
    "get_client",
    "get_limiter",
    "get_registry",
    "render_messages",
]
