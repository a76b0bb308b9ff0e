"""The messages a worker's call streams back to the driver.

A Ray call streams lists of messages back to the driver (see
:class:`~hush.distributed.worker.ItemRunner`); :class:`Outbox` collects them.
Each streamed list costs the driver about a millisecond of CPU whatever its
size, so a call sends at most one list per :data:`FLUSH_INTERVAL`: what queues
in between goes in the next one. Two kinds of message go at once: requests that
need the driver's answer (budget holds, through :meth:`Outbox.ask`, answered
through ``ItemRunner.answer``), and the result of the call's last item.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

Message = tuple[Any, ...]
"""``(kind, ...)``: see :meth:`~hush.distributed.worker.ItemRunner.run`."""

FLUSH_INTERVAL = 0.02
"""Seconds between two lists of one call at least (unless one must go at once)."""

_numbers = itertools.count(1)


class Outbox:
    """The messages of one call of ``items`` items, waiting to be streamed to the driver."""

    def __init__(self, answers: dict[int, asyncio.Future[Any]], items: int) -> None:
        self.answers = answers
        self.undone = items
        """Items of the call whose result is not queued yet."""
        self._messages: list[Message] = []
        self._ready = asyncio.Event()
        self._urgent = asyncio.Event()
        self._sent_at = -FLUSH_INTERVAL

    def put(self, message: Message, *, urgent: bool = False) -> None:
        self._messages.append(message)
        if message[0] == "done":
            self.undone -= 1
        self._ready.set()
        if urgent or not self.undone:
            self._urgent.set()

    async def take(self) -> list[Message]:
        """Every message queued so far (waits for at least one, then until
        :data:`FLUSH_INTERVAL` has passed since the previous list unless one is urgent)."""
        await self._ready.wait()
        loop = asyncio.get_running_loop()
        delay = self._sent_at + FLUSH_INTERVAL - loop.time()
        if delay > 0 and not self._urgent.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._urgent.wait()
        self._ready.clear()
        self._urgent.clear()
        self._sent_at = loop.time()
        messages, self._messages = self._messages, []
        return messages

    async def ask(self, message: Message) -> Any:
        """Send ``message`` (its second field is set to a fresh request number) at once and
        wait for the driver's answer."""
        number = next(_numbers)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers[number] = future
        try:
            self.put((message[0], number, *message[2:]), urgent=True)
            return await future
        finally:
            self.answers.pop(number, None)
