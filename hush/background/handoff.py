"""Handing over between threads: waking a waiter (a thread's event, or a future on its own
event loop), and handing the GIL to a consumer thread a busy event loop starves."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

Release = Callable[[], None]
"""Wakes one waiter; safe to call from any thread."""


def future_release(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Release:
    """A release settling ``future`` on ``loop`` (nothing if the loop is closed)."""

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    def release() -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(resolve)

    return release


async def wait_future(future: asyncio.Future[None], timeout: float | None) -> bool:
    """Wait for ``future``; ``False`` after ``timeout`` seconds (the future stays pending)."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        return False
    return True


class Barrier:
    """Runs ``then`` in a writer's thread once what was queued before it is handled, then
    ``release``; ``stop`` ends the thread."""

    __slots__ = ("release", "stop", "then")

    def __init__(self, then: Callable[[], object] | None, release: Release, stop: bool) -> None:
        self.then, self.release, self.stop = then, release, stop


def nothing() -> None:
    """The release of a close barrier (close waiters are woken when the thread ends)."""


class Waiters:
    """Releases registered under a condition and released all together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._releases: list[Release] = []

    def __bool__(self) -> bool:
        return bool(self._releases)

    def add_unless(self, done: Callable[[], bool], release: Release) -> bool:
        """Register ``release`` unless ``done()`` (checked under the lock); whether it was."""
        with self._lock:
            if done():
                return False
            self._releases.append(release)
            return True

    def release_all(self) -> None:
        """Wake every waiter registered so far."""
        with self._lock:
            releases, self._releases = self._releases, []
        for release in releases:
            release()


STALL_S = 0.002
"""How long queued work may wait before a submission hands the GIL to the consumer."""
NUDGE_EVERY_S = 0.001
NUDGE_S = 0.00005


class Nudge:
    """Hands the GIL to a consumer thread that a busy producer (an event loop) starves.

    A busy loop releases the GIL for an instant on every iteration and takes it straight
    back, which can keep a consumer thread waiting as long as the loop stays busy. So a
    submission that finds queued work waiting over :data:`STALL_S` (beyond ``linger``,
    the time the consumer waits on purpose to gather work) sleeps :data:`NUDGE_S`, at
    most every :data:`NUDGE_EVERY_S`.
    """

    __slots__ = (
        "_nudged_at",
        "_processed",
        "_progress_at",
        "_stall",
        "_submitted",
        "_waiting_since",
    )

    def __init__(self, linger: float = 0.0) -> None:
        self._stall = STALL_S + linger
        self._submitted = self._processed = 0
        self._waiting_since = self._progress_at = self._nudged_at = 0.0

    def submitting(self) -> float:
        """Called before queueing an item; returns the time to pass to :meth:`submitted`."""
        now = time.monotonic()
        if self._processed == self._submitted:
            self._waiting_since = now
        self._submitted += 1
        return now

    def submitted(self, now: float) -> None:
        """Called after queueing: sleep briefly if the consumer is starved."""
        if (
            now - max(self._waiting_since, self._progress_at) > self._stall
            and now - self._nudged_at > NUDGE_EVERY_S
        ):
            self._nudged_at = now
            time.sleep(NUDGE_S)

    def progressed(self, done: int = 0) -> None:
        """Called by the consumer when it takes work, and when it has handled ``done`` items
        (work queued meanwhile is waiting only from then on)."""
        self._processed += done
        self._progress_at = time.monotonic()
