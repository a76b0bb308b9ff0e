"""Errors raised by resources and LLM calls."""

from __future__ import annotations

from collections.abc import Sequence


class ResourceError(ValueError):
    """A resource is unknown, or its configuration is missing, unreadable or invalid."""


class LLMCallError(RuntimeError):
    """An LLM call failed for good (after the engine's retries, when they apply).

    Attributes:
        status_code: HTTP status of the last failed attempt, or ``None`` (timeout,
            connection error, malformed or non-matching reply).
        resource_key: The resource that failed (``None`` when several did).
        retryable: The failure is transient (429, 5xx, timeout, connection, malformed
            body): the same request may succeed later or elsewhere.
        attempts: Requests sent for this call.
        failures: For a fallback chain, each resource's own error, in order.
        retries_exhausted: The client retried this transient failure as often as it was
            allowed (``retry=N`` on the node, else the resource's ``max_retries``): a node's
            retry policy never retries it again (see "Who retries what" in the LLM docs).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        resource_key: str | None = None,
        retryable: bool = False,
        attempts: int = 0,
        failures: Sequence[LLMCallError] = (),
        retries_exhausted: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.resource_key = resource_key
        self.retryable = retryable
        self.attempts = attempts
        self.failures = tuple(failures)
        self.retries_exhausted = retries_exhausted


class ResourceUnavailableError(LLMCallError):
    """A call failed without being sent: the resource cannot be reached (its circuit
    breaker is open) or its server asked to come back later than ``max_retry_wait``.

    Not retryable within the run; the work runs again when the run is resumed.
    """

    def __init__(self, message: str, *, resource_key: str, unreachable: bool = False) -> None:
        super().__init__(message, resource_key=resource_key, retryable=False, attempts=0)
        self.unreachable = unreachable
        """The resource could not be connected to (else it asked to wait)."""


class BudgetExceededError(LLMCallError):
    """A call was not sent: it does not fit in what is left of the run's ``max_cost`` or
    ``max_total_tokens``. Run again (same ``run_id`` and checkpoint) with a larger budget to
    continue; finished calls are not asked again."""

    def __init__(self, message: str, *, resource_key: str) -> None:
        super().__init__(message, resource_key=resource_key, retryable=False, attempts=0)
