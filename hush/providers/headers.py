"""Parse rate-limit response headers: ``Retry-After``, ``retry-after-ms`` and ``x-ratelimit-*``.

A server's numbers are not trusted: a duration that is not finite (``inf``, ``nan``)
or negative is treated as absent, and a finite one is capped at
:data:`MAX_SECONDS`, so no header can make a run wait forever.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = ["MAX_SECONDS", "RateLimitHeaders", "parse_duration", "parse_retry_after"]

MAX_SECONDS = 86_400.0
"""Longest duration read from a header (a day: a spent daily quota says this)."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI duration (``"6m0s"``, ``"1s"``, ``"120ms"``, ``"1h2m3.5s"``) or a
    plain number of seconds; ``None`` when absent or unreadable."""
    if text is None:
        return None
    text = text.strip().lower()
    if not text:
        return None
    try:
        return _bounded(float(text))
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
        position = match.end()
    return _bounded(total) if position == len(text) and position > 0 else None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``Retry-After`` (seconds or HTTP date);
    ``None`` when neither gives a usable duration (absent, unreadable, not finite, negative)."""
    millis = _get(headers, "retry-after-ms")
    if millis is not None:
        try:
            seconds = _bounded(float(millis) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    value = _get(headers, "retry-after")
    if value is None:
        return None
    try:
        return _bounded(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return _bounded(max(0.0, when.timestamp() - time.time()))


def _bounded(seconds: float) -> float | None:
    """``seconds`` capped at :data:`MAX_SECONDS`; ``None`` if not finite or negative."""
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_SECONDS)


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """What ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` say (``None`` if absent)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        """Read the headers (names are case-insensitive)."""
        return cls(
            limit_requests=_int(_get(headers, "x-ratelimit-limit-requests")),
            remaining_requests=_int(_get(headers, "x-ratelimit-remaining-requests")),
            reset_requests=parse_duration(_get(headers, "x-ratelimit-reset-requests")),
            limit_tokens=_int(_get(headers, "x-ratelimit-limit-tokens")),
            remaining_tokens=_int(_get(headers, "x-ratelimit-remaining-tokens")),
            reset_tokens=parse_duration(_get(headers, "x-ratelimit-reset-tokens")),
        )


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value >= 0 else None
