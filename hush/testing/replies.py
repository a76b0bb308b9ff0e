"""Deterministic chat-completion replies and their JSON / server-sent-event encodings."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hush.testing.schemas import instance_of

SYSTEM_FINGERPRINT = "fp_hush_mock"


@dataclass(slots=True)
class Reply:
    """What the assistant answers to one request (one choice; ``n`` repeats it)."""

    content: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def text_of(content: Any) -> str:
    """Text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def last_user_text(messages: list[Any]) -> str:
    """Text of the last ``user`` message, or of the last message if there is none."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return text_of(message.get("content"))
    if messages and isinstance(messages[-1], Mapping):
        return text_of(messages[-1].get("content"))
    return ""


def count_tokens(text: str) -> int:
    """Rough token count of generated text: a token per four characters."""
    return (len(text) + 3) // 4


def prompt_tokens(messages: list[Any]) -> int:
    """Prompt tokens: characters of all messages / 4 (at least 1), plus 3 per message."""
    chars = 0
    for message in messages:
        if isinstance(message, Mapping):
            chars += len(text_of(message.get("content")))
            for call in message.get("tool_calls") or ():
                function = call.get("function", {}) if isinstance(call, Mapping) else {}
                chars += len(str(function.get("name", ""))) + len(
                    str(function.get("arguments", ""))
                )
    return max(1, chars // 4) + 3 * len(messages)


def max_tokens_of(body: Mapping[str, Any]) -> int | None:
    """The request's completion-token cap (``max_completion_tokens`` or ``max_tokens``)."""
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def choice_count(body: Mapping[str, Any]) -> int:
    """How many choices were asked for (``n``)."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def token_cost(body: Mapping[str, Any], reply: Reply) -> int:
    """Tokens charged against TPM: prompt plus ``max_tokens`` (or the reply) per choice."""
    cap = max_tokens_of(body)
    completion = cap if cap is not None else reply.completion_tokens
    return reply.prompt_tokens + completion * choice_count(body)


def build_reply(
    body: Mapping[str, Any],
    messages: list[Any],
    model: str,
    last_user: str,
    tool: str | None,
    reply_chars: int,
    request_no: int,
) -> Reply:
    """Compute the deterministic answer to a chat-completion request."""
    prompt = prompt_tokens(messages)
    calls = _tool_calls(body, tool, request_no)
    if calls is not None:
        completion = sum(
            count_tokens(c["function"]["name"] + c["function"]["arguments"]) for c in calls
        )
        return Reply(None, calls, "tool_calls", prompt, max(1, completion))
    snippet = " ".join(last_user.split())
    if len(snippet) > reply_chars:
        snippet = snippet[:reply_chars] + "..."
    labels = offered_labels(messages)
    text = choose_label(labels, last_user) if labels else f"[{model}] reply to: {snippet}"
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema", {}) if isinstance(spec, Mapping) else {}
            text = json.dumps(instance_of(schema))
        elif kind == "json_object":
            text = json.dumps({"model": model, "reply": snippet})
    completion = max(1, count_tokens(text))
    cap = max_tokens_of(body)
    if cap is not None and completion > cap:
        return Reply(text[: max(0, cap) * 4], None, "length", prompt, max(0, cap))
    return Reply(text, None, "stop", prompt, completion)


_ONE_OF = re.compile(r"\bone of\s*:?\s*\[?([^\n.\]]+)", re.IGNORECASE)
_SPLIT = re.compile(r"\s*(?:,|\||/|\bor\b)\s*", re.IGNORECASE)


def offered_labels(messages: list[Any]) -> list[str]:
    """Labels a prompt asks to choose from ("... one of: billing, delivery or other.")."""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        match = _ONE_OF.search(text_of(message.get("content")))
        if match:
            labels = [w.strip(" '\"`*") for w in _SPLIT.split(match.group(1))]
            labels = [w for w in labels if w and len(w.split()) <= 3]
            if len(labels) >= 2:
                return labels
    return []


def choose_label(labels: list[str], text: str) -> str:
    """A label for ``text``: one it mentions (outside the list offering them), else one
    picked by a hash of the text."""
    text = _ONE_OF.sub("", text)
    lowered = text.lower()
    for label in labels:
        if re.search(rf"\b{re.escape(label.lower())}\b", lowered):
            return label
    return labels[zlib.crc32(text.encode("utf-8")) % len(labels)]


def _tool_calls(
    body: Mapping[str, Any], marker: str | None, request_no: int
) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    name: str | None = marker
    if choice == "none":
        return None
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if isinstance(function, Mapping) and function.get("name"):
            name = str(function["name"])
    elif choice == "required" and name is None:
        name = _tool_name(tools[0])
    if name is None:
        return None
    parameters: Any = {}
    for spec in tools:
        if _tool_name(spec) == name:
            function = spec.get("function") if isinstance(spec, Mapping) else None
            if isinstance(function, Mapping):
                parameters = function.get("parameters") or {}
            break
    arguments = instance_of(parameters) if parameters else {}
    return [
        {
            "id": f"call_{request_no:08d}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
    ]


def _tool_name(spec: Any) -> str | None:
    if isinstance(spec, Mapping):
        function = spec.get("function")
        if isinstance(function, Mapping) and function.get("name"):
            return str(function["name"])
    return None


def _usage(reply: Reply, n: int) -> dict[str, int]:
    completion = reply.completion_tokens * n
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
    }


def completion_body(
    reply: Reply, model: str, completion_id: str, created: int, n: int, *, usage: bool = True
) -> bytes:
    """The JSON body of a non-streamed ``chat.completion`` (without ``usage`` if not ``usage``)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls is not None:
        message["tool_calls"] = reply.tool_calls
    choices = [
        {"index": i, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        for i in range(n)
    ]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if usage:
        body["usage"] = _usage(reply, n)
    return json.dumps(body).encode()


def stream_events(
    reply: Reply,
    model: str,
    completion_id: str,
    created: int,
    n: int,
    include_usage: bool,
    chunk_chars: int,
) -> list[bytes]:
    """The server-sent events of a streamed reply, ending with ``data: [DONE]``."""
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    def delta(index: int, content: dict[str, Any], finish: str | None = None) -> bytes:
        return event(
            [{"index": index, "delta": content, "logprobs": None, "finish_reason": finish}]
        )

    events: list[bytes] = []
    for index in range(n):
        if reply.tool_calls is not None:
            events.append(delta(index, {"role": "assistant", "content": None}))
            for position, call in enumerate(reply.tool_calls):
                head = {
                    "index": position,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                events.append(delta(index, {"tool_calls": [head]}))
                arguments = {"arguments": call["function"]["arguments"]}
                events.append(
                    delta(index, {"tool_calls": [{"index": position, "function": arguments}]})
                )
        else:
            events.append(delta(index, {"role": "assistant", "content": ""}))
            text = reply.content or ""
            for start in range(0, len(text), chunk_chars):
                events.append(delta(index, {"content": text[start : start + chunk_chars]}))
        events.append(delta(index, {}, reply.finish_reason))
    if include_usage:
        events.append(event([], usage=_usage(reply, n)))
    events.append(b"data: [DONE]\n\n")
    return events
