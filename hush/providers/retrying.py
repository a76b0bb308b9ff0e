"""What the transport retry loop knows of one failed attempt, and how long it waits.

One loop (:meth:`hush.providers.attempts.ResourceCaller.send`) retries the requests of
chat completions, embeddings and rerank; :mod:`hush.providers.failures` classifies what
an attempt raised into an :class:`AttemptFailed`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from hush.providers.permits import Permit


class AttemptFailed(Exception):
    """One failed attempt, classified for the retry loop and the limiter's permit."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool,
        retry_after: float | None = None,
        usage: dict[str, int] | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limited: bool = False,
        asked_wait: float | None = None,
        unreachable: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after
        """Seconds the loop waits before the next attempt (``None``: its own backoff)."""
        self.usage = usage
        """Tokens the provider billed for a reply that came but could not be used."""
        self.headers = headers
        self.rate_limited = rate_limited
        """A 429 to retry: the limiter pauses the resource."""
        self.asked_wait = asked_wait
        """The server's ``Retry-After``, even one too long to wait for."""
        self.unreachable = unreachable
        """Why the resource could not be connected to (the breaker counts it)."""

    def final(self, why: str) -> None:
        """Make this failure the call's last: it is not retried, for the reason ``why``."""
        if self.retryable:
            self.retryable = False
            self.retry_after = None
            self.message += f"; {why}"

    def report(self, permit: Permit) -> None:
        """Tell the permit how the attempt ended (its one outcome)."""
        if self.rate_limited:
            permit.rate_limited(self.headers, self.asked_wait)
        else:
            permit.failed(self.headers, unreachable=self.unreachable)


class RetryWait:
    """``Retry-After`` when the server sent one, else exponential backoff with jitter (a
    ``tenacity`` wait; a plain callable, so that this module does not import ``tenacity``)."""

    def __init__(self, base: float, maximum: float) -> None:
        self.base = base
        self.maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, AttemptFailed) and error.retry_after is not None:
            return error.retry_after
        ceiling = min(self.maximum, self.base * 2.0 ** (retry_state.attempt_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
