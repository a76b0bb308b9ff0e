"""One request to a resource under the LLM rules: budget hold, limiter permit, retries.

:class:`ResourceCaller` is what embedding and rerank calls go through. A request
function sends one HTTP request and returns the reply and its headers, raising
:class:`HTTPFailure` for an error status; the caller classifies failures like
chat completions (see :mod:`hush.providers.client`): 408/409/429 and 5xx,
timeouts, connection errors and malformed replies are retried (``Retry-After``,
else backoff with jitter), a ``Retry-After`` beyond ``max_retry_wait`` and other
4xx fail at once, and what the attempt held (budget hold, permit) ends in one
``finally``/``with`` each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx2
import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from hush.core.redaction import redact
from hush.providers.errors import LLMCallError
from hush.providers.headers import parse_retry_after
from hush.providers.limiter import Permit, ResourceLimiter, get_limiter
from hush.providers.pricing import Price, price_of
from hush.providers.resources import LLMResource
from hush.providers.retrying import AttemptFailed, RetryWait
from hush.providers.spend import RunSpend

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429})
CONNECT_SHARE = 0.9
"""Share of the timeout within which the connection must be made (else: unreachable)."""

T = TypeVar("T")
Usage = dict[str, int]


class HTTPFailure(Exception):
    """An error status from the server, with its headers and message."""

    def __init__(
        self, status: int, headers: Mapping[str, str], message: str, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.message = message
        self.code = code


class MalformedReply(Exception):
    """The reply came but cannot be read."""


@dataclass(slots=True)
class Sent(Generic[T]):
    """One answered request: the reply, its usage and cost, and how it went."""

    reply: T
    usage: Usage
    cost: float | None
    attempts: int
    latency_s: float
    queued_s: float


Request = Callable[[float], Awaitable[tuple[T, Mapping[str, str]]]]
"""Sends one request within the given timeout (seconds); returns the reply and headers."""


class ResourceCaller:
    """Requests to one resource through its process-wide limiter, budget and retries."""

    def __init__(self, key: str, resource: LLMResource) -> None:
        self.key = key
        self.resource = resource
        self.limiter: ResourceLimiter = get_limiter(key, resource)
        self.price: Price | None = price_of(resource)

    async def send(
        self,
        request: Request[T],
        usage_of: Callable[[T], Usage],
        *,
        tokens: int,
        attempts: int | None = None,
        timeout: float | None = None,
        spend: RunSpend | None = None,
    ) -> Sent[T]:
        """Send ``request`` (``tokens``: its estimated input tokens) until it is answered or
        fails for good (:class:`LLMCallError`); ``usage_of`` reads a reply's usage."""
        limit = attempts if attempts is not None else self.resource.max_retries + 1
        per_request = timeout if timeout is not None else self.resource.timeout
        started = time.monotonic()
        queued = [0.0]
        sent = 0

        async def attempt() -> Sent[T]:
            nonlocal sent
            sent += 1
            reply, usage, cost = await self._attempt(
                request, usage_of, tokens, per_request, spend, queued
            )
            latency = max(0.0, time.monotonic() - started - queued[0])
            return Sent(reply, usage, cost, sent, latency, queued[0])

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
        logger.debug("%s: attempt %d failed (%s); retrying", self.key, state.attempt_number, error)

    async def _attempt(
        self,
        request: Request[T],
        usage_of: Callable[[T], Usage],
        tokens: int,
        timeout: float,
        spend: RunSpend | None,
        queued: list[float],
    ) -> tuple[T, Usage, float | None]:
        waiting_since = time.monotonic()
        waiting = True
        hold = None
        usage: Usage | None = None
        cost: float | None = None
        try:
            if spend is not None:
                hold = await spend.reserve(self.key, self.price, tokens, 0)
            permit = await self.limiter.acquire(tokens)
            queued[0] += time.monotonic() - waiting_since
            waiting = False
            with permit:
                reply, headers = await self._request(permit, request, timeout)
                try:
                    usage = usage_of(reply)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    permit.failed(headers)
                    raise AttemptFailed(f"malformed reply body: {exc}", retryable=True) from exc
                cost = None if self.price is None else self.price.usage_cost(usage)
                permit.commit(usage.get("total_tokens") or tokens, headers)
                return reply, usage, cost
        finally:
            if waiting:
                queued[0] += time.monotonic() - waiting_since
            if hold is not None:
                hold.settle(usage, cost)

    async def _request(
        self, permit: Permit, request: Request[T], timeout: float
    ) -> tuple[T, Mapping[str, str]]:
        try:
            async with asyncio.timeout(timeout):
                return await request(timeout)
        except HTTPFailure as exc:
            raise self._status_failure(permit, exc) from exc
        except (openai.APITimeoutError, httpx2.TimeoutException, TimeoutError) as exc:
            cause = exc.__cause__ if isinstance(exc, openai.APITimeoutError) else exc
            if isinstance(cause, httpx2.ConnectTimeout):
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
            permit.failed(unreachable=reason)
            raise AttemptFailed(
                f"cannot connect to {self.resource.base_url}: {reason}", retryable=True
            ) from exc
        except (MalformedReply, openai.APIResponseValidationError, ValueError) as exc:
            permit.failed()
            raise AttemptFailed(
                f"malformed reply body: {redact(str(exc))[:200]}", retryable=True
            ) from exc

    def _status_failure(self, permit: Permit, exc: HTTPFailure) -> AttemptFailed:
        status, headers = exc.status, exc.headers
        retry_after = parse_retry_after(headers)
        retryable = (
            (status in RETRYABLE_STATUS or status >= 500)
            and headers.get("x-should-retry") != "false"
            and exc.code != "insufficient_quota"
        )
        message = f"HTTP {status}: {redact(exc.message)}"
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
        return AttemptFailed(
            message,
            status_code=status,
            retryable=retryable,
            retry_after=retry_after if retryable else None,
        )


def http_timeout(timeout: float) -> httpx2.Timeout:
    """A request timeout whose connection share is :data:`CONNECT_SHARE`."""
    return httpx2.Timeout(timeout, connect=timeout * CONNECT_SHARE)
