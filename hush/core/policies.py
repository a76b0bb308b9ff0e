"""Retry and timeout, applied around one node's call in one place."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from hush.core.errors import NodeTimeoutError

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How a node retries: attempts, exponential backoff with jitter, which errors.

    ``retry=3`` on a node is shorthand for ``RetryPolicy(attempts=3)``.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    attempts: int = Field(default=3, ge=1, description="total attempts, the first one included")
    initial: float = Field(default=0.5, ge=0, description="first backoff, seconds")
    max_delay: float = Field(default=30.0, ge=0, description="cap on one backoff, seconds")
    multiplier: float = Field(default=2.0, ge=1, description="backoff growth per attempt")
    jitter: float = Field(default=0.5, ge=0, description="random seconds added to each backoff")
    on: tuple[type[BaseException], ...] = Field(
        default=(Exception,), description="exception types that are retried"
    )

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, type):
            return (value,)
        return tuple(value)

    def backoff(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt: exponential, capped, plus jitter."""
        base = self.initial * self.multiplier ** (state.attempt_number - 1)
        return min(self.max_delay, base) + random.uniform(0, self.jitter)

    @classmethod
    def coerce(cls, value: int | RetryPolicy | dict[str, Any] | None) -> RetryPolicy | None:
        """Accept ``None``, an attempt count, a dict of fields or a policy."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool):
            raise TypeError("retry must be an int, a dict or a RetryPolicy, not a bool")
        if isinstance(value, int):
            return cls(attempts=value)
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(
            f"retry must be an int, a dict or a RetryPolicy, not {type(value).__name__}"
        )


async def _attempt(call: Callable[[], Awaitable[T]], timeout: float | None) -> T:
    if timeout is None:
        return await call()
    try:
        with anyio.fail_after(timeout):
            return await call()
    except TimeoutError as exc:
        if isinstance(exc, NodeTimeoutError):
            raise
        raise NodeTimeoutError(f"timed out after {timeout:g}s") from exc


async def call_with_policy(
    call: Callable[[], Awaitable[T]],
    retry: RetryPolicy | None,
    timeout: float | None,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Run ``call`` with a per-attempt ``timeout`` and the ``retry`` policy."""
    if retry is None or retry.attempts == 1:
        return await _attempt(call, timeout)

    def before_sleep(state: Any) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(state.attempt_number, exc)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retry.attempts),
        wait=retry.backoff,
        retry=retry_if_exception_type(retry.on),
        before_sleep=before_sleep,
        sleep=anyio.sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _attempt(call, timeout)
    raise AssertionError("unreachable: tenacity either returns or reraises")
