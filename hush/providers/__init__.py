"""LLM nodes, resources and the per-resource client."""

from hush.providers.errors import LLMCallError, ResourceError
from hush.providers.llm import LLMNode
from hush.providers.prompt import PromptError, PromptNode, render_messages
from hush.providers.resources import LangfuseResource, LLMResource, ResourceRegistry, get_registry

__all__ = [
    "LLMCallError",
    "LLMNode",
    "LLMResource",
    "LangfuseResource",
    "PromptError",
    "PromptNode",
    "ResourceError",
    "ResourceRegistry",
    "get_registry",
    "render_messages",
]
