"""The messages a worker's call streams back to the driver.

A Ray call streams lists of messages back to the driver (see
:class:`~hush.distributed.worker.ItemRunner`); :class:`Outbox` collects them, so
that what is ready in one turn of the worker's event loop goes in one message.
Requests that need the driver's answer (budget holds) go through
:meth:`Outbox.ask`; the answer comes back through ``ItemRunner.answer``.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

Message = tuple[Any, ...]
"""``(kind, ...)``: see :meth:`~hush.distributed.worker.ItemRunner.run`."""

_numbers = itertools.count(1)


class Outbox:
    """The messages of one call, waiting to be streamed to the driver."""

    def __init__(self, answers: dict[int, asyncio.Future[Any]]) -> None:
        self.answers = answers
        self._messages: list[Message] = []
        self._ready = asyncio.Event()

    def put(self, message: Message) -> None:
        self._messages.append(message)
        self._ready.set()

    async def take(self) -> list[Message]:
        """Every message queued so far (waits for at least one); what queues while the
        previous list is being sent goes in the next one."""
        await self._ready.wait()
        self._ready.clear()
        messages, self._messages = self._messages, []
        return messages

    async def ask(self, message: Message) -> Any:
        """Send ``message`` (its second field is set to a fresh request number) and wait
        for the driver's answer."""
        number = next(_numbers)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers[number] = future
        try:
            self.put((message[0], number, *message[2:]))
            return await future
        finally:
            self.answers.pop(number, None)
