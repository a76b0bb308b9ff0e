"""Which queued checkpoint entries are committed: numbers, a watermark and lazy waiters.

The store numbers every entry it queues (:meth:`Commits.number`); the writer thread
raises :attr:`Commits.committed` after each commit (a plain int, read by the event loop
without a hop between threads). Asking whether an entry is committed costs a comparison;
only a caller that must wait gets a future, and the writer wakes the loop only while
someone waits. Entries are committed in the order they were numbered.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable

logger = logging.getLogger("hush.checkpoint")


class Commits:
    """The numbers of one store's queued entries and how far they are committed."""

    __slots__ = ("_error", "_loop", "_waiters", "_wanted", "committed", "issued", "waits")

    def __init__(self) -> None:
        self.issued = 0
        """The number of the last entry queued (event loop side)."""
        self.committed = 0
        """Every entry numbered up to this one is committed (set by the writer thread)."""
        self.waits = 0
        """How many times :meth:`wait` had to suspend (the entry was not committed yet)."""
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._wanted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: Callable[[], BaseException] | None = None

    def number(self) -> int:
        """Number the next entry queued."""
        self.issued += 1
        return self.issued

    def waiter(self, number: int) -> asyncio.Future[None]:
        """A future of the running loop, done once entry ``number`` is committed (with the
        writer's error if it failed first)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.committed >= number:
            future.set_result(None)
            return future
        if self._loop is not loop:
            self._loop = loop
        heapq.heappush(self._waiters, (number, id(future), future))
        self._wanted = True
        if self.committed >= number or self._error is not None:  # the writer moved meanwhile
            self._wake()
        return future

    async def wait(self, number: int) -> None:
        """Return once entry ``number`` is committed; no suspension if it is already."""
        if self.committed < number:
            self.waits += 1
            await self.waiter(number)

    # ---- the writer thread ----------------------------------------------------------

    def advance(self, number: int) -> None:
        """Entries up to ``number`` are committed; wake the loop if anyone waits."""
        self.committed = number
        if self._wanted:
            self._wanted = False
            self._call(self._wake)

    def fail(self, error: Callable[[], BaseException]) -> None:
        """The writer failed: whoever waits for an entry not committed gets ``error()``."""
        self._error = error
        self._wanted = False
        self._call(self._wake)

    def _call(self, wake: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:
            logger.debug("event loop closed; %d checkpoint waiter(s) dropped", len(self._waiters))

    # ---- the event loop -------------------------------------------------------------

    def _wake(self) -> None:
        """Settle the futures of committed entries (all of them once the writer failed)."""
        waiters = self._waiters
        while waiters:
            while waiters and waiters[0][0] <= self.committed:
                future = heapq.heappop(waiters)[2]
                if not future.done() and not future.get_loop().is_closed():
                    future.set_result(None)
            if not waiters:
                return
            if self._error is not None:
                for _, _, future in waiters:
                    if not future.done() and not future.get_loop().is_closed():
                        future.set_exception(self._error())
                waiters.clear()
                return
            self._wanted = True
            if waiters[0][0] > self.committed:
                return
