"""Which generation parameters an ``LLMNode`` accepts, checked when the node is made.

Known parameters are the fields of the chat completions request as the installed
``openai`` SDK defines them (``CompletionCreateParamsBase``, so the list follows the
SDK), plus the SDK's ``extra_body``, ``extra_headers`` and ``extra_query``. Fields
hush sets itself (``model``, ``messages``, ``stream``, ``stream_options``) and
anything else are refused with the node's name and, for a misspelling, the closest
known name. Provider-specific fields go in ``extra_body={...}``.

The SDK's types take most of a second to import, so names are first looked up in
:data:`KNOWN_PARAMS` (the SDK's list when this module was written; a test keeps the two
equal) and the installed SDK is asked only about a name outside it (a field added by a
newer SDK, or a misspelling that is about to be refused).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from hush.core.errors import GraphDefinitionError

__all__ = [
    "KNOWN_PARAMS",
    "check_params",
    "generation_params",
    "is_generation_param",
    "is_sdk_keyword",
    "sdk_keywords",
]

_SDK_EXTRAS = frozenset({"extra_body", "extra_headers", "extra_query"})
_SET_BY_HUSH: dict[str, str] = {
    "model": "the model comes from the resource: pick another resource_key to change it",
    "messages": "messages is an input: inputs={'messages': ...}",
    "stream": "stream is a keyword of LLMNode (stream=True), not an input",
    "stream_options": "hush asks for usage in the stream itself when stream=True",
}
_UPSTREAM: dict[str, str] = {
    "ratios": (
        "ratios= is upstream Hush's load balancing: in hush, give resource_key a list of "
        "resources and weights=[...] to spread calls over them by weight"
    ),
    "batch_mode": (
        "batch_mode= is upstream Hush's Batch API switch, which hush does not have: calls are "
        "sent as they come, within the resource's rate limits"
    ),
}
_NODE_KEYWORDS = frozenset({"resource_key", "fallback", "retry", "timeout", "cache", "outputs"})
_MAPPINGS = frozenset({"extra_body", "extra_headers", "extra_query", "logit_bias", "metadata"})

KNOWN_PARAMS: frozenset[str] = frozenset(
    {
        "audio",
        "extra_body",
        "extra_headers",
        "extra_query",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
""":func:`generation_params` as of ``openai`` 3.60, known without importing the SDK."""
_CREATE_KEYWORDS = KNOWN_PARAMS | _SET_BY_HUSH.keys() | {"timeout"}
"""Keywords of the SDK's ``chat.completions.create`` as of ``openai`` 3.60."""


@functools.cache
def generation_params() -> frozenset[str]:
    """Parameter names an ``LLMNode`` passes to the chat completions request: the installed
    SDK's request fields, less those hush sets, plus the SDK's ``extra_*`` keywords."""
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    fields = frozenset(CompletionCreateParamsBase.__annotations__)
    return (fields - _SET_BY_HUSH.keys()) | _SDK_EXTRAS


@functools.cache
def sdk_keywords() -> frozenset[str]:
    """The keywords of the installed SDK's ``chat.completions.create``."""
    import inspect

    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self"}


def is_generation_param(name: str) -> bool:
    """Whether ``name`` is in :func:`generation_params` (the SDK is imported only for a
    name outside :data:`KNOWN_PARAMS`)."""
    return name in KNOWN_PARAMS or name in generation_params()


def is_sdk_keyword(name: str) -> bool:
    """Whether the SDK's ``chat.completions.create`` takes ``name`` as a keyword (else it
    is sent in ``extra_body``); the SDK is imported only for a name hush does not know."""
    return name in _CREATE_KEYWORDS or name in sdk_keywords()


def check_params(node: str, params: Mapping[str, Any], inputs: Iterable[str]) -> None:
    """Refuse unknown keyword parameters and inputs of ``LLMNode`` ``node``.

    ``params`` are its extra keyword arguments; ``inputs`` the names of its inputs
    besides ``messages`` (also sent as parameters, so ``response_format`` and
    ``tools`` are accepted there too).
    """
    for name, value in params.items():
        _check_name(node, name, "parameter")
        if name in _MAPPINGS and value is not None and not isinstance(value, Mapping):
            raise GraphDefinitionError(
                f"LLMNode '{node}': {name} must be a dict, got {type(value).__name__} {value!r}"
            )
    for name in inputs:
        if name in _NODE_KEYWORDS:
            raise GraphDefinitionError(
                f"LLMNode '{node}': {name} is a keyword of LLMNode ({name}=...), not an input"
            )
        _check_name(node, name, "input")


def _check_name(node: str, name: str, what: str) -> None:
    if is_generation_param(name):
        return
    known = generation_params()
    reason = _SET_BY_HUSH.get(name) or _UPSTREAM.get(name)
    if reason is not None:
        raise GraphDefinitionError(f"LLMNode '{node}': {what} '{name}' is not accepted: {reason}")
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise GraphDefinitionError(
        f"LLMNode '{node}': unknown {what} '{name}'.{hint} Known generation parameters are "
        "those of the OpenAI chat completions API (temperature, max_tokens, top_p, seed, "
        f"...); send a provider-specific field with extra_body={{'{name}': ...}}"
    )


def __getattr__(name: str) -> Any:
    """``GENERATION_PARAMS``: :func:`generation_params`, read from the SDK on first use."""
    if name == "GENERATION_PARAMS":
        return generation_params()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
