"""The bounded buffer between a run and the consumer of :meth:`Hush.stream`.

A consumer slower than the run must not make the run buffer every event. When
``limit`` events wait, the run holds back: a node about to start waits for
room (:meth:`EventBuffer.room`, the emitter's back-pressure), so node, progress
and run events are all delivered; ``token`` events that arrive meanwhile are
dropped and counted (``$state.dropped_tokens``). The buffer can exceed ``limit``
only by the events of nodes already running when it filled.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from hush.core.events import Event

logger = logging.getLogger("hush.engine")

DEFAULT_LIMIT = 1000
"""Events that may wait for a ``stream()`` consumer before the run holds back."""


class EventBuffer:
    """Events of one streamed run, waiting for the consumer (at most about ``limit``)."""

    __slots__ = ("_closed", "_events", "_ready", "_room", "dropped_tokens", "limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.dropped_tokens = 0
        """Token events dropped because ``limit`` events were waiting."""
        self._events: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._events)

    def put(self, event: Event) -> None:
        """The run's subscriber: keep the event (a token only while there is room)."""
        events = self._events
        if len(events) >= self.limit:
            if event.kind == "token":
                self.dropped_tokens += 1
                return
            self._room.clear()
        events.append(event)
        self._ready.set()

    def close(self) -> None:
        """The run ended: :meth:`get` returns ``None`` once the buffer is empty."""
        self._closed = True
        self._ready.set()

    async def get(self) -> Event | None:
        """The next event, or ``None`` when the run ended and everything was taken."""
        events = self._events
        while not events:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        event = events.popleft()
        if len(events) < self.limit:
            self._room.set()
        return event

    async def room(self) -> None:
        """Wait until fewer than ``limit`` events wait for the consumer."""
        while len(self._events) >= self.limit:
            self._room.clear()
            await self._room.wait()
