"""A tracer's own thread: events are queued on the event loop and handled there, in order.

Queuing an event costs the loop a fraction of a microsecond; building spans,
serialising inputs and outputs and exporting happen in the thread, which lets
go of the GIL every millisecond so the loop never waits on it for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from time import perf_counter, sleep

from hush.core.events import Event

logger = logging.getLogger(__name__)

YIELD_EVERY = 0.001
"""Seconds of work after which the thread lets the event loop have the GIL."""


class EventWorker:
    """Handles events with ``handle`` in a daemon thread, one at a time, in arrival order."""

    def __init__(
        self,
        handle: Callable[[Event], None],
        *,
        name: str,
        idle: Callable[[], None] | None = None,
    ) -> None:
        self._handle = handle
        self._idle = idle
        """Called when the queue runs empty (and before a waiter is released)."""
        self._queue: queue.SimpleQueue[Event | _Barrier | None] = queue.SimpleQueue()
        self._failures = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, event: Event) -> None:
        """Queue an event (from any thread)."""
        if not self._closed:
            self._queue.put(event)

    async def drained(self, timeout: float) -> bool:
        """Wait until every event queued before this call is handled; ``False`` on timeout."""
        if self._closed:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Barrier(lambda: _resolve_soon(loop, future)))
        try:
            await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    def drained_sync(self, timeout: float) -> bool:
        """Blocking variant of :meth:`drained`."""
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put(_Barrier(done.set))
        return done.wait(max(timeout, 0.0))

    def close(self) -> None:
        """Handle what is queued, then stop; later events are dropped."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def _loop(self) -> None:
        get, empty = self._queue.get, self._queue.empty
        held = perf_counter()
        while True:
            item = get()
            if item is None:
                self._run_idle()
                return
            if isinstance(item, _Barrier):
                self._run_idle()
                item.release()
                continue
            try:
                self._handle(item)
            except Exception:
                self._failures += 1
                logger.log(
                    logging.WARNING if self._failures == 1 else logging.DEBUG,
                    "tracing could not handle %r",
                    item,
                    exc_info=self._failures == 1,
                )
            if empty():
                self._run_idle()
            elif perf_counter() - held > YIELD_EVERY:
                sleep(0)
                held = perf_counter()

    def _run_idle(self) -> None:
        if self._idle is not None:
            try:
                self._idle()
            except Exception:
                logger.debug("tracing idle hook failed", exc_info=True)


class _Barrier:
    __slots__ = ("release",)

    def __init__(self, release: Callable[[], object]) -> None:
        self.release = release


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(resolve)
