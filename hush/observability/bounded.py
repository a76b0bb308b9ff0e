"""Run a blocking call in a daemon thread and wait for it with a time bound.

A daemon thread is used instead of the event loop's default executor: a call
that hangs (an export to an unreachable server) must neither block the loop
nor keep ``asyncio.run`` from returning, which waits for executor threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class BoundedCall:
    """Runs ``fn`` in a daemon thread, at most one at a time.

    A caller arriving while a previous call is still running waits for that
    call instead of starting another, so a hanging ``fn`` never piles up threads.
    """

    def __init__(self, fn: Callable[[], object], *, name: str) -> None:
        self._fn = fn
        self._name = name
        self._lock = threading.Lock()
        self._flight: _Flight | None = None

    @property
    def running(self) -> bool:
        """Whether a call is in progress."""
        flight = self._flight
        return flight is not None and not flight.done.is_set()

    async def run(self, timeout: float) -> bool:
        """Start (or join) a call and wait for it; ``True`` if it finished within ``timeout``."""
        flight = self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not flight.add_waiter(loop, future):
            return True
        try:
            await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    def run_sync(self, timeout: float) -> bool:
        """Blocking variant of :meth:`run` for synchronous callers."""
        return self._start().done.wait(max(timeout, 0.0))

    def _start(self) -> _Flight:
        with self._lock:
            flight = self._flight
            if flight is None or flight.done.is_set():
                flight = _Flight()
                self._flight = flight
                thread = threading.Thread(
                    target=flight.execute, args=(self._fn, self._name), name=self._name, daemon=True
                )
                thread.start()
            return flight


class _Flight:
    """One call in progress and the event-loop futures waiting for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add_waiter(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> bool:
        """Register ``future``; ``False`` if the call has already finished."""
        with self._lock:
            if self.done.is_set():
                return False
            self._waiters.append((loop, future))
            return True

    def execute(self, fn: Callable[[], object], name: str) -> None:
        try:
            fn()
        except Exception:
            logger.warning("%s failed", name, exc_info=True)
        finally:
            with self._lock:
                self.done.set()
                waiters, self._waiters = self._waiters, []
            for loop, future in waiters:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
