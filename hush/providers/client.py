"""One resource's chat completions: an OpenAI client, engine-owned retries, limits, errors.

Each :class:`LLMClient` has one :class:`openai.AsyncOpenAI` (SDK retries off) over one
pooled ``httpx2.AsyncClient`` (the HTTP client this ``openai`` release is built on),
sized to the resource's in-flight cap, and draws on the resource's process-wide
:class:`~hush.providers.limiter.ResourceLimiter`. Clients belong to the event loop
that made them (:mod:`hush.providers.clients` keeps one per resource per loop).

Retries (``max_retries`` after the first attempt, or the ``attempts`` a call asks
for) cover 408/409/429, 5xx, timeouts, connection errors and malformed bodies,
unless the server says ``x-should-retry: false`` or the 429 is an exhausted quota
(``insufficient_quota``). They wait ``Retry-After`` when the server gives one,
else ``backoff_base * 2**n`` (capped at ``backoff_max``) with jitter. A
``Retry-After`` longer than the resource's ``max_retry_wait`` fails the call at
once. Other 4xx fail at once with the server's message; a reply that does not
match a pydantic ``response_format`` fails at once too. A resource that cannot be
connected to trips its breaker (see :mod:`hush.providers.breaker`): calls then
fail at once with "cannot connect". A request that times out waiting for its reply
reached the server: it is retried like a 5xx and never counts toward the breaker
(only a connection that cannot be made within :data:`CONNECT_SHARE` of the timeout
does). Configured secrets never appear in messages.

What a call holds across an await ends in one ``finally`` each: the budget hold
(settled with what the reply used, or nothing), the limiter permit (``with permit``:
its one outcome, "abandoned" when cancelled) and the call's count of in-flight
requests. A streamed reply that is cut or carries an error event fails the attempt
with what happened; it is retried like a dropped connection unless content was
already passed to ``on_token``, in which case the call fails (the consumer has
part of a reply that will not be finished).

Usage: a reply that says none (many servers ignore ``stream_options.include_usage``)
gets an estimate from the prompt and the reply's text, marked ``"estimated": True``,
and the budget and the limiter are settled with it. ``cached_tokens`` and
``reasoning_tokens`` are kept when the server reports them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pydantic
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from hush.core.redaction import redact, register_secret
from hush.providers.cache import request_key
from hush.providers.errors import LLMCallError
from hush.providers.headers import parse_retry_after
from hush.providers.limiter import (
    DEFAULT_MAX_CONCURRENCY,
    Permit,
    ResourceLimiter,
    get_limiter,
)
from hush.providers.pricing import price_of
from hush.providers.resources import LLMResource
from hush.providers.retrying import AttemptFailed, RetryWait
from hush.providers.spend import RunSpend
from hush.providers.tokens import (
    DEFAULT_COMPLETION_TOKENS,
    count_text_tokens,
    estimate_prompt_tokens,
)

__all__ = ["LLMClient", "LLMResult"]

logger = logging.getLogger(__name__)

NO_API_KEY = "no-key"
"""Sent when a resource has no ``api_key`` (local servers ignore it)."""
KEEPALIVE_SECONDS = 120.0
CONNECT_SHARE = 0.9
"""Share of a request's timeout within which its connection must be made: a connection
not made by then is a connection failure (for the breaker), not a slow reply."""
RETRYABLE_STATUS = frozenset({408, 409, 429})
TIER_UNAVAILABLE_CODES = frozenset({"resource_unavailable", "capacity_exceeded"})
"""Error codes saying a service tier (flex) has no capacity now (OpenAI, Groq)."""
FALLBACK_STATUS = frozenset({401, 403, 404, 429})
"""Besides retryable failures, statuses that mean this resource (not the request) is unusable
(a 429 that must not be retried is an exhausted quota)."""
_RESERVED_PARAMS = frozenset({"messages", "stream"})
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
_USAGE_DETAILS = ("cached_tokens", "reasoning_tokens")
_SDK_PARAMS = frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self"}


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


@dataclass(slots=True)
class _Timing:
    """When one call started and how long its attempts waited to be sent."""

    started: float
    queued_s: float = 0.0

    def split(self) -> tuple[float, float]:
        """``(latency_s, queued_s)`` as of now."""
        return max(0.0, time.monotonic() - self.started - self.queued_s), self.queued_s


@dataclass(slots=True)
class Estimate:
    """A request's tokens before it is sent."""

    prompt: int
    max_tokens: int | None
    limiter: int
    """Prompt plus reply allowance, as the tokens-per-minute limit counts them."""


class LLMClient:
    """Chat completions against one resource, through its shared limiter."""

    def __init__(
        self, key: str, resource: LLMResource, limiter: ResourceLimiter | None = None
    ) -> None:
        self.key = key
        self.resource = resource
        self.limiter = limiter if limiter is not None else get_limiter(key, resource)
        if resource.api_key is not None:
            register_secret(resource.api_key.get_secret_value(), what=f"{key}: api_key")
        for name, value in resource.headers.items():
            register_secret(value.get_secret_value(), what=f"{key}: header {name}")
        self._openai = make_openai(resource)
        self.price = price_of(resource)
        """USD per million tokens, or ``None`` (see :mod:`hush.providers.pricing`)."""
        self._in_flight = 0
        self._retired = False
        self._closing: asyncio.Task[None] | None = None

    @property
    def openai(self) -> openai.AsyncOpenAI:
        """The underlying SDK client (its own retries are off; calls bypass the limiter)."""
        return self._openai

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._openai.close()

    def retire(self) -> None:
        """No new calls will come (a newer client replaced this one): close once idle."""
        self._retired = True
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self._retired and self._in_flight == 0 and self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.aclose())

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        params: Mapping[str, Any] | None = None,
        response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None = None,
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
        body, model_type = self._body(messages, params, response_format, tools)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        cap = max_tokens if isinstance(max_tokens, int) else None
        prompt = estimate_prompt_tokens(messages, tools=body.get("tools"))
        reply = DEFAULT_COMPLETION_TOKENS if cap is None else max(0, cap)
        estimate = Estimate(prompt, cap, prompt + reply)
        self._in_flight += 1
        try:
            return await self._complete(
                body, model_type, estimate, attempts, timeout, on_token, spend
            )
        finally:
            self._in_flight -= 1
            self._close_if_idle()

    async def _complete(
        self,
        body: dict[str, Any],
        model_type: type[pydantic.BaseModel] | None,
        estimate: Estimate,
        attempts: int | None,
        timeout: float | None,
        on_token: TokenCallback | None,
        spend: RunSpend | None,
    ) -> LLMResult:
        timing = _Timing(time.monotonic())
        limit = attempts if attempts is not None else self.resource.max_retries + 1
        per_request = timeout if timeout is not None else self.resource.timeout
        sent = 0

        async def attempt() -> LLMResult:
            nonlocal sent
            sent += 1
            return await self._attempt(
                body, model_type, estimate, timing, sent, per_request, on_token, spend
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(limit),
            wait=RetryWait(self.resource.backoff_base, self.resource.backoff_max),
            retry=retry_if_exception(lambda e: isinstance(e, AttemptFailed) and e.retryable),
            before_sleep=self._before_retry,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except AttemptFailed as failure:
            suffix = f" (after {sent} attempts)" if sent > 1 else ""
            raise LLMCallError(
                f"{self.key}: {failure.message}{suffix}",
                status_code=failure.status_code,
                resource_key=self.key,
                retryable=failure.retryable,
                attempts=sent,
            ) from failure.__cause__

    def _before_retry(self, state: RetryCallState) -> None:
        self.limiter.note_retry()
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.debug(
            "%s: attempt %d failed (%s); retrying in %.2fs",
            self.key,
            state.attempt_number,
            error,
            wait,
        )

    def _body(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any] | None,
        response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[dict[str, Any], type[pydantic.BaseModel] | None]:
        params = dict(params or {})
        reserved = _RESERVED_PARAMS & params.keys()
        if reserved:
            raise TypeError(f"complete() does not take {', '.join(sorted(reserved))} in params")
        if response_format is None:
            response_format = params.pop("response_format", None)
        else:
            params.pop("response_format", None)
        if tools is not None:
            params["tools"] = list(tools)
        body: dict[str, Any] = {"model": self.resource.model}
        extra_body: dict[str, Any] = dict(params.pop("extra_body", None) or {})
        for name, value in params.items():
            if name in _SDK_PARAMS:
                body[name] = value
            else:
                extra_body[name] = value
        if self.resource.service_tier is not None:
            body.setdefault("service_tier", self.resource.service_tier)
        if extra_body:
            body["extra_body"] = extra_body
        body["messages"] = [dict(m) for m in messages]
        model_type: type[pydantic.BaseModel] | None = None
        if isinstance(response_format, type) and issubclass(response_format, pydantic.BaseModel):
            model_type = response_format
            body["response_format"] = response_format
        elif response_format is not None:
            body["response_format"] = dict(response_format)
        return body, model_type

    async def _attempt(
        self,
        body: dict[str, Any],
        model_type: type[pydantic.BaseModel] | None,
        estimate: Estimate,
        timing: _Timing,
        attempts: int,
        timeout: float,
        on_token: TokenCallback | None,
        spend: RunSpend | None,
    ) -> LLMResult:
        queued_from = time.monotonic()
        waiting = True
        hold = None
        spent: dict[str, int] | None = None
        """What the provider billed this attempt, once a reply came (even one that fails)."""
        cost: float | None = None
        try:
            if spend is not None:
                hold = await spend.reserve(
                    self.key, self.price, estimate.prompt, estimate.max_tokens
                )
            permit = await self.limiter.acquire(estimate.limiter)
            waiting = False
            timing.queued_s += time.monotonic() - queued_from
            with permit:
                stream = None
                if on_token is not None:
                    stream = _Stream(on_token, timing.started, attempts)
                try:
                    completion, headers = await self._send(
                        permit, body, model_type, timeout, stream
                    )
                except AttemptFailed as failure:
                    spent = failure.usage
                    raise
                try:
                    result = self._result(completion, model_type, estimate, timing, attempts)
                except AttemptFailed:
                    spent = _usage_or_estimate(completion, estimate)
                    permit.failed(headers)
                    raise
                if stream is not None:
                    result.first_token_s = stream.first_token_s
                cost, spent = result.cost, result.usage
                permit.commit(_charged_tokens(result.usage, body) or estimate.limiter, headers)
                return result
        finally:
            if waiting:
                timing.queued_s += time.monotonic() - queued_from
            if hold is not None:
                if spent is not None and cost is None and self.price is not None:
                    cost = self.price.usage_cost(spent)
                hold.settle(spent, cost)

    def request_key(
        self,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any] | None,
        response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[str, type[pydantic.BaseModel] | None]:
        """The response-cache key of this request to this resource, and the pydantic model
        its reply is parsed into (from ``response_format``, given or in ``params``)."""
        body, model_type = self._body(messages, params, response_format, tools)
        return request_key(body), model_type

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

    async def _send(
        self,
        permit: Permit,
        body: dict[str, Any],
        model_type: type[pydantic.BaseModel] | None,
        timeout: float,
        stream: _Stream | None,
    ) -> tuple[Any, httpx2.Headers]:
        """One request, its failure classified and reported to ``permit``; a failure after
        streamed content was passed on is never retried."""
        try:
            return await self._request(permit, body, model_type, timeout, stream)
        except AttemptFailed as failure:
            if stream is not None and stream.pieces and failure.retryable:
                failure.retryable = False
                failure.retry_after = None
                failure.message += (
                    f"; {stream.pieces} piece(s) of the reply were already streamed, so it is "
                    "not retried"
                )
            raise

    async def _request(
        self,
        permit: Permit,
        body: dict[str, Any],
        model_type: type[pydantic.BaseModel] | None,
        timeout: float,
        stream: _Stream | None,
    ) -> tuple[Any, httpx2.Headers]:
        completions = self._openai.chat.completions.with_raw_response
        limits = httpx2.Timeout(timeout, connect=timeout * CONNECT_SHARE)
        try:
            async with asyncio.timeout(timeout):
                if stream is not None:
                    raw: Any = await completions.create(
                        **body,
                        stream=True,
                        stream_options={"include_usage": True},
                        timeout=limits,
                    )
                    return await stream.collect(raw.parse()), raw.headers
                if model_type is not None:
                    raw = await completions.parse(**body, timeout=limits)
                else:
                    raw = await completions.create(**body, timeout=limits)
                return raw.parse(), raw.headers
        except AttemptFailed:
            permit.failed()
            raise
        except openai.APIStatusError as exc:
            headers = exc.response.headers
            status = exc.status_code
            retry_after = parse_retry_after(headers)
            retryable = (
                (status in RETRYABLE_STATUS or status >= 500)
                and headers.get("x-should-retry") != "false"
                and exc.code != "insufficient_quota"
            )
            message = f"HTTP {status}: {redact(_server_message(exc))}"
            if self.resource.service_tier_fallback and _tier_unavailable(body, exc):
                tier = body.pop("service_tier")
                permit.failed(headers)
                logger.info(
                    "%s: %s tier capacity unavailable; retrying on the standard tier",
                    self.key,
                    tier,
                )
                raise AttemptFailed(
                    f"{message} (service_tier {tier!r} unavailable; sent again without it)",
                    status_code=status,
                    retryable=True,
                    retry_after=0.0,
                ) from exc
            if status == 429 and retryable:
                permit.rate_limited(headers, retry_after)
            else:
                permit.failed(headers)
            if retryable and retry_after is not None and retry_after > self.resource.max_retry_wait:
                retryable = False
                message = (
                    f"the server asked to retry after {retry_after:.0f} s, more than "
                    f"max_retry_wait ({self.resource.max_retry_wait:g} s): a spent quota? "
                    f"Resume the run later ({message})"
                )
            raise AttemptFailed(
                message,
                status_code=status,
                retryable=retryable,
                retry_after=retry_after if retryable else None,
            ) from exc
        except (openai.APITimeoutError, TimeoutError) as exc:
            if isinstance(exc.__cause__, httpx2.ConnectTimeout):
                reason = f"no connection within {timeout * CONNECT_SHARE:g} s"
                permit.failed(unreachable=reason)
                raise AttemptFailed(
                    f"cannot connect to {self.resource.base_url}: {reason}", retryable=True
                ) from exc
            permit.failed()
            raise AttemptFailed(f"no reply within {timeout:g}s (timeout)", retryable=True) from exc
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            cause = exc.__cause__ or exc
            reason = redact(str(cause) or type(cause).__name__)
            if _responded(exc):
                permit.failed()
                raise AttemptFailed(
                    f"the reply was cut after the server started answering: {reason}",
                    retryable=True,
                ) from exc
            permit.failed(unreachable=reason)
            raise AttemptFailed(
                f"cannot connect to {self.resource.base_url}: {reason}", retryable=True
            ) from exc
        except pydantic.ValidationError as exc:
            permit.failed()
            assert model_type is not None
            raise AttemptFailed(_mismatch(model_type, exc), retryable=False) from exc
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
            permit.failed()
            name = model_type.__name__ if model_type is not None else "the response format"
            why = (
                "it was cut off by the token limit"
                if isinstance(exc, openai.LengthFinishReasonError)
                else "the content filter stopped it"
            )
            raise AttemptFailed(
                f"reply did not match {name}: {why}",
                retryable=False,
                usage=_usage_of(getattr(exc, "completion", None)),
            ) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:
            permit.failed()
            raise AttemptFailed(
                f"malformed reply body: {redact(str(exc))[:200]}", retryable=True
            ) from exc

    def _result(
        self,
        completion: Any,
        model_type: type[pydantic.BaseModel] | None,
        estimate: Estimate,
        timing: _Timing,
        attempts: int,
    ) -> LLMResult:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise AttemptFailed("malformed reply body: no choices", retryable=True)
        choice = choices[0]
        message = choice.message
        parsed: pydantic.BaseModel | None = None
        if model_type is not None:
            parsed = getattr(message, "parsed", None)
            if not isinstance(parsed, model_type):
                refusal = getattr(message, "refusal", None)
                why = f"the model refused: {refusal}" if refusal else "the reply was empty"
                raise AttemptFailed(
                    f"reply did not match {model_type.__name__}: {why}", retryable=False
                )
        usage = _usage_or_estimate(completion, estimate)
        latency, queued = timing.split()
        cached = usage.get("cached_tokens", 0)
        return LLMResult(
            content=message.content,
            usage=usage,
            model=str(completion.model),
            finish_reason=choice.finish_reason,
            tool_calls=[_tool_call(c) for c in message.tool_calls] if message.tool_calls else None,
            parsed=parsed,
            latency_s=latency,
            queued_s=queued,
            attempts=attempts,
            resource_key=self.key,
            cost=None
            if self.price is None
            else self.price.cost(usage["prompt_tokens"], usage["completion_tokens"], cached),
        )

    def __repr__(self) -> str:
        return f"LLMClient({self.key!r}, model={self.resource.model!r}, base_url={self.resource.base_url!r})"


def make_openai(resource: LLMResource) -> openai.AsyncOpenAI:
    """The SDK client of one resource (chat, embeddings): its own pooled HTTP client,
    no SDK retries (hush's retry loop owns them), Azure when ``api_type`` says so."""
    size = resource.max_concurrency or DEFAULT_MAX_CONCURRENCY
    http_client = httpx2.AsyncClient(
        limits=httpx2.Limits(
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        timeout=httpx2.Timeout(resource.timeout),
        follow_redirects=True,
        event_hooks={"response": [_mark_responded]},
    )
    api_key = resource.api_key.get_secret_value() if resource.api_key is not None else NO_API_KEY
    headers = {name: value.get_secret_value() for name, value in resource.headers.items()}
    if resource.api_type == "azure":
        return openai.AsyncAzureOpenAI(
            azure_endpoint=resource.base_url,
            api_version=resource.api_version,
            api_key=api_key,
            max_retries=0,
            timeout=resource.timeout,
            default_headers=headers,
            http_client=http_client,
        )
    return openai.AsyncOpenAI(
        base_url=resource.base_url,
        api_key=api_key,
        max_retries=0,
        timeout=resource.timeout,
        default_headers=headers,
        http_client=http_client,
    )


_RESPONDED = "hush_responded"
"""Set in a request's extensions once its response's headers arrived."""


async def _mark_responded(response: httpx2.Response) -> None:
    """Note on the request that the server answered (a later failure is not an outage)."""
    response.request.extensions[_RESPONDED] = True


def _responded(exc: Exception) -> bool:
    """Whether the request that failed with ``exc`` had got its response's headers."""
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return False
    return bool(getattr(request, "extensions", {}).get(_RESPONDED))


def _tier_unavailable(body: Mapping[str, Any], exc: openai.APIStatusError) -> bool:
    """Whether ``exc`` says the service tier ``body`` asked for (flex) lacks capacity now."""
    if body.get("service_tier") in (None, "auto", "default") or exc.status_code not in (429, 498):
        return False
    text = _server_message(exc).lower()
    return (
        exc.code in TIER_UNAVAILABLE_CODES or "resource unavailable" in text or "capacity" in text
    )


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    try:
        text = exc.response.text.strip()
    except Exception:
        text = ""
    return text[:500] or exc.message


def _usage_or_estimate(completion: Any, estimate: Estimate) -> dict[str, int]:
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


def _usage_of(completion: Any) -> dict[str, int] | None:
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


def _charged_tokens(usage: Mapping[str, int], body: Mapping[str, Any]) -> int:
    """Tokens a provider counts against TPM: the prompt plus the larger of the reply and
    its ``max_tokens`` allowance (OpenAI reserves ``max_tokens`` and does not refund it)."""
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    n = body.get("n")
    allowance = cap * (n if isinstance(n, int) and n > 0 else 1) if isinstance(cap, int) else 0
    return usage["prompt_tokens"] + max(usage["completion_tokens"], allowance)


def _mismatch(model_type: type[pydantic.BaseModel], exc: pydantic.ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(reply)'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
    return f"reply did not match {model_type.__name__}: {problems}"


def _tool_call(call: Any) -> dict[str, Any]:
    data: dict[str, Any] = call.model_dump(mode="json", exclude_none=True)
    function = data.get("function")
    if isinstance(function, dict):
        function.pop("parsed_arguments", None)
    return data


TokenCallback = Callable[[str, int], object]
"""Receives each piece of a streamed reply's content and the number of the request's
attempt (a retried request streams again from its start)."""


class _Stream:
    """Reads one streamed reply: passes content pieces on, rebuilds the whole completion.

    A reply that stops before its ``finish_reason`` (the connection cut, or closed early)
    or that carries an error event fails the attempt with what happened, as an
    :class:`AttemptFailed`; :attr:`pieces` says whether content was already passed on.
    """

    __slots__ = ("attempt", "chunks", "first_token_s", "on_token", "pieces", "started")

    def __init__(self, on_token: TokenCallback, started: float, attempt: int) -> None:
        self.on_token = on_token
        self.started = started
        self.attempt = attempt
        self.first_token_s: float | None = None
        self.chunks = 0
        """Chunks received."""
        self.pieces = 0
        """Pieces of content passed to ``on_token``."""

    async def collect(self, chunks: Any) -> ChatCompletion:
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
