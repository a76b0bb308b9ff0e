"""One limiter per resource for the whole process, waited on from any number of event loops.

A :class:`ResourceLimiter` owns what its resource may send and what it learned
(:class:`~hush.providers.rates.RateState`), whether the server can be reached
(:class:`~hush.providers.breaker.Breaker`) and whether it said to come back much
later. Those are shared under a lock by every event loop and thread of the
process, so two loops on one resource together stay within its limit. Each
running loop has its own queue of waiters: first come, first served within the
loop, each waiter a future resolved by a timer of that loop or by another loop's
release (through ``call_soon_threadsafe``), so waiting blocks nothing else.

A waiter fails at once, with a clear :class:`ResourceUnavailableError`, when the
resource's breaker is open (it cannot be reached) or when the server asked to
retry later than the resource's ``max_retry_wait`` (a spent quota).

A :class:`Permit` ends with exactly one outcome: the first of ``commit`` (answered),
``rate_limited``, ``failed`` (reached the server, or could not connect) that its
holder reports, else "abandoned" when it is released without one (the request was
cancelled, or its holder raised). Its release (``with permit:``) is the one place
that records it: an abandoned breaker probe is cleared, so the next call probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from hush.providers.breaker import Breaker
from hush.providers.errors import ResourceUnavailableError
from hush.providers.headers import RateLimitHeaders
from hush.providers.rates import Limits, RateState
from hush.providers.resources import LLMResource

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRY_WAIT",
    "LimiterStats",
    "Permit",
    "ResourceLimiter",
    "all_limiters",
    "get_limiter",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 256
"""In-flight cap when a resource sets no ``max_concurrency``."""
DEFAULT_MAX_RETRY_WAIT = 120.0

Outcome = Literal["answered", "rate_limited", "failed", "unreachable", "abandoned"]
"""How the request sent under a permit ended."""


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A snapshot of one resource's limiter (rates per minute; ``None`` = not paced)."""

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
    """Leave to send one request; release it when the request is over (``with permit:``).

    Report how the request ended with :meth:`commit`, :meth:`rate_limited` or
    :meth:`failed` before releasing it; the first report is its outcome (later ones
    are ignored). Released without one, its outcome is ``"abandoned"``.
    """

    __slots__ = ("_limiter", "_queue", "_released", "outcome", "sent_at", "tokens", "waited_s")

    def __init__(
        self,
        limiter: ResourceLimiter,
        queue: _Queue,
        tokens: int,
        sent_at: float,
        waited_s: float,
    ) -> None:
        self._limiter = limiter
        self._queue = queue
        self._released = False
        self.outcome: Outcome | None = None
        """How the request ended, once reported (or released)."""
        self.tokens = tokens
        """Tokens charged up front (the estimate)."""
        self.sent_at = sent_at
        self.waited_s = waited_s
        """Seconds spent waiting for this permit."""

    def _report(self, outcome: Outcome) -> bool:
        """Record ``outcome`` if none was; ``False`` when one already was."""
        if self.outcome is not None:
            logger.debug(
                "%s: permit already %s; %s ignored", self._limiter.key, self.outcome, outcome
            )
            return False
        self.outcome = outcome
        return True

    def commit(self, actual_tokens: int, headers: Mapping[str, str] | None = None) -> None:
        """The request succeeded and counted ``actual_tokens`` against the limit."""
        if self._report("answered"):
            self._limiter._on_answer(self, actual_tokens, headers)

    def rate_limited(
        self, headers: Mapping[str, str] | None = None, retry_after: float | None = None
    ) -> float:
        """The request got a 429: pause the resource (learning what it can). Returns the pause."""
        if not self._report("rate_limited"):
            return 0.0
        return self._limiter._on_429(self, headers, retry_after)

    def failed(
        self, headers: Mapping[str, str] | None = None, *, unreachable: str | None = None
    ) -> None:
        """The request failed otherwise: it reached the server (a 5xx, a timeout waiting
        for the reply, a cut or malformed reply), or ``unreachable`` names why it could
        not connect."""
        if self._report("failed" if unreachable is None else "unreachable"):
            self._limiter._on_failure(self, headers, unreachable)

    def release(self) -> None:
        """Free the in-flight slot (idempotent); with no outcome reported, it is abandoned."""
        if not self._released:
            self._released = True
            abandoned = self._report("abandoned")
            self._limiter._release(self, abandoned=abandoned)

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


class _Queue:
    """The waiters of one event loop, served in arrival order."""

    __slots__ = ("in_flight", "limiter", "loop", "reaped", "timer", "waiters")

    def __init__(self, limiter: ResourceLimiter, loop: asyncio.AbstractEventLoop) -> None:
        self.limiter = limiter
        self.loop = loop
        self.waiters: deque[_Waiter] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.in_flight = 0
        """Permits of this loop not yet released."""
        self.reaped = False
        """The loop closed with permits out; they were given back to the budget."""

    def dispatch(self) -> None:
        """Grant head waiters while the budget allows; else arm a timer for the head."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        limiter = self.limiter
        with limiter._lock:
            now = limiter._clock()
            while self.waiters:
                head = self.waiters[0]
                if head.future.done():
                    self.waiters.popleft()
                    continue
                refusal = limiter._refusal(now)
                if refusal is not None:
                    self.waiters.popleft()
                    head.future.set_exception(refusal)
                    continue
                wait = limiter._state.wait(head.tokens, now)
                if wait is None:
                    return
                if wait > 0:
                    self.timer = self.loop.call_later(wait, self.dispatch)
                    return
                self.waiters.popleft()
                head.future.set_result(limiter._grant(self, head.tokens, now, head.enqueued))


class ResourceLimiter:
    """Requests/min, tokens/min, in-flight limit and reachability of one resource."""

    def __init__(
        self,
        key: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrency: int | None = None,
        learn_from_headers: bool = True,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        base_url: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.base_url = base_url
        self.max_retry_wait = max_retry_wait
        self.max_concurrency = max_concurrency or DEFAULT_MAX_CONCURRENCY
        self._clock = clock
        self._lock = threading.RLock()
        limits = Limits(rpm, tpm, self.max_concurrency, learn_from_headers)
        self._state = RateState(limits, clock())
        self._breaker = Breaker()
        self._probe: Permit | None = None
        """The permit of the breaker's probe while one is out."""
        self._back_at = 0.0
        self._back_reason = ""
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
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
            max_concurrency=resource.max_concurrency,
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
        with self._lock:
            permit = self._now(queue, tokens)
            if permit is not None:
                return permit
            waiter = _Waiter(tokens, queue.loop.create_future(), self._clock())
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
        with self._lock:
            return self._now(queue, tokens)

    def _now(self, queue: _Queue, tokens: int) -> Permit | None:
        """A permit if the request may go at once (under the lock), else ``None``."""
        now = self._clock()
        refusal = self._refusal(now)
        if refusal is not None:
            raise refusal
        if not queue.waiters and self._state.wait(tokens, now) == 0.0:
            return self._grant(queue, tokens, now, now)
        return None

    def note_retry(self) -> None:
        """Count a retry (for :meth:`stats`)."""
        with self._lock:
            self._retries += 1

    def _queue(self) -> _Queue:
        loop = asyncio.get_running_loop()
        with self._lock:
            queue = self._queues.get(loop)
            if queue is None:
                self._reap()
                queue = self._queues[loop] = _Queue(self, loop)
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

    def _grant(self, queue: _Queue, tokens: int, now: float, enqueued: float) -> Permit:
        self._state.take(tokens)
        queue.in_flight += 1
        self._sent += 1
        self._wait_time += now - enqueued
        permit = Permit(self, queue, tokens, now, now - enqueued)
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
            info = RateLimitHeaders.parse(headers) if headers is not None else None
            self._state.answered(permit.tokens, actual_tokens, info, now)
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
        self._wake()
        return pause

    def _on_failure(
        self, permit: Permit, headers: Mapping[str, str] | None, unreachable: str | None
    ) -> None:
        with self._lock:
            now = self._clock()
            self._errors += 1
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
                max_concurrency=self.max_concurrency,
                in_flight=state.in_flight,
                waiting=sum(
                    1 for q in self._queues.values() for w in q.waiters if not w.future.done()
                ),
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
            f"max_concurrency={self.max_concurrency})"
        )


_limiters: dict[str, tuple[LLMResource, ResourceLimiter]] = {}
_limiters_lock = threading.Lock()
_factory: Callable[[str, LLMResource], ResourceLimiter] | None = None


def get_limiter(key: str, resource: LLMResource) -> ResourceLimiter:
    """The process-wide limiter of ``key``; a changed resource config gets a fresh one."""
    with _limiters_lock:
        entry = _limiters.get(key)
        if entry is None or entry[0] != resource:
            make = _factory or ResourceLimiter.from_resource
            entry = (resource, make(key, resource))
            _limiters[key] = entry
        return entry[1]


def use_limiters(factory: Callable[[str, LLMResource], ResourceLimiter] | None) -> None:
    """Make :func:`get_limiter` build limiters with ``factory`` from now on (``None``: the
    process's own). A Ray worker uses it to draw on the cluster's limiters."""
    global _factory
    with _limiters_lock:
        _factory = factory
        _limiters.clear()


def all_limiters() -> dict[str, ResourceLimiter]:
    """Every limiter created in this process, by resource key."""
    with _limiters_lock:
        return {key: limiter for key, (_, limiter) in _limiters.items()}
