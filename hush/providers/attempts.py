"""The one request loop of a resource: budget hold, limiter permit, transport retries.

Chat completions, embeddings and rerank all send through :meth:`ResourceCaller.send`. A
request function sends one HTTP request and returns the reply and its headers; a read
function checks the reply and says what it used. What an attempt raises is classified
by :func:`hush.providers.failures.classify`; the loop retries what is retryable (the
server's ``Retry-After``, else backoff with jitter, up to ``attempts`` requests) and
raises :class:`LLMCallError` with the last failure. This loop is the only owner of
transport retries: the SDK's own are off and the node lifecycle never retries a call
whose retries ran out (``LLMCallError.retries_exhausted``).

What an attempt holds ends in one ``finally``/``with`` each: the budget hold (settled
with what the reply used, or nothing), the limiter permit (its one outcome; "abandoned"
when cancelled) and the time spent waiting to send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from hush.providers.errors import LLMCallError
from hush.providers.failures import MalformedReply, classify
from hush.providers.limiter import ResourceLimiter, get_limiter
from hush.providers.pricing import Price, price_of
from hush.providers.resources import LLMResource
from hush.providers.retrying import AttemptFailed, RetryWait
from hush.providers.spend import RunSpend

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Read", "Request", "ResourceCaller", "Sent", "Usage"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Usage = dict[str, int]

Request = Callable[[float, int], Awaitable[tuple[T, Mapping[str, str]]]]
"""Sends one request within the given timeout (seconds) as the given attempt (from 1);
returns the reply and its headers."""
Read = Callable[[T], tuple[Usage, int]]
"""Checks a reply (raising :class:`AttemptFailed` or ``ValueError`` when it cannot be
used) and returns its usage and the tokens the limiter counts for it."""


@dataclass(slots=True)
class Sent(Generic[T]):
    """One answered request: the reply, its usage and cost, and how it went."""

    reply: T
    usage: Usage
    cost: float | None
    attempts: int
    latency_s: float
    """From the call to the reply, across retries and their backoff, less :attr:`queued_s`."""
    queued_s: float
    """Waiting to send: for the budget, the rate limiter and an in-flight slot."""


@dataclass(slots=True)
class Estimate:
    """A request's tokens before it is sent."""

    prompt: int
    max_tokens: int | None
    """The reply's allowance (``None``: unbounded), for the budget hold."""
    limiter: int
    """Prompt plus reply allowance, as the tokens-per-minute limit counts them."""


class ResourceCaller:
    """Requests to one resource through its process-wide limiter, budget and retries."""

    def __init__(
        self, key: str, resource: LLMResource, limiter: ResourceLimiter | None = None
    ) -> None:
        self.key = key
        self.resource = resource
        self.limiter = limiter if limiter is not None else get_limiter(key, resource)
        self.price: Price | None = price_of(resource)

    async def send(
        self,
        request: Request[T],
        read: Read[T],
        estimate: Estimate,
        *,
        attempts: int | None = None,
        timeout: float | None = None,
        spend: RunSpend | None = None,
        delivered: Callable[[], int] | None = None,
    ) -> Sent[T]:
        """Send ``request`` until it is answered or fails for good (:class:`LLMCallError`).

        ``attempts`` (requests at most) and ``timeout`` (seconds per request, once sent)
        override the resource's ``max_retries + 1`` and ``timeout``. ``delivered`` says how
        much of the reply was already passed on (a stream's pieces): a failure after that
        is not retried, since the consumer holds part of a reply that will not be finished.
        """
        limit = attempts if attempts is not None else self.resource.max_retries + 1
        per_request = timeout if timeout is not None else self.resource.timeout
        started = time.monotonic()
        queued = [0.0]
        sent = 0

        async def attempt() -> Sent[T]:
            nonlocal sent
            sent += 1
            reply, usage, cost = await self._attempt(
                request, read, estimate, per_request, spend, queued, sent, delivered
            )
            latency = max(0.0, time.monotonic() - started - queued[0])
            return Sent(reply, usage, cost, sent, latency, queued[0])

        try:
            try:
                return await attempt()
            except AttemptFailed as failure:
                if not (failure.retryable and limit > 1):
                    raise
                return await self._retry(attempt, failure, limit)
        except AttemptFailed as failure:
            suffix = f" (after {sent} attempts)" if sent > 1 else ""
            raise LLMCallError(
                f"{self.key}: {failure.message}{suffix}",
                status_code=failure.status_code,
                resource_key=self.key,
                retryable=failure.retryable,
                attempts=sent,
                retries_exhausted=failure.retryable,
            ) from failure.__cause__

    async def _retry(
        self, attempt: Callable[[], Awaitable[T]], first: AttemptFailed, limit: int
    ) -> T:
        """Attempts 2 to ``limit`` under ``tenacity`` (imported at a call's first retryable
        failure, not before the first request), attempt 1 being ``first``."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        failed: list[AttemptFailed] = [first]

        async def again() -> T:
            if failed:
                raise failed.pop()
            return await attempt()

        retrying = AsyncRetrying(
            stop=stop_after_attempt(limit),
            wait=RetryWait(self.resource.backoff_base, self.resource.backoff_max),
            retry=retry_if_exception(lambda e: isinstance(e, AttemptFailed) and e.retryable),
            before_sleep=self._before_retry,
            reraise=True,
        )
        return await retrying(again)

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

    async def _attempt(
        self,
        request: Request[T],
        read: Read[T],
        estimate: Estimate,
        timeout: float,
        spend: RunSpend | None,
        queued: list[float],
        number: int,
        delivered: Callable[[], int] | None,
    ) -> tuple[T, Usage, float | None]:
        waiting_since = time.monotonic()
        waiting = True
        hold = None
        usage: Usage | None = None
        """What the provider billed this attempt, once a reply came (even one that fails)."""
        try:
            if spend is not None:
                hold = await spend.reserve(
                    self.key, self.price, estimate.prompt, estimate.max_tokens
                )
            permit = await self.limiter.acquire(estimate.limiter)
            queued[0] += time.monotonic() - waiting_since
            waiting = False
            with permit:
                headers: Mapping[str, str] | None = None
                try:
                    async with asyncio.timeout(timeout):
                        reply, headers = await request(timeout, number)
                    try:
                        usage, charged = read(reply)
                    except (KeyError, TypeError, AttributeError) as exc:
                        raise MalformedReply(str(exc)) from exc
                except Exception as exc:
                    failure = classify(exc, self.resource, timeout)
                    if failure is None:
                        raise
                    if failure.headers is None:
                        failure.headers = headers
                    if failure.usage is not None:
                        usage = failure.usage
                    pieces = delivered() if delivered is not None else 0
                    if pieces:
                        failure.final(
                            f"{pieces} piece(s) of the reply were already streamed, "
                            "so it is not retried"
                        )
                    failure.report(permit)
                    if failure is exc:
                        raise
                    raise failure from exc
                permit.commit(charged or estimate.limiter, headers)
                return reply, usage, self._cost(usage)
        finally:
            if waiting:
                queued[0] += time.monotonic() - waiting_since
            if hold is not None:
                hold.settle(usage, self._cost(usage))

    def _cost(self, usage: Usage | None) -> float | None:
        if usage is None or self.price is None:
            return None
        return self.price.usage_cost(usage)
