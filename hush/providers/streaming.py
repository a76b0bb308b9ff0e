"""Streaming and usage: a streamed reply reassembled, and the usage of replies that say none.

A streamed reply's content pieces are passed on as they arrive and the whole completion
is rebuilt from its chunks. A reply that stops before its ``finish_reason`` (the
connection cut, or closed early) or that carries an error event fails the attempt with
what happened; :attr:`Stream.pieces` says whether content was already passed on (then
the call is not retried: the consumer holds part of a reply that will not be finished).

A reply without usage (many servers ignore ``stream_options.include_usage``) gets an
estimate from the prompt and the reply's text, marked ``"estimated": True``;
``cached_tokens`` and ``reasoning_tokens`` are kept when the server reports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx2
import pydantic

from hush.core.redaction import redact
from hush.providers.attempts import Estimate
from hush.providers.retrying import AttemptFailed
from hush.providers.tokens import count_text_tokens

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion

__all__ = ["Stream", "TokenCallback", "billed_usage", "usage_or_estimate"]

TokenCallback = Callable[[str, int], object]
"""Receives each piece of a streamed reply's content and the number of the request's
attempt (a retried request streams again from its start)."""


class Stream:
    """Reads the streamed replies of one call, one attempt at a time."""

    __slots__ = ("attempt", "chunks", "first_token_s", "on_token", "pieces", "started")

    def __init__(self, on_token: TokenCallback, started: float) -> None:
        self.on_token = on_token
        self.started = started
        self.attempt = 0
        self.first_token_s: float | None = None
        """From the call to the first token of the attempt being read."""
        self.chunks = 0
        """Chunks received in this attempt."""
        self.pieces = 0
        """Pieces of content passed to ``on_token`` in this attempt."""

    def begin(self, attempt: int) -> None:
        """A new attempt streams from its start."""
        self.attempt = attempt
        self.first_token_s = None
        self.chunks = self.pieces = 0

    async def collect(self, chunks: Any) -> ChatCompletion:
        """Pass each piece of content on; return the whole completion."""
        import openai
        from openai.types.chat import ChatCompletion

        content: list[str] = []
        tools: dict[int, dict[str, Any]] = {}
        usage: dict[str, Any] | None = None
        finish: str | None = None
        head: dict[str, Any] = {"id": "stream", "created": 0, "model": ""}
        try:
            async for chunk in chunks:
                self.chunks += 1
                head = {"id": chunk.id, "created": chunk.created, "model": chunk.model}
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta.content:
                        if self.first_token_s is None:
                            self.first_token_s = time.monotonic() - self.started
                        content.append(delta.content)
                        self.pieces += 1
                        self.on_token(delta.content, self.attempt)
                    for part in delta.tool_calls or ():
                        _merge_tool_delta(tools, part)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
                raise
            cause = exc.__cause__ or exc
            reason = redact(str(cause) or type(cause).__name__)
            raise AttemptFailed(
                f"the streamed reply was cut after {self.chunks} chunk(s): {reason}",
                retryable=True,
            ) from exc
        except openai.APIStatusError:
            raise
        except openai.APIError as exc:
            raise _stream_error(exc, self.chunks) from exc
        if finish is None:
            raise AttemptFailed(
                f"the streamed reply was cut after {self.chunks} chunk(s): it ended without "
                "a finish_reason",
                retryable=True,
            )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(content) if content or not tools else None,
        }
        if tools:
            message["tool_calls"] = [tools[i] for i in sorted(tools)]
        try:
            return ChatCompletion.model_validate(
                {
                    **head,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                    "usage": usage,
                }
            )
        except pydantic.ValidationError as exc:
            raise ValueError(f"malformed streamed reply: {exc.error_count()} problem(s)") from None


def usage_or_estimate(completion: Any, estimate: Estimate) -> dict[str, int]:
    """The reply's usage (with its cached and reasoning tokens when reported), or, when it
    reports none, an estimate from the prompt and the reply's text marked ``estimated``."""
    usage = getattr(completion, "usage", None)
    if usage is None:
        prompt = estimate.prompt
        completion_tokens = sum(
            count_text_tokens(choice.message.content or "")
            + sum(
                count_text_tokens(call.function.name + call.function.arguments)
                for call in choice.message.tool_calls or ()
                if getattr(call, "function", None) is not None
            )
            for choice in getattr(completion, "choices", None) or ()
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "estimated": True,
        }
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion_tokens
    counted = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }
    for details, name in (
        ("prompt_tokens_details", "cached_tokens"),
        ("completion_tokens_details", "reasoning_tokens"),
    ):
        value = getattr(getattr(usage, details, None), name, None)
        if isinstance(value, int):
            counted[name] = value
    return counted


def billed_usage(completion: Any) -> dict[str, int] | None:
    """``prompt_tokens``, ``completion_tokens`` and ``cached_tokens`` of a reply, if it says."""
    usage = getattr(completion, "usage", None)
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "cached_tokens": int(getattr(details, "cached_tokens", 0) or 0),
    }


def _stream_error(exc: openai.APIError, chunks: int) -> AttemptFailed:
    """An error event in a streamed reply: retryable unless it blames the request."""
    body = exc.body if isinstance(exc.body, Mapping) else {}
    kind = body.get("type") or body.get("code") or "error"
    return AttemptFailed(
        f"the server sent an error after {chunks} chunk(s) of the streamed reply "
        f"({kind}): {redact(exc.message)}",
        retryable=kind != "invalid_request_error",
    )


def _merge_tool_delta(tools: dict[int, dict[str, Any]], part: Any) -> None:
    slot = tools.setdefault(
        part.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if part.id:
        slot["id"] = part.id
    if part.function is not None:
        slot["function"]["name"] += part.function.name or ""
        slot["function"]["arguments"] += part.function.arguments or ""
