"""One rate limiter per resource, shared by every LLM call in the process.

Each :class:`ResourceLimiter` enforces three limits before a request is sent:

* **requests per minute** and **tokens per minute**, each a continuously refilled
  token bucket. A bucket holds at most :data:`BURST_SECONDS` of refill (at least one
  request): enough to absorb timer jitter, small enough that no window of any length
  sees noticeably more than the rate — providers often enforce a per-minute limit
  over much shorter windows. A request that costs more tokens than the bucket holds
  goes when the bucket is full and leaves it in debt. Tokens are the estimate of
  :mod:`hush.providers.tokens`; :meth:`Permit.commit` refunds or charges the
  difference once the server reports ``usage``.
* **requests in flight** (``max_concurrency``, default :data:`DEFAULT_MAX_CONCURRENCY`).

Waiters are served first come, first served: a request never overtakes an earlier
one, and waiting is a future resolved by a timer, so it blocks nothing else.

The rates adapt (AIMD). ``x-ratelimit-limit-*`` headers teach the real limit (the
ceiling is the lower of it and the configured one); ``x-ratelimit-remaining-*`` caps
what the buckets hold. A 429 pauses the whole resource for ``Retry-After`` (else the
exhausted budget's reset time, at most :data:`MAX_RESET_PAUSE`, else
:data:`DEFAULT_429_PAUSE`) and cuts the rate the headers blame (requests when they
say nothing) by :data:`DECREASE_FACTOR` — :data:`SLOW_START_DECREASE_FACTOR` on the
first 429 of an unknown limit. 429s of requests sent before that cut do not cut
again. While requests are held back by the rate, it then grows back by
:data:`RECOVERY_PER_SECOND` of the ceiling (or of the rate before the cut) per second.
With no configured or advertised limit the request rate starts at :data:`INITIAL_RPM`
and doubles every second the demand is held back (slow start) until a 429 or a header
says where the limit is; tokens are then not limited until a header or a 429 on tokens.

A limiter belongs to one running event loop at a time; on a new loop (a later
``asyncio.run``, a new test) it keeps what it learned and drops what was in flight.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from hush.providers.headers import RateLimitHeaders
from hush.providers.resources import LLMResource

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "LimiterStats",
    "Permit",
    "ResourceLimiter",
    "all_limiters",
    "get_limiter",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 256
"""In-flight cap when a resource sets no ``max_concurrency``."""
BURST_SECONDS = 0.1
"""Bucket capacity, in seconds of refill."""
INITIAL_RPM = 300.0
"""Starting request rate when no limit is configured or advertised."""
SLOW_START_DOUBLING_SECONDS = 1.0
DECREASE_FACTOR = 0.75
SLOW_START_DECREASE_FACTOR = 0.5
RECOVERY_PER_SECOND = 0.05
"""Additive increase per second, as a share of the ceiling (or of the rate at the last cut)."""
THROTTLED_MEMORY_SECONDS = 1.0
"""A rate grows only if it held a request back this recently (demand exceeds it)."""
DEFAULT_429_PAUSE = 1.0
"""Pause after a 429 that carries neither ``Retry-After`` nor an exhausted reset header."""
MAX_RESET_PAUSE = 5.0
"""Longest pause taken from an ``x-ratelimit-reset-*`` header (it says when the budget is
full again, which is longer than needed for the next request)."""
MEASURE_SECONDS = 5.0
"""Window for measuring the sending rate (used to cut a rate that had no limit)."""
_MIN_RATE = {"requests": 1.0, "tokens": 100.0}
_EPSILON = 1e-4


class _Bucket:
    """A token bucket (units per minute) with its AIMD state."""

    def __init__(self, name: str, configured: float | None, initial: float | None, now: float):
        self.name = name
        self.configured = configured
        self.learned: float | None = None
        self.rate: float | None = configured if configured is not None else initial
        self.slow_start = configured is None and initial is not None
        self.level = self.capacity
        self.stamp = now
        self.throttled_at = -math.inf
        self.grown_at = now
        self.cut_rate: float | None = None

    @property
    def ceiling(self) -> float | None:
        known = [v for v in (self.configured, self.learned) if v is not None]
        return min(known) if known else None

    @property
    def capacity(self) -> float:
        if self.rate is None:
            return math.inf
        return max(1.0, self.rate / 60.0 * BURST_SECONDS)

    def refill(self, now: float) -> None:
        if self.rate is not None and self.level < self.capacity:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate / 60.0)
        self.stamp = now

    def delay(self, amount: float) -> float:
        """Seconds until ``amount`` fits (0 if it does now)."""
        if self.rate is None:
            return 0.0
        missing = min(amount, self.capacity) - self.level
        return missing * 60.0 / self.rate if missing > 0 else 0.0

    def set_rate(self, rate: float | None, now: float) -> None:
        self.refill(now)
        if rate is not None:
            rate = max(_MIN_RATE[self.name], rate)
        self.rate = rate
        if rate is not None and math.isinf(self.level):
            self.level = self.capacity

    def learn(self, limit: int, now: float) -> bool:
        """Take an advertised limit; ``True`` if the rate went up."""
        if limit <= 0 or limit == self.learned:
            return False
        self.learned = float(limit)
        ceiling = self.ceiling
        assert ceiling is not None
        if self.rate is None or self.slow_start or self.rate > ceiling:
            raised = self.rate is None or self.rate < ceiling
            self.slow_start = False
            self.set_rate(ceiling, now)
            return raised
        return False

    def sync(self, remaining: int) -> None:
        """The server has at most ``remaining`` left: never hold more."""
        if self.rate is not None:
            self.level = min(self.level, float(remaining))

    def cut(self, now: float, measured: float) -> None:
        base = self.rate if self.rate is not None else measured
        factor = SLOW_START_DECREASE_FACTOR if self.slow_start else DECREASE_FACTOR
        self.cut_rate = base
        self.slow_start = False
        self.set_rate(base * factor, now)
        self.level = min(self.level, self.capacity)
        self.grown_at = now

    def grow(self, now: float) -> None:
        elapsed = min(now - self.grown_at, THROTTLED_MEMORY_SECONDS)
        self.grown_at = now
        if self.rate is None or now - self.throttled_at > THROTTLED_MEMORY_SECONDS:
            return
        ceiling = self.ceiling
        if self.slow_start:
            rate = self.rate * 2.0 ** (elapsed / SLOW_START_DOUBLING_SECONDS)
        else:
            target = ceiling or self.cut_rate or self.rate
            rate = self.rate + target * RECOVERY_PER_SECOND * elapsed
        if ceiling is not None:
            rate = min(rate, ceiling)
        if rate > self.rate:
            self.set_rate(rate, now)


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A snapshot of one resource's limiter (rates per minute; ``None`` = unlimited)."""

    key: str
    rpm: float | None
    tpm: float | None
    rpm_limit: float | None
    tpm_limit: float | None
    max_concurrency: int
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


class Permit:
    """Leave to send one request; release it when the request is over (``with permit:``)."""

    __slots__ = ("_generation", "_limiter", "_released", "sent_at", "tokens", "waited_s")

    def __init__(
        self,
        limiter: ResourceLimiter,
        generation: int,
        tokens: int,
        sent_at: float,
        waited_s: float,
    ) -> None:
        self._limiter = limiter
        self._generation = generation
        self._released = False
        self.tokens = tokens
        """Tokens charged up front (the estimate)."""
        self.sent_at = sent_at
        self.waited_s = waited_s
        """Seconds spent waiting for this permit."""

    def commit(self, actual_tokens: int, headers: Mapping[str, str] | None = None) -> None:
        """The request succeeded and counted ``actual_tokens`` against the limit (the bucket
        is corrected by the difference from the estimate); learn from its headers."""
        self._limiter._on_success(self, actual_tokens, headers)

    def rate_limited(
        self, headers: Mapping[str, str] | None = None, retry_after: float | None = None
    ) -> float:
        """The request got a 429: pause the resource and slow down. Returns the pause."""
        return self._limiter._on_rate_limited(self, headers, retry_after)

    def failed(self, headers: Mapping[str, str] | None = None) -> None:
        """The request failed otherwise (5xx, timeout, connection, malformed reply)."""
        self._limiter._on_failure(headers)

    def release(self) -> None:
        """Free the in-flight slot (idempotent)."""
        if not self._released:
            self._released = True
            self._limiter._release(self._generation)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(eq=False, slots=True)
class _Waiter:
    tokens: int
    future: asyncio.Future[Permit]
    enqueued: float


class ResourceLimiter:
    """Requests/min, tokens/min and in-flight limits for one resource, adapted from the server."""

    def __init__(
        self,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrency: int | None = None,
        learn_from_headers: bool = True,
    ) -> None:
        now = time.monotonic()
        self.key = key
        self.max_concurrency = max_concurrency or DEFAULT_MAX_CONCURRENCY
        self.learn_from_headers = learn_from_headers
        self._requests = _Bucket("requests", rpm, None if rpm else INITIAL_RPM, now)
        self._tokens = _Bucket("tokens", tpm, None, now)
        self._in_flight = 0
        self._paused_until = 0.0
        self._cut_at = -math.inf
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._sent = self._ok = self._rate_limited = self._retries = self._errors = 0
        self._tokens_used = 0
        self._wait_time = 0.0

    @classmethod
    def from_resource(cls, key: str, resource: LLMResource) -> ResourceLimiter:
        """A limiter with the resource's configured limits."""
        return cls(
            key,
            rpm=resource.rpm,
            tpm=resource.tpm,
            max_concurrency=resource.max_concurrency,
            learn_from_headers=resource.rate_limit_headers,
        )

    # ---- acquiring -----------------------------------------------------------------

    async def acquire(self, tokens: int = 0) -> Permit:
        """Wait (first come, first served) until one request of ``tokens`` may be sent."""
        loop = self._bind()
        now = time.monotonic()
        if not self._waiters and self._ready(tokens, now) == 0.0:
            return self._grant(tokens, now, now)
        waiter = _Waiter(tokens, loop.create_future(), now)
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._dispatch()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()
            elif self._timer is None:
                self._dispatch()
            raise

    def note_retry(self) -> None:
        """Count a retry (for :meth:`stats`)."""
        self._retries += 1

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            old = self._loop
            if old is not None and not old.is_closed() and old.is_running():
                raise RuntimeError(
                    f"the rate limiter of {self.key} is in use by another running event loop"
                )
            self._loop = loop
            self._generation += 1
            self._waiters.clear()
            self._timer = None
            self._in_flight = 0
        return loop

    def _ready(self, tokens: int, now: float) -> float | None:
        """0 if a request may go now, else seconds to wait, or ``None`` if the in-flight cap
        holds it (a release will retry)."""
        if now < self._paused_until:
            return self._paused_until - now
        if self._in_flight >= self.max_concurrency:
            return None
        self._requests.refill(now)
        self._tokens.refill(now)
        wait_requests = self._requests.delay(1)
        wait_tokens = self._tokens.delay(tokens)
        if wait_requests > 0:
            self._requests.throttled_at = now
        if wait_tokens > 0:
            self._tokens.throttled_at = now
        wait = max(wait_requests, wait_tokens)
        return 0.0 if wait <= _EPSILON else wait

    def _grant(self, tokens: int, now: float, enqueued: float) -> Permit:
        self._requests.level -= 1
        self._tokens.level -= tokens
        self._in_flight += 1
        self._sent += 1
        self._wait_time += now - enqueued
        self._recent.append((now, tokens))
        while self._recent and self._recent[0][0] < now - MEASURE_SECONDS:
            self._recent.popleft()
        return Permit(self, self._generation, tokens, now, now - enqueued)

    def _dispatch(self) -> None:
        """Grant the head waiters while budget allows; else arm a timer for the head."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.monotonic()
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                self._waiters.popleft()
                continue
            wait = self._ready(head.tokens, now)
            if wait is None:
                return
            if wait > 0:
                assert self._loop is not None
                self._timer = self._loop.call_later(wait, self._on_timer)
                return
            self._waiters.popleft()
            head.future.set_result(self._grant(head.tokens, now, head.enqueued))

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _release(self, generation: int) -> None:
        if generation != self._generation or self._loop is None:
            return
        self._in_flight -= 1
        if self._waiters and self._timer is None and not self._loop.is_closed():
            self._dispatch()

    # ---- feedback ------------------------------------------------------------------

    def _on_success(
        self, permit: Permit, actual_tokens: int, headers: Mapping[str, str] | None
    ) -> None:
        now = time.monotonic()
        self._ok += 1
        self._tokens_used += actual_tokens
        self._tokens.refill(now)
        self._tokens.level += permit.tokens - actual_tokens
        if headers is not None and self.learn_from_headers:
            self._observe(RateLimitHeaders.parse(headers), now)
        self._requests.grow(now)
        self._tokens.grow(now)
        if self._waiters and self._loop is not None and not self._loop.is_closed():
            self._dispatch()

    def _on_rate_limited(
        self, permit: Permit, headers: Mapping[str, str] | None, retry_after: float | None
    ) -> float:
        now = time.monotonic()
        self._rate_limited += 1
        self._tokens.refill(now)
        self._tokens.level += permit.tokens
        info = RateLimitHeaders.parse(headers) if headers is not None else RateLimitHeaders()
        if self.learn_from_headers:
            self._observe(info, now)
        requests_out = info.remaining_requests is not None and info.remaining_requests < 1
        tokens_out = info.remaining_tokens is not None and info.remaining_tokens < permit.tokens
        if permit.sent_at >= self._cut_at:
            self._cut_at = now
            blamed = [self._tokens] if tokens_out and not requests_out else [self._requests]
            if tokens_out and requests_out:
                blamed.append(self._tokens)
            for bucket in blamed:
                bucket.cut(now, self._measured(now, bucket is self._tokens))
            logger.info(
                "%s: 429, %s rate cut to %s/min",
                self.key,
                "+".join(b.name for b in blamed),
                "/".join(f"{b.rate:.0f}" for b in blamed if b.rate is not None),
            )
        pause = retry_after
        if pause is None:
            resets = [
                reset
                for out, reset in (
                    (requests_out, info.reset_requests),
                    (tokens_out, info.reset_tokens),
                )
                if out and reset is not None
            ]
            pause = min(max(resets), MAX_RESET_PAUSE) if resets else DEFAULT_429_PAUSE
        self._paused_until = max(self._paused_until, now + pause)
        if self._waiters and self._loop is not None and not self._loop.is_closed():
            self._dispatch()
        return pause

    def _on_failure(self, headers: Mapping[str, str] | None) -> None:
        self._errors += 1
        if headers is not None and self.learn_from_headers:
            self._observe(RateLimitHeaders.parse(headers), time.monotonic())

    def _observe(self, info: RateLimitHeaders, now: float) -> None:
        raised = False
        for bucket, limit, remaining in (
            (self._requests, info.limit_requests, info.remaining_requests),
            (self._tokens, info.limit_tokens, info.remaining_tokens),
        ):
            if limit is not None and bucket.learn(limit, now):
                raised = True
                logger.debug("%s: server limit %d %s/min", self.key, limit, bucket.name)
            if remaining is not None:
                bucket.refill(now)
                bucket.sync(remaining)
        if raised and self._waiters and self._loop is not None and not self._loop.is_closed():
            self._dispatch()

    def _measured(self, now: float, tokens: bool) -> float:
        """Units per minute sent over the last :data:`MEASURE_SECONDS`."""
        if not self._recent:
            return _MIN_RATE["tokens" if tokens else "requests"]
        span = max(1.0, min(MEASURE_SECONDS, now - self._recent[0][0]))
        total = sum(t for _, t in self._recent) if tokens else len(self._recent)
        return total / span * 60.0

    # ---- reporting -----------------------------------------------------------------

    def stats(self) -> LimiterStats:
        """Current rates, limits and counters."""
        now = time.monotonic()
        return LimiterStats(
            key=self.key,
            rpm=self._requests.rate,
            tpm=self._tokens.rate,
            rpm_limit=self._requests.ceiling,
            tpm_limit=self._tokens.ceiling,
            max_concurrency=self.max_concurrency,
            in_flight=self._in_flight,
            waiting=sum(1 for w in self._waiters if not w.future.done()),
            sent=self._sent,
            ok=self._ok,
            rate_limited=self._rate_limited,
            retries=self._retries,
            errors=self._errors,
            tokens_used=self._tokens_used,
            wait_time_s=self._wait_time,
            paused_for_s=max(0.0, self._paused_until - now),
        )

    def __repr__(self) -> str:
        return (
            f"ResourceLimiter({self.key!r}, rpm={self._requests.rate}, tpm={self._tokens.rate}, "
            f"max_concurrency={self.max_concurrency})"
        )


_limiters: dict[str, tuple[LLMResource, ResourceLimiter]] = {}
_limiters_lock = threading.Lock()


def get_limiter(key: str, resource: LLMResource) -> ResourceLimiter:
    """The process-wide limiter of ``key``; a changed resource config gets a fresh one."""
    with _limiters_lock:
        entry = _limiters.get(key)
        if entry is None or entry[0] != resource:
            entry = (resource, ResourceLimiter.from_resource(key, resource))
            _limiters[key] = entry
        return entry[1]


def all_limiters() -> dict[str, ResourceLimiter]:
    """Every limiter created in this process, by resource key."""
    with _limiters_lock:
        return {key: limiter for key, (_, limiter) in _limiters.items()}
