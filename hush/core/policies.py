"""Run options of a node: the retry policy and the timeout, validated when the node is made.

The node-attempt lifecycle (:mod:`hush.core.lifecycle`) applies them: an
attempt's timeout starts once the attempt holds its slot, and a failed attempt
is retried only when the policy says the error is retryable. Nodes that talk
to a provider (``LLMNode``) also hand the attempts and the timeout to the
provider's client, which owns transport retries; a call whose transport retries
ran out is never retried again here, so retries never multiply.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hush.core.errors import NodeFailedError, is_retryable


class RetryPolicy(BaseModel):
    """How a node retries: attempts, exponential backoff with jitter, which errors.

    ``retry=3`` on a node is shorthand for ``RetryPolicy(attempts=3)``. An error
    is retried when it is an instance of ``on`` and ``retry_if(error)`` holds;
    the default ``retry_if`` is :func:`hush.core.errors.is_retryable` (hush's own
    deterministic errors and non-retryable provider errors are not retried; a
    timeout and any other exception are). Pass ``retry_if=lambda e: True`` to
    retry everything in ``on``.
    """

    model_config = ConfigDict(
        frozen=True, arbitrary_types_allowed=True, extra="forbid", defer_build=True
    )
    """Built at the first policy made (not at ``import hush``: a run without retries never
    builds it)."""

    attempts: int = Field(default=3, ge=1, description="total attempts, the first one included")
    initial: float = Field(
        default=0.5, ge=0, allow_inf_nan=False, description="first backoff, seconds"
    )
    max_delay: float = Field(
        default=30.0, ge=0, allow_inf_nan=False, description="cap on one backoff, seconds"
    )
    multiplier: float = Field(
        default=2.0, ge=1, allow_inf_nan=False, description="backoff growth per attempt"
    )
    jitter: float = Field(
        default=0.5, ge=0, allow_inf_nan=False, description="random seconds added to each backoff"
    )
    on: tuple[type[BaseException], ...] = Field(
        default=(Exception,), description="exception types that may be retried"
    )
    retry_if: Callable[[BaseException], bool] | None = Field(
        default=None, description="predicate deciding whether an error is retried"
    )

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, type):
            return (value,)
        return tuple(value)

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried under this policy.

        A container fails with ``NodeFailedError``; ``on`` is matched against the
        exception that failed inside it.
        """
        if isinstance(exc, NodeFailedError):
            if not any(exc.error.is_a(kind) for kind in self.on):
                return False
        elif not isinstance(exc, self.on):
            return False
        if getattr(exc, "retries_exhausted", False) is True:
            return False  # retried below already (an LLM call's transport retries)
        predicate = self.retry_if or is_retryable
        return bool(predicate(exc))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        try:
            base = self.initial * self.multiplier ** (attempt - 1)
        except OverflowError:
            base = math.inf
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
            try:
                return cls(**value)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'retry'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
                raise ValueError(problems) from None
        raise TypeError(
            f"retry must be an int, a dict or a RetryPolicy, not {type(value).__name__}"
        )


def check_timeout(value: object) -> float | None:
    """A node's ``timeout``: ``None`` or a finite number of seconds above zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"timeout must be a number of seconds, got {type(value).__name__} {value!r}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"timeout must be > 0 seconds, got {value!r}")
    return float(value)
