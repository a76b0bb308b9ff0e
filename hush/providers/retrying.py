"""What the provider's retry loop knows of one failed attempt, and how long it waits.

Shared by chat completions (:mod:`hush.providers.client`) and the embedding and
rerank requests (:mod:`hush.providers.attempts`): one classification, one wait.
"""

from __future__ import annotations

import random

from tenacity import RetryCallState
from tenacity.wait import wait_base


class AttemptFailed(Exception):
    """One failed attempt, classified for the retry policy."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool,
        retry_after: float | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.usage = usage
        """Tokens the provider billed for a reply that came but could not be used."""
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after


class RetryWait(wait_base):
    """``Retry-After`` when the server sent one, else exponential backoff with jitter."""

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
