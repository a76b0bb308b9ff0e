"""One limiter per resource for the whole process, waited on from any number of event loops.

A :class:`ResourceLimiter` owns what its resource may send and what it learned
(:class:`~hush.providers.rates.RateState`), whether the server can be reached
(:class:`~hush.providers.breaker.Breaker`) and whether it said to come back much
later. Those are shared under a lock by every event loop and thread of the
process, so two loops on one resource together stay within its limit. Each
running loop has its own queue of waiters (:mod:`hush.providers.permits`), so
waiting blocks nothing else.

A waiter fails at once, with a clear :class:`ResourceUnavailableError`, when the
resource's breaker is open (it cannot be reached) or when the server asked to
retry later than the resource's ``max_retry_wait`` (a spent quota).

Every request is counted twice: in the limiter's process-wide :meth:`~ResourceLimiter.stats`,
and in the :class:`~hush.providers.run_counters.RunCounters` of the run that sent it,
read where it asked for its permit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Literal

from hush.providers.breaker import Breaker
from hush.providers.errors import ResourceUnavailableError
from hush.providers.headers import RateLimitHeaders
from hush.providers.limiter_registry import all_limiters, get_limiter, use_limiters
from hush.providers.limiter_stats import LimiterStats
from hush.providers.permits import LoopQueue, Outcome, Permit, Waiter
from hush.providers.rates import Limits, RateState
from hush.providers.resource_models import LLMResource
from hush.providers.run_counters import RunCounters, current

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_RETRY_WAIT",
    "LimiterStats",
    "Outcome",
    "Permit",
    "ResourceLimiter",
    "all_limiters",
    "get_limiter",
    "use_limiters",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 256
"""In-flight cap when a resource sets no ``max_in_flight``."""
DEFAULT_MAX_CONCURRENCY = DEFAULT_MAX_IN_FLIGHT
"""The old name of :data:`DEFAULT_MAX_IN_FLIGHT`."""
DEFAULT_MAX_RETRY_WAIT = 120.0


class ResourceLimiter:
    """Requests/min, tokens/min, in-flight limit and reachability of one resource."""

    def __init__(
        self,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_in_flight: int | None = None,
        learn_from_headers: bool = True,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        base_url: str = "",
        clock: Callable[[], float] = time.monotonic,
        max_concurrency: int | None = None,
    ) -> None:
        """``max_concurrency`` is the old name of ``max_in_flight`` (deprecated)."""
        if max_concurrency is not None:
            if max_in_flight is not None:
                raise TypeError(f"{key}: give max_in_flight only (max_concurrency is its old name)")
            warnings.warn(
                f"{key}: ResourceLimiter(max_concurrency=...) is deprecated; use max_in_flight=...",
                DeprecationWarning,
                stacklevel=2,
            )
            max_in_flight = max_concurrency
        self.key = key
        self.base_url = base_url
        self.max_retry_wait = max_retry_wait
        self.max_in_flight = max_in_flight or DEFAULT_MAX_IN_FLIGHT
        self._clock = clock
        self._lock = threading.RLock()
        limits = Limits(rpm, tpm, self.max_in_flight, learn_from_headers)
        self._state = RateState(limits, clock())
        self._breaker = Breaker()
        self._probe: Permit | None = None
        """The permit of the breaker's probe while one is out."""
        self._back_at = 0.0
        self._back_reason = ""
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopQueue] = (
            weakref.WeakKeyDictionary()
        )
        self._sent = self._ok = self._n429 = self._retries = self._errors = 0
        self._tokens_used = 0
        self._wait_time = 0.0

    @classmethod
    def from_resource(
        cls, key: str, resource: LLMResource, *, clock: Callable[[], float] = time.monotonic
    ) -> ResourceLimiter:
        """A limiter with the resource's configured limits."""
        return cls(
            key,
            rpm=resource.rpm,
            tpm=resource.tpm,
            max_in_flight=resource.max_in_flight,
            learn_from_headers=resource.rate_limit_headers,
            max_retry_wait=resource.max_retry_wait,
            base_url=resource.base_url,
            clock=clock,
        )

    # ---- acquiring -------------------------------------------------------------------

    async def acquire(self, tokens: int = 0) -> Permit:
        """Wait (first come, first served on this loop) until one request may be sent.

        Raises :class:`ResourceUnavailableError` at once when the server cannot be
        reached or asked to come back later than ``max_retry_wait``.
        """
        queue = self._queue()
        counters = current.get()
        with self._lock:
            permit = self._now(queue, tokens, counters)
            if permit is not None:
                return permit
            waiter = Waiter(tokens, queue.loop.create_future(), self._clock(), counters)
            queue.waiters.append(waiter)
        if len(queue.waiters) == 1:
            queue.dispatch()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()
            else:
                with contextlib.suppress(ValueError):
                    queue.waiters.remove(waiter)
                queue.dispatch()
            raise

    def readiness(self, tokens: int = 0) -> Literal["ready", "busy", "refused"]:
        """Whether a request of ``tokens`` could be sent at once from the running loop
        (``"ready"``), would wait for its turn (``"busy"``), or would be refused (the
        breaker is open, or the server asked to wait longer than ``max_retry_wait``).
        Takes nothing: for choosing among resources."""
        now = self._clock()
        queue = self._queues.get(asyncio.get_running_loop())
        with self._lock:
            if self._refusal(now) is not None:
                return "refused"
            if (queue is not None and queue.waiters) or self._state.wait(tokens, now) != 0.0:
                return "busy"
            return "ready"

    def try_acquire(self, tokens: int = 0) -> Permit | None:
        """A permit if one request may be sent right now (nobody waiting on this loop and
        the budget allows it), else ``None``; never waits. Raises like :meth:`acquire`."""
        queue = self._queue()
        counters = current.get()
        with self._lock:
            return self._now(queue, tokens, counters)

    def _now(self, queue: LoopQueue, tokens: int, counters: RunCounters | None) -> Permit | None:
        """A permit if the request may go at once (under the lock), else ``None``."""
        now = self._clock()
        refusal = self._refusal(now)
        if refusal is not None:
            raise refusal
        if not queue.waiters and self._state.wait(tokens, now) == 0.0:
            return self._grant(queue, tokens, now, now, counters)
        return None

    def note_retry(self) -> None:
        """Count a retry (for :meth:`stats` and the running run's counters)."""
        with self._lock:
            self._retries += 1
        counters = current.get()
        if counters is not None:
            counters.retried(self.key)

    def _queue(self) -> LoopQueue:
        loop = asyncio.get_running_loop()
        with self._lock:
            queue = self._queues.get(loop)
            if queue is None:
                self._reap()
                queue = self._queues[loop] = LoopQueue(self, loop)
            return queue

    def _reap(self) -> None:
        """Give back what loops that closed with permits still out held."""
        for loop, queue in list(self._queues.items()):
            if loop.is_closed():
                del self._queues[loop]
                queue.reaped = True
                for _ in range(queue.in_flight):
                    self._state.release()
                queue.in_flight = 0
                if self._probe is not None and self._probe._queue is queue:
                    self._probe = None
                    self._breaker.abandoned(probe=True)

    def _grant(
        self,
        queue: LoopQueue,
        tokens: int,
        now: float,
        enqueued: float,
        counters: RunCounters | None,
    ) -> Permit:
        self._state.take(tokens, now)
        queue.in_flight += 1
        self._sent += 1
        self._wait_time += now - enqueued
        if counters is not None:
            counters.sent(self.key, now - enqueued)
        permit = Permit(self, queue, tokens, now, now - enqueued, counters)
        if self._breaker.sending():
            self._probe = permit
        return permit

    def _was_probe(self, permit: Permit) -> bool:
        """Whether ``permit`` is the breaker's probe (which then is no longer out)."""
        if self._probe is permit:
            self._probe = None
            return True
        return False

    def _refusal(self, now: float) -> ResourceUnavailableError | None:
        """Why no request may be sent now, if there is such a reason."""
        if now < self._back_at:
            return ResourceUnavailableError(
                f"{self.key}: the server asked to retry after {self._back_reason}, more than "
                f"max_retry_wait ({self.max_retry_wait:g} s): a spent quota? Calls fail at once "
                f"for {self._back_at - now:.0f} s more; run again (resume) later",
                resource_key=self.key,
            )
        if self._breaker.blocked(now):
            return ResourceUnavailableError(
                f"{self.key}: cannot connect to {self.base_url}: {self._breaker.cause} "
                f"({self._breaker.failures} attempts in a row failed; calls fail at once until "
                f"a probe in {self._breaker.retry_in(now):.0f} s reaches the server)",
                resource_key=self.key,
                unreachable=True,
            )
        return None

    # ---- feedback --------------------------------------------------------------------

    def _release(self, permit: Permit, *, abandoned: bool) -> None:
        queue = permit._queue
        with self._lock:
            if queue.reaped:
                return
            if abandoned:
                self._breaker.abandoned(probe=self._was_probe(permit))
            queue.in_flight -= 1
            self._state.release(permit.sent_at)
        self._wake()

    def _on_answer(
        self, permit: Permit, actual_tokens: int, headers: Mapping[str, str] | None
    ) -> None:
        with self._lock:
            now = self._clock()
            self._ok += 1
            self._tokens_used += actual_tokens
            if permit.counters is not None:
                permit.counters.answered(self.key, actual_tokens)
            info = RateLimitHeaders.parse(headers) if headers is not None else None
            self._state.answered(permit.tokens, actual_tokens, info, now, permit.sent_at)
            self._was_probe(permit)
            if self._breaker.connected():
                logger.warning("%s: %s is reachable again", self.key, self.base_url)
        self._wake()

    def _on_429(
        self, permit: Permit, headers: Mapping[str, str] | None, retry_after: float | None
    ) -> float:
        with self._lock:
            now = self._clock()
            self._n429 += 1
            self._was_probe(permit)
            self._breaker.connected()
            info = RateLimitHeaders.parse(headers) if headers is not None else None
            if retry_after is not None and retry_after > self.max_retry_wait:
                first = now >= self._back_at
                self._back_at = max(self._back_at, now + retry_after)
                self._back_reason = f"{retry_after:.0f} s"
                if first:
                    logger.warning(
                        "%s: the server asked to retry after %.0f s (more than max_retry_wait "
                        "%g s); calls to it fail at once until then",
                        self.key,
                        retry_after,
                        self.max_retry_wait,
                    )
                pause = retry_after
            else:
                pause = self._state.rate_limited(
                    permit.tokens, info, retry_after, permit.sent_at, now
                )
        if permit.counters is not None:
            permit.counters.rate_limited(self.key, pause)
        self._wake()
        return pause

    def _on_failure(
        self, permit: Permit, headers: Mapping[str, str] | None, unreachable: str | None
    ) -> None:
        with self._lock:
            now = self._clock()
            self._errors += 1
            if permit.counters is not None:
                permit.counters.failed(self.key)
            info = RateLimitHeaders.parse(headers) if headers is not None else None
            self._state.failed(info, now)
            probe = self._was_probe(permit)
            if unreachable is None:
                self._breaker.connected()
            elif self._breaker.unreachable(unreachable, now, probe=probe):
                logger.warning(
                    "%s: cannot connect to %s (%s); calls fail at once until it is reachable",
                    self.key,
                    self.base_url,
                    unreachable,
                )
        self._wake()

    def _wake(self) -> None:
        """Let every loop's queue try again (on its own loop)."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        with self._lock:
            queues = [(loop, q) for loop, q in self._queues.items() if q.waiters]
        for loop, queue in queues:
            if loop is current:
                queue.dispatch()
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(queue.dispatch)

    # ---- reporting -------------------------------------------------------------------

    def stats(self) -> LimiterStats:
        """Current rates, limits and counters."""
        with self._lock:
            now = self._clock()
            state = self._state
            return LimiterStats(
                key=self.key,
                rpm=state.rpm,
                tpm=state.tpm,
                rpm_limit=state.limit("requests"),
                tpm_limit=state.limit("tokens"),
                max_in_flight=self.max_in_flight,
                max_concurrency=self.max_in_flight,
                in_flight=state.in_flight,
                waiting=sum(queue.waiting() for queue in self._queues.values()),
                sent=self._sent,
                ok=self._ok,
                rate_limited=self._n429,
                retries=self._retries,
                errors=self._errors,
                tokens_used=self._tokens_used,
                wait_time_s=self._wait_time,
                paused_for_s=max(0.0, state.paused_until - now),
            )

    def __repr__(self) -> str:
        return (
            f"ResourceLimiter({self.key!r}, rpm={self._state.rpm}, tpm={self._state.tpm}, "
            f"max_in_flight={self.max_in_flight})"
        )
