"""A continuously refilled token bucket that makes up for late sends.

A paced sender is woken by a timer of a busy event loop, so it sends a little after
the bucket could have let it. A bucket that holds exactly one request loses that
delay on every send (a loop busy 1 ms at a time ran 1,200 RPM at 95%); this one
keeps :data:`LATE_SECONDS` of refill beyond one request, so the next send makes it up.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = ["BURST_SECONDS", "LATE_SECONDS", "MIN_RATE", "Bucket", "server_level"]

BURST_SECONDS = 0.05
"""A bucket holds this many seconds of refill until the server says what it allows: small,
because a provider may allow little burst and our sends reach it with some jitter."""
LATE_SECONDS = 0.02
"""Lateness a bucket makes up: it holds one request plus this many seconds of refill."""
MIN_RATE = {"requests": 1.0, "tokens": 100.0}
"""Lowest rate (per minute) a bucket is set to."""


class Bucket:
    """A continuously refilled token bucket (units per minute; ``rate=None`` means unlimited)."""

    __slots__ = ("burst", "level", "name", "rate", "stamp")

    def __init__(self, name: str, rate: float | None, now: float) -> None:
        self.name = name
        self.rate = rate
        self.burst = BURST_SECONDS
        """Seconds of refill the bucket holds (at least one request and the lateness)."""
        self.level = self.capacity
        self.stamp = now

    @property
    def capacity(self) -> float:
        """What the bucket holds when full."""
        if self.rate is None:
            return math.inf
        per_second = self.rate / 60.0
        return max(1.0 + per_second * LATE_SECONDS, per_second * self.burst)

    def refill(self, now: float) -> None:
        """Add what accrued since the last call."""
        if self.rate is not None and self.level < self.capacity:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate / 60.0)
        self.stamp = max(self.stamp, now)

    def delay(self, amount: float) -> float:
        """Seconds until ``amount`` fits (0 if it does now); a request larger than the
        bucket goes once it is full and leaves it in debt."""
        if self.rate is None:
            return 0.0
        missing = min(amount, self.capacity) - self.level
        return missing * 60.0 / self.rate if missing > 0 else 0.0

    def give_back(self, amount: float) -> None:
        """Return ``amount`` (a refund), never above capacity."""
        self.level = min(self.capacity, self.level + amount)

    def hold(self, amount: float, seconds: float, now: float) -> None:
        """Empty the bucket so that ``amount`` fits again only after ``seconds`` (a 429's
        pause), and no burst goes when it ends."""
        if self.rate is None:
            return
        self.refill(now)
        self.level = min(self.level, min(amount, self.capacity) - seconds * self.rate / 60.0)

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate, keeping what the bucket holds within the new capacity (a request
        bucket that was unlimited starts with one request: no burst before the pace is set)."""
        self.refill(now)
        if rate is not None:
            rate = max(MIN_RATE[self.name], rate)
        self.rate = rate
        if math.isinf(self.level):
            self.level = min(1.0, self.capacity) if self.name == "requests" else self.capacity
        else:
            self.level = min(self.level, self.capacity)


def server_level(
    remaining: float,
    burst: float,
    per_second: float,
    sent_at: float,
    sends: Sequence[float],
    now: float,
) -> float:
    """What the server's bucket holds at ``now``: it held ``remaining`` when the request sent
    at ``sent_at`` reached it, holds at most ``burst``, refills ``per_second`` and took one
    for each of ``sends`` (our send times, oldest first) after ``sent_at``."""
    level = min(remaining, burst)
    stamp = sent_at
    start = bisect.bisect_right(sends, sent_at)
    for index in range(start, len(sends)):
        sent = sends[index]
        level = min(burst, level + (sent - stamp) * per_second) - 1.0
        stamp = sent
    return min(burst, level + max(0.0, now - stamp) * per_second)
