"""One resource's chat completions: the client that composes building, sending and reading.

Each :class:`LLMClient` has one pooled HTTP client and, made on first need, an
:class:`openai.AsyncOpenAI` over it (SDK retries off, see
:mod:`hush.providers.connections`); a plain request goes without the SDK
(:mod:`hush.providers.plain_chat`, the same bytes on the wire). It sends through the resource's request loop
(:class:`~hush.providers.attempts.ResourceCaller`: budget hold, process-wide limiter,
transport retries), the same loop embeddings and rerank use. The parts live apart:

- :mod:`hush.providers.chat_request`: the request body, its token estimate, its cache key;
- :mod:`hush.providers.failures`: what an SDK or HTTP error means (retryable or not,
  ``Retry-After``, the breaker);
- :mod:`hush.providers.streaming`: a streamed reply reassembled, usage estimated when a
  reply reports none.

Clients are owned by a scope (:mod:`hush.providers.client_scope`): a run, an
``async with client_scope()`` block, or else the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2
import pydantic

from hush.core.redaction import register_secret
from hush.providers import plain_chat
from hush.providers.attempts import Estimate, ResourceCaller, Sent
from hush.providers.chat_request import ChatRequest, ResponseFormat, build, charged_tokens
from hush.providers.connections import make_http, make_openai
from hush.providers.failures import (
    FALLBACK_STATUS,
    finish_failure,
    http_timeout,
    mismatch,
    tier_failure,
)
from hush.providers.limiter import ResourceLimiter
from hush.providers.resources import LLMResource
from hush.providers.retrying import AttemptFailed
from hush.providers.spend import RunSpend
from hush.providers.streaming import Stream, TokenCallback, billed_usage, usage_or_estimate

if TYPE_CHECKING:
    import openai

__all__ = ["FALLBACK_STATUS", "Estimate", "LLMClient", "LLMResult", "TokenCallback"]

_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
_USAGE_DETAILS = ("cached_tokens", "reasoning_tokens")


@dataclass(slots=True)
class LLMResult:
    """One chat completion."""

    content: str | None
    usage: dict[str, int]
    """``prompt_tokens``, ``completion_tokens``, ``total_tokens``; ``cached_tokens`` and
    ``reasoning_tokens`` when the server reports them; ``estimated: True`` when the server
    reported no usage and the counts are hush's estimate."""
    model: str
    finish_reason: str | None
    tool_calls: list[dict[str, Any]] | None
    parsed: pydantic.BaseModel | None
    """The reply as the pydantic ``response_format`` model, when one was given."""
    latency_s: float
    """The requests: from the call to the result, across retries and their backoff, less
    :attr:`queued_s`."""
    attempts: int
    resource_key: str
    queued_s: float = 0.0
    """Waiting to send: for the budget, the rate limiter and an in-flight slot (every
    attempt's wait)."""
    first_token_s: float | None = None
    """Streamed calls: from the call to the first token of the reply that was kept."""
    cost: float | None = None
    """USD, from the resource's price; ``None`` when it has none (0 for a cached answer)."""
    cached: bool = False
    """Answered from the response cache: nothing was sent."""
    batch_id: str | None = None
    """Sent through the Batch API: the id of the batch that answered it."""

    def answer(self) -> dict[str, Any]:
        """What the response cache keeps of it."""
        return {
            "content": self.content,
            "usage": self.usage,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "tool_calls": self.tool_calls,
            "parsed": None if self.parsed is None else self.parsed.model_dump(mode="json"),
        }


class LLMClient:
    """Chat completions against one resource, through its shared limiter."""

    def __init__(
        self, key: str, resource: LLMResource, limiter: ResourceLimiter | None = None
    ) -> None:
        self.key = key
        self.resource = resource
        if resource.api_key is not None:
            register_secret(resource.api_key.get_secret_value(), what=f"{key}: api_key")
        for name, value in resource.headers.items():
            register_secret(value.get_secret_value(), what=f"{key}: header {name}")
        self.caller = ResourceCaller(key, resource, limiter)
        self.limiter = self.caller.limiter
        self.price = self.caller.price
        """USD per million tokens, or ``None`` (see :mod:`hush.providers.pricing`)."""
        self._http = make_http(resource)
        self._openai: openai.AsyncOpenAI | None = None

    @property
    def openai(self) -> openai.AsyncOpenAI:
        """The SDK client over this client's pool, made on first use (its own retries are
        off; calls bypass the limiter)."""
        if self._openai is None:
            self._openai = make_openai(self.resource, self._http)
        return self._openai

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        try:
            if self._openai is not None:
                await self._openai.close()
        finally:
            await self._http.aclose()

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        params: Mapping[str, Any] | None = None,
        response_format: ResponseFormat = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
        on_token: TokenCallback | None = None,
        spend: RunSpend | None = None,
    ) -> LLMResult:
        """Send one chat completion, retrying transient failures; raise :class:`LLMCallError`.

        ``attempts`` (requests at most) and ``timeout`` (seconds per request,
        once sent) override the resource's ``max_retries + 1`` and ``timeout``.
        With ``on_token`` the reply is streamed (usage requested in the stream)
        and each piece of content is passed to it as it arrives; a retried
        attempt streams again from its start. With ``spend``, each request is
        reserved against the run's budget first and counted once answered.
        """
        request = build(self.resource, messages, params, response_format, tools)
        estimate = request.estimate()
        stream = None if on_token is None else Stream(on_token, time.monotonic())

        async def send(seconds: float, attempt: int) -> tuple[Any, httpx2.Headers]:
            return await self._send(request, seconds, attempt, stream)

        def read(completion: Any) -> tuple[dict[str, int], int]:
            usage = usage_or_estimate(completion, estimate)
            _check(completion, request.model_type, usage)
            return usage, charged_tokens(usage, request.body)

        sent = await self.caller.send(
            send,
            read,
            estimate,
            attempts=attempts,
            timeout=timeout,
            spend=spend,
            delivered=None if stream is None else lambda: stream.pieces,
        )
        result = self._result(sent, request.model_type)
        if stream is not None:
            result.first_token_s = stream.first_token_s
        return result

    async def _send(
        self, request: ChatRequest, seconds: float, attempt: int, stream: Stream | None
    ) -> tuple[Any, httpx2.Headers]:
        """One request; a failure the SDK names is mapped here only when it is chat's own
        (the rest is classified by the request loop)."""
        body, model_type = request.body, request.model_type
        if stream is None and model_type is None and plain_chat.is_plain(self.resource, body):
            return await plain_chat.send(self._http, self.resource, body, seconds)
        import openai

        completions = self.openai.chat.completions.with_raw_response
        limits = http_timeout(seconds)
        try:
            if stream is not None:
                stream.begin(attempt)
                raw: Any = await completions.create(
                    **body, stream=True, stream_options={"include_usage": True}, timeout=limits
                )
                return await stream.collect(raw.parse()), raw.headers
            if model_type is not None:
                raw = await completions.parse(**body, timeout=limits)
            else:
                raw = await completions.create(**body, timeout=limits)
            return raw.parse(), raw.headers
        except openai.APIStatusError as exc:
            failure = tier_failure(body, exc, self.resource)
            if failure is None:
                raise
            raise failure from exc
        except pydantic.ValidationError as exc:
            if model_type is None:
                raise
            raise AttemptFailed(mismatch(model_type, exc), retryable=False) from exc
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
            usage = billed_usage(getattr(exc, "completion", None))
            raise finish_failure(exc, model_type, usage) from exc

    def _result(self, sent: Sent[Any], model_type: type[pydantic.BaseModel] | None) -> LLMResult:
        completion = sent.reply
        choice = completion.choices[0]
        message = choice.message
        return LLMResult(
            content=message.content,
            usage=sent.usage,
            model=str(completion.model),
            finish_reason=choice.finish_reason,
            tool_calls=[_tool_call(c) for c in message.tool_calls] if message.tool_calls else None,
            parsed=message.parsed if model_type is not None else None,
            latency_s=sent.latency_s,
            queued_s=sent.queued_s,
            attempts=sent.attempts,
            resource_key=self.key,
            cost=sent.cost,
        )

    def request_key(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any] | None,
        response_format: ResponseFormat,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[str, type[pydantic.BaseModel] | None]:
        """The response-cache key of this request to this resource, and the pydantic model
        its reply is parsed into (from ``response_format``, given or in ``params``)."""
        request = build(self.resource, messages, params, response_format, tools)
        return request.cache_key(), request.model_type

    def cached_result(
        self, answer: Mapping[str, Any], model_type: type[pydantic.BaseModel] | None
    ) -> LLMResult | None:
        """A stored answer as this resource's result (``None`` if it no longer fits)."""
        parsed = None
        try:
            if model_type is not None:
                parsed = model_type.model_validate(answer["parsed"])
            stored = answer["usage"]
            usage = {k: int(stored[k]) for k in _USAGE_KEYS}
            usage.update({k: int(stored[k]) for k in _USAGE_DETAILS if k in stored})
            if stored.get("estimated"):
                usage["estimated"] = True
            return LLMResult(
                content=answer.get("content"),
                usage=usage,
                model=str(answer.get("model") or self.resource.model),
                finish_reason=answer.get("finish_reason"),
                tool_calls=answer.get("tool_calls"),
                parsed=parsed,
                latency_s=0.0,
                attempts=0,
                resource_key=self.key,
                cost=0.0,
                cached=True,
            )
        except (KeyError, TypeError, ValueError, pydantic.ValidationError):
            return None

    def __repr__(self) -> str:
        return f"LLMClient({self.key!r}, model={self.resource.model!r}, base_url={self.resource.base_url!r})"


def _check(
    completion: Any, model_type: type[pydantic.BaseModel] | None, usage: dict[str, int]
) -> None:
    """A reply with no choices is malformed (retried); one that does not parse into
    ``model_type`` fails the call (its ``usage`` is still billed)."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise AttemptFailed("malformed reply body: no choices", retryable=True, usage=usage)
    if model_type is not None:
        message = choices[0].message
        if not isinstance(getattr(message, "parsed", None), model_type):
            refusal = getattr(message, "refusal", None)
            why = f"the model refused: {refusal}" if refusal else "the reply was empty"
            raise AttemptFailed(
                f"reply did not match {model_type.__name__}: {why}", retryable=False, usage=usage
            )


def _tool_call(call: Any) -> dict[str, Any]:
    data: dict[str, Any] = call.model_dump(mode="json", exclude_none=True)
    function = data.get("function")
    if isinstance(function, dict):
        function.pop("parsed_arguments", None)
    return data
