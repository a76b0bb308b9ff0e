"""Leave to send one request, and the queue of one event loop waiting for it.

A :class:`Permit` ends with exactly one outcome: the first of ``commit`` (answered),
``rate_limited``, ``failed`` (reached the server, or could not connect) that its
holder reports, else "abandoned" when it is released without one (the request was
cancelled, or its holder raised). Its release (``with permit:``) is the one place
that records it: an abandoned breaker probe is cleared, so the next call probes.

A :class:`LoopQueue` holds the waiters of one running loop: first come, first
served within the loop, each waiter a future resolved by a timer of that loop or
by another loop's release (through ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hush.providers.limiter import ResourceLimiter
    from hush.providers.run_counters import RunCounters

__all__ = ["LoopQueue", "Outcome", "Permit", "Waiter"]

logger = logging.getLogger("hush.providers.limiter")

Outcome = Literal["answered", "rate_limited", "failed", "unreachable", "abandoned"]
"""How the request sent under a permit ended."""


class Permit:
    """Leave to send one request; release it when the request is over (``with permit:``).

    Report how the request ended with :meth:`commit`, :meth:`rate_limited` or
    :meth:`failed` before releasing it; the first report is its outcome (later ones
    are ignored). Released without one, its outcome is ``"abandoned"``.
    """

    __slots__ = (
        "_limiter",
        "_queue",
        "_released",
        "counters",
        "outcome",
        "sent_at",
        "tokens",
        "waited_s",
    )

    def __init__(
        self,
        limiter: ResourceLimiter,
        queue: LoopQueue,
        tokens: int,
        sent_at: float,
        waited_s: float,
        counters: RunCounters | None = None,
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
        self.counters = counters
        """The counters of the run that asked for the permit (``None``: no run counts)."""

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
class Waiter:
    """One request waiting for its permit."""

    tokens: int
    future: asyncio.Future[Permit]
    enqueued: float
    counters: RunCounters | None
    """The counters of the run that waits (read where it started waiting)."""


class LoopQueue:
    """The waiters of one event loop, served in arrival order."""

    __slots__ = ("in_flight", "limiter", "loop", "reaped", "timer", "waiters")

    def __init__(self, limiter: ResourceLimiter, loop: asyncio.AbstractEventLoop) -> None:
        self.limiter = limiter
        self.loop = loop
        self.waiters: deque[Waiter] = deque()
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
                head.future.set_result(
                    limiter._grant(self, head.tokens, now, head.enqueued, head.counters)
                )

    def waiting(self) -> int:
        """Waiters not yet served or gone."""
        return sum(1 for waiter in self.waiters if not waiter.future.done())
