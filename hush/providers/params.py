"""Which generation parameters an ``LLMNode`` accepts, checked when the node is made.

Known parameters are the fields of the chat completions request as the installed
``openai`` SDK defines them (``CompletionCreateParamsBase``, so the list follows the
SDK), plus the SDK's ``extra_body``, ``extra_headers`` and ``extra_query``. Fields
hush sets itself (``model``, ``messages``, ``stream``, ``stream_options``) and
anything else are refused with the node's name and, for a misspelling, the closest
known name. Provider-specific fields go in ``extra_body={...}``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from hush.core.errors import GraphDefinitionError

__all__ = ["GENERATION_PARAMS", "check_params"]

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

GENERATION_PARAMS: frozenset[str] = (
    frozenset(CompletionCreateParamsBase.__annotations__) - _SET_BY_HUSH.keys()
) | _SDK_EXTRAS
"""Parameter names an ``LLMNode`` passes to the chat completions request."""


def check_params(node: str, params: Mapping[str, Any], inputs: Iterable[str]) -> None:
    """Refuse unknown keyword parameters and inputs of ``LLMNode`` ``node``.

    ``params`` are its extra keyword arguments; ``inputs`` the names of its inputs
    besides ``messages`` (also sent as parameters, so ``response_format`` and
    ``tools`` are accepted there too).
    """
    for name, value in params.items():
        _check_name(node, name, GENERATION_PARAMS, "parameter")
        if name in _MAPPINGS and value is not None and not isinstance(value, Mapping):
            raise GraphDefinitionError(
                f"LLMNode '{node}': {name} must be a dict, got {type(value).__name__} {value!r}"
            )
    for name in inputs:
        if name in _NODE_KEYWORDS:
            raise GraphDefinitionError(
                f"LLMNode '{node}': {name} is a keyword of LLMNode ({name}=...), not an input"
            )
        _check_name(node, name, GENERATION_PARAMS | {"response_format", "tools"}, "input")


def _check_name(node: str, name: str, known: frozenset[str], what: str) -> None:
    if name in known:
        return
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
