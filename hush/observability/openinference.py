"""OpenInference attributes (what Phoenix and Arize read) beside the GenAI ones.

Span kinds: ``LLM`` for chat calls, ``EMBEDDING``/``RERANKER`` for those operations and
``CHAIN`` for runs, graphs, maps, items and nodes. Texts are already bounded by the
tracer's ``max_field_chars`` (truncated with a marker, never dropped); ``input.value`` and
``output.value`` are the only copy of a span's input and output on OTLP spans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from hush.core.events import LLMCall
from hush.observability.serialize import usage_details

Attributes = dict[str, Any]

_KINDS = {"chat": "LLM", "embeddings": "EMBEDDING", "rerank": "RERANKER"}
JSON_MIME, _TEXT = "application/json", "text/plain"


IO_KEYS = {prefix: (f"{prefix}.value", f"{prefix}.mime_type") for prefix in ("input", "output")}
"""The attributes of an input and an output: its text and its mime type."""


def io_attributes(prefix: str, value: Any, text: Callable[[Any], str]) -> Attributes:
    """``{prefix}.value`` (``value`` as ``text`` makes it, once) and its mime type: JSON if
    it parses (a container encoded whole is known to, without parsing it again)."""
    encoded = text(value)
    whole = encoded[:1] in ("{", "[") and not encoded.endswith(" chars]")
    mime = JSON_MIME if whole and not isinstance(value, str) else _TEXT
    if mime == _TEXT:
        try:
            json.loads(encoded)
            mime = JSON_MIME
        except ValueError:
            pass
    keys = IO_KEYS.get(prefix) or (f"{prefix}.value", f"{prefix}.mime_type")
    return {keys[0]: encoded, keys[1]: mime}


def _messages(prefix: str, messages: Any, text: Callable[[Any], str]) -> Attributes:
    attributes: Attributes = {}
    if not isinstance(messages, list):
        return attributes
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            continue
        key = f"{prefix}.{i}.message"
        attributes[f"{key}.role"] = str(message.get("role", ""))
        content = message.get("content")
        if content is not None:
            attributes[f"{key}.content"] = content if isinstance(content, str) else text(content)
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function", {}) if isinstance(call, Mapping) else {}
            call_key = f"{key}.tool_calls.{j}.tool_call.function"
            attributes[f"{call_key}.name"] = str(function.get("name", ""))
            attributes[f"{call_key}.arguments"] = str(function.get("arguments", ""))
    return attributes


def _output_messages(output: Any) -> list[Any]:
    """The reply as a message list: a text is the assistant's content."""
    if isinstance(output, str):
        return [{"role": "assistant", "content": output}]
    if isinstance(output, Mapping):
        return [{"role": "assistant", **output}]
    return []


def llm_attributes(llm: LLMCall, text: Callable[[Any], str], include_io: bool) -> Attributes:
    """One LLM, embedding or rerank call: model, provider, tokens, cost, parameters, I/O."""
    attributes: Attributes = {
        "openinference.span.kind": _KINDS.get(llm.operation, "LLM"),
        "llm.model_name": llm.response_model or llm.model,
        "llm.provider": "openai",
        "llm.system": "openai",
    }
    if llm.params:
        attributes["llm.invocation_parameters"] = text(
            {k: v for k, v in llm.params.items() if k != "tools"}
        )
        tools = llm.params.get("tools")
        for i, tool in enumerate(tools if isinstance(tools, list) else ()):
            attributes[f"llm.tools.{i}.tool.json_schema"] = text(tool)
    usage = usage_details(llm.usage) or {}
    for key, name in (("input", "prompt"), ("output", "completion"), ("total", "total")):
        if key in usage:
            attributes[f"llm.token_count.{name}"] = usage[key]
    for key in ("cached_tokens", "cache_read_input_tokens", "cache_read"):
        if key in usage:
            attributes["llm.token_count.prompt_details.cache_read"] = usage[key]
            break
    if "reasoning_tokens" in usage:
        attributes["llm.token_count.completion_details.reasoning"] = usage["reasoning_tokens"]
    if llm.cost is not None:
        attributes["llm.cost.total"] = llm.cost
    if include_io:
        attributes.update(io_attributes("input", llm.messages, text))
        attributes.update(_messages("llm.input_messages", llm.messages, text))
        if llm.output is not None:
            attributes.update(io_attributes("output", llm.output, text))
            attributes.update(_messages("llm.output_messages", _output_messages(llm.output), text))
    return attributes
