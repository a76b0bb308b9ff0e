"""Requests-per-minute and tokens-per-minute limits as continuously refilled token buckets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def format_reset(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do (``"120ms"``, ``"6m0s"``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes < 1:
        return text
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{text}"


class TokenBucket:
    """Holds up to ``capacity`` units, refilled at ``limit / 60`` units per second.

    A request costing more than the capacity is admitted once the bucket is full and
    leaves it in debt, so large requests are slowed rather than refused forever.
    """

    __slots__ = ("burst_seconds", "capacity", "level", "limit", "rate", "stamp")

    def __init__(self, limit: int, burst_seconds: float, now: float) -> None:
        self.limit = limit
        self.burst_seconds = burst_seconds
        self.rate = limit / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add what accrued since the last call."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` can be admitted (0 if it can be now)."""
        missing = min(cost, self.capacity) - self.level
        return missing / self.rate if missing > 0 else 0.0

    def reset_in(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.rate)

    def remaining(self) -> int:
        """Whole units available now."""
        return max(0, int(self.level))


@dataclass(slots=True)
class Decision:
    """Outcome of a rate-limit check."""

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float = 0.0
    reason: str = ""
    too_large: bool = False


class RateLimiter:
    """Checks requests against optional RPM and TPM buckets and builds ``x-ratelimit-*`` headers."""

    def __init__(self) -> None:
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None

    def reset(self) -> None:
        """Forget all usage (buckets start full)."""
        self._requests = None
        self._tokens = None

    def _bucket(
        self, bucket: TokenBucket | None, limit: int | None, burst: float, now: float
    ) -> TokenBucket | None:
        if limit is None:
            return None
        if bucket is None or bucket.limit != limit or bucket.burst_seconds != burst:
            return TokenBucket(limit, burst, now)
        bucket.refill(now)
        return bucket

    def check(
        self, rpm: int | None, tpm: int | None, burst: float, tokens: int, now: float
    ) -> Decision:
        """Admit (and charge) one request costing ``tokens``, or say how long to wait."""
        requests = self._requests = self._bucket(self._requests, rpm, burst, now)
        token_bucket = self._tokens = self._bucket(self._tokens, tpm, burst, now)
        if requests is None and token_bucket is None:
            return Decision(True)
        if token_bucket is not None and tokens > token_bucket.limit:
            return Decision(
                False,
                _headers(requests, token_bucket),
                reason=(
                    f"Request too large on tokens per min (TPM): Limit {token_bucket.limit}, "
                    f"Requested {tokens}. The input or output tokens must be reduced."
                ),
                too_large=True,
            )
        wait_requests = requests.wait_for(1) if requests is not None else 0.0
        wait_tokens = token_bucket.wait_for(tokens) if token_bucket is not None else 0.0
        if wait_requests > 0 or wait_tokens > 0:
            reason = "Rate limit reached."
            if requests is not None and wait_requests >= wait_tokens:
                reason = (
                    f"Rate limit reached on requests per min (RPM): Limit {requests.limit}, "
                    f"Remaining {requests.remaining()}, Requested 1."
                )
            elif token_bucket is not None:
                reason = (
                    f"Rate limit reached on tokens per min (TPM): Limit {token_bucket.limit}, "
                    f"Remaining {token_bucket.remaining()}, Requested {tokens}."
                )
            retry_after = max(wait_requests, wait_tokens)
            reason += f" Please try again in {format_reset(retry_after)}."
            return Decision(False, _headers(requests, token_bucket), retry_after, reason)
        if requests is not None:
            requests.level -= 1
        if token_bucket is not None:
            token_bucket.level -= tokens
        return Decision(True, _headers(requests, token_bucket))


def _headers(requests: TokenBucket | None, tokens: TokenBucket | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests.limit)
        headers["x-ratelimit-remaining-requests"] = str(requests.remaining())
        headers["x-ratelimit-reset-requests"] = format_reset(requests.reset_in())
    if tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(tokens.limit)
        headers["x-ratelimit-remaining-tokens"] = str(tokens.remaining())
        headers["x-ratelimit-reset-tokens"] = format_reset(tokens.reset_in())
    return headers
