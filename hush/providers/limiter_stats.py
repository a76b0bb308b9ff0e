"""A snapshot of one resource's limiter: its rates and limits now, and what it counted."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LimiterStats"]


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A snapshot of one resource's limiter (rates per minute; ``None`` = not paced)."""

    key: str
    rpm: float | None
    tpm: float | None
    rpm_limit: float | None
    tpm_limit: float | None
    max_in_flight: int
    max_concurrency: int
    """The old name of ``max_in_flight`` (the same number), kept for one release."""
    in_flight: int
    waiting: int
    sent: int
    ok: int
    rate_limited: int
    retries: int
    errors: int
    tokens_used: int
    """Tokens committed by successful requests (what counted against the TPM limit)."""
    wait_time_s: float
    paused_for_s: float
