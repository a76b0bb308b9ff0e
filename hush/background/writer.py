"""One background writer: a daemon thread handing queued items, in batches, to a handler.

The event loop only enqueues; the thread takes everything queued (up to ``batch_size``
items) and hands it to the handler in one call (a SQLite writer commits one transaction
per batch). ``flush`` and ``close`` (and ``aflush``, ``aclose``) are barriers: they return
once everything submitted before them is handled. On a full queue (``maxsize``), ``offer``
drops the item and counts it (tracers), ``put`` blocks a thread and ``aput`` awaits room
(backpressure); ``put`` refuses to block an event loop.

Shutdown policy, the same for every writer:

* the thread starts on the first submission and ends when the writer is closed,
  or after ``idle_exit`` seconds with nothing queued (the next submission starts
  another): an unused writer holds no thread and can be garbage-collected;
* at interpreter exit every writer still open is closed, all together, each waited
  for at most its ``exit_timeout`` seconds (:mod:`hush.background.shutdown`);
* in a forked child the parent's threads do not exist: the next submission starts one.

A crash (SIGKILL, ``os._exit``, an ``exit_timeout`` run out) loses what is queued, unhandled.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from hush.background import handoff, shutdown
from hush.background.handoff import Barrier, Nudge, Release, Waiters

logger = logging.getLogger("hush.background")

T = TypeVar("T")


class WriterFailedError(RuntimeError):
    """A submission to a writer whose handler failed (``on_error="raise"``)."""


class BackgroundWriter(Generic[T]):
    """A bounded queue served by a daemon thread that hands batches to ``handler``.

    ``maxsize`` bounds the items waiting for the thread (0: unbounded). ``linger`` makes
    the thread wait that long after the first item of a batch, and ``pause`` makes it rest
    that long after handling a batch before taking the next (a barrier or :meth:`hurry`
    cuts either short), so that items arriving meanwhile join it; a pause costs the thread
    no extra wake-up (nor the GIL hand-off that comes with one), and an item reaching an
    idle thread is handled at once. A handler exception is recorded once in
    :attr:`failure` (passed to ``on_failure``, else logged); that batch and every later
    one go to ``rejected`` instead, and later submissions raise :class:`WriterFailedError`
    (``on_error="raise"``) or are dropped and counted (``"count"``). ``on_idle`` runs in
    the thread whenever the queue is empty; ``on_close`` once, last, when closed.
    ``nudge``: submissions hand the GIL to a thread a busy loop starves (:class:`Nudge`).
    """

    def __init__(
        self,
        handler: Callable[[list[T]], None],
        *,
        name: str,
        maxsize: int = 0,
        batch_size: int = 1000,
        linger: float = 0.0,
        pause: float = 0.0,
        idle_exit: float = 10.0,
        exit_timeout: float = 5.0,
        on_error: Literal["raise", "count"] = "raise",
        on_failure: Callable[[BaseException], None] | None = None,
        rejected: Callable[[list[T], BaseException], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
        nudge: bool = False,
    ) -> None:
        if maxsize < 0 or batch_size < 1 or on_error not in ("raise", "count"):
            raise ValueError(
                f"writer {name!r}: maxsize must be >= 0, batch_size >= 1 and on_error "
                f"'raise' or 'count', got {maxsize!r}, {batch_size!r} and {on_error!r}"
            )
        self.name, self.maxsize, self.batch_size = name, maxsize, batch_size
        self.linger, self.idle_exit, self.exit_timeout = linger, idle_exit, exit_timeout
        self.pause = pause
        self.on_error = on_error
        self._handler, self._on_failure, self._rejected = handler, on_failure, rejected
        self._on_idle, self._on_close = on_idle, on_close
        self._nudge = Nudge(linger + pause) if nudge else None
        self._queue: queue.SimpleQueue[T | Barrier] = queue.SimpleQueue()
        self.failure: BaseException | None = None
        """The first handler exception, or ``None``."""
        self.handled = self.batches = 0
        """Items handed to the handler, and calls of it, so far."""
        self.dropped = 0
        """Items refused since the last :meth:`take_dropped` (a full queue, or a failed
        writer with ``on_error="count"``)."""
        self._closed = False
        self._stopped = threading.Event()
        self._urgent = threading.Event()
        self._lock = threading.Lock()
        self._room, self._close_waiters = Waiters(), Waiters()
        self._thread: threading.Thread | None = None
        shutdown.register(self)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (submissions are then refused)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Items and barriers waiting for the thread."""
        return self._queue.qsize()

    def take_dropped(self) -> int:
        """Return :attr:`dropped` and reset it to zero."""
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        return dropped

    # ---- submitting ---------------------------------------------------------------

    def offer(self, item: T, *, force: bool = False) -> bool:
        """Queue ``item`` unless the queue is full (``force`` queues it anyway); ``False``
        (counted in :attr:`dropped`) when it is not queued, or the writer is closed. Never
        blocks."""
        if self._closed or (self.failure is not None and self._refused()):
            return False
        if self.maxsize and not force and self._queue.qsize() >= self.maxsize:
            self._drop()
            return False
        self._enqueue(item)
        return True

    def put(self, item: T, timeout: float | None = None) -> None:
        """Queue ``item``, blocking this thread while the queue is full (``TimeoutError``
        after ``timeout`` seconds). On an event loop's thread use :meth:`aput`."""
        if (self._closed or self.failure is not None) and self._refused():
            return
        if self.maxsize and self._full():
            if asyncio._get_running_loop() is not None:
                raise RuntimeError(
                    f"writer {self.name!r} is full: put() would block the event loop; "
                    "use 'await aput()' or offer()"
                )
            end = time.monotonic() + (float("inf") if timeout is None else timeout)
            room = threading.Event()
            while self._wait_for_room(room.set):
                if not room.wait(min(max(end - time.monotonic(), 0.0), threading.TIMEOUT_MAX)):
                    raise TimeoutError(f"writer {self.name!r} stayed full for {timeout} s")
                room.clear()
        self._enqueue(item)

    async def aput(self, item: T) -> None:
        """Queue ``item``, awaiting room (without blocking the loop) while the queue is full."""
        loop = asyncio.get_running_loop()
        while self._full():
            future: asyncio.Future[None] = loop.create_future()
            if self._wait_for_room(handoff.future_release(loop, future)):
                await future
        if not self._refused():
            self._enqueue(item)

    def _full(self) -> bool:
        return bool(self.maxsize) and self._queue.qsize() >= self.maxsize and not self._closed

    def _refused(self) -> bool:
        """Raise for a closed writer (or a failed one, ``on_error="raise"``); ``True`` if the
        submission is dropped and counted."""
        if self._closed:
            raise RuntimeError(f"writer {self.name!r} is closed")
        if self.failure is None:
            return False
        if self.on_error == "raise":
            raise WriterFailedError(f"writer {self.name!r} failed: {self.failure!r}") from (
                self.failure
            )
        self._drop()
        return True

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def _wait_for_room(self, release: Release) -> bool:
        """Register ``release`` for when the thread next takes items; ``False`` (nothing
        registered) if there is room already."""
        if not self._room.add_unless(lambda: not self._full(), release):
            return False
        self._start()
        return True

    def _enqueue(self, item: T | Barrier) -> None:
        nudge = self._nudge
        if nudge is None:
            self._queue.put(item)
        else:
            now = nudge.submitting()
            self._queue.put(item)
            nudge.submitted(now)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            stopped = self._stopped.is_set()
            if self._thread is None and not stopped:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
        if stopped:
            self._leftovers()

    # ---- barriers -----------------------------------------------------------------

    def flush(self, timeout: float | None = None, then: Callable[[], object] | None = None) -> bool:
        """Block until everything submitted before is handled (or rejected) and ``then``
        ran in the thread; ``False`` after ``timeout`` seconds (the work goes on)."""
        if self._thread is threading.current_thread():
            raise RuntimeError(f"writer {self.name!r}: flush() from its own thread would deadlock")
        done = threading.Event()
        self._barrier(Barrier(then, done.set, stop=False))
        return done.wait(timeout)

    async def aflush(
        self, timeout: float | None = None, then: Callable[[], object] | None = None
    ) -> bool:
        """:meth:`flush` awaited on the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._barrier(Barrier(then, handoff.future_release(loop, future), stop=False))
        return await handoff.wait_future(future, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Handle what is queued, run ``on_close`` and stop the thread, blocking at most
        ``timeout`` seconds (``False`` if that was not enough; never from the writer's
        thread). Idempotent."""
        self.begin_close()
        return self.wait_closed(timeout)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` seconds for a close begun to finish (not at all from
        the writer's own thread)."""
        if self._thread is threading.current_thread():
            return self._stopped.is_set()
        return self._stopped.wait(timeout)

    def after_fork(self) -> None:
        """In a forked child the thread does not exist: the next submission starts one."""
        self._thread = None
        self._lock, self._urgent = threading.Lock(), threading.Event()
        self._room, self._close_waiters = Waiters(), Waiters()

    async def aclose(self, timeout: float | None = None) -> bool:
        """:meth:`close` awaited on the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._close_waiters.add_unless(
            self._stopped.is_set, handoff.future_release(loop, future)
        ):
            return True
        self.begin_close()
        return await handoff.wait_future(future, timeout)

    def begin_close(self) -> None:
        """Start closing (see :meth:`close`) without waiting."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        shutdown.unregister(self)
        self._barrier(Barrier(None, handoff.nothing, stop=True))

    def hurry(self) -> None:
        """Someone waits for what is queued: cut a ``linger`` under way (or the next) short."""
        self._urgent.set()

    def _barrier(self, barrier: Barrier) -> None:
        self._queue.put(barrier)
        self._urgent.set()
        self._start()

    # ---- the thread ---------------------------------------------------------------

    def _serve(self) -> None:
        """The thread (a failure outside the handler stops the writer)."""
        try:
            stopped = self._serve_queue()
        except BaseException as exc:
            self.record_failure(exc)
            self._closed = stopped = True
            shutdown.unregister(self)
        if stopped:
            self._finish()

    def _serve_queue(self) -> bool:
        """Hand batches to the handler; ``True`` once closed, ``False`` after ``idle_exit``."""
        get = self._queue.get
        stopping = backlog = False
        while True:
            try:
                first = get(block=False) if stopping else get(timeout=self.idle_exit)
            except queue.Empty:
                if stopping:
                    return True
                with self._lock:
                    if self._queue.qsize():
                        continue
                    self._thread = None
                return False
            if self.linger and not backlog and not isinstance(first, Barrier):
                self._urgent.wait(self.linger)
            if self._urgent.is_set():
                self._urgent.clear()
            batch, barriers = self._take(first)
            backlog = len(batch) >= self.batch_size  # more queued: no linger nor pause
            self._handle(batch)
            for barrier in barriers:
                stopping = stopping or barrier.stop
                if barrier.then is not None:
                    self._safely(barrier.then)
                barrier.release()
            if self._on_idle is not None and not self._queue.qsize():
                self._safely(self._on_idle)
            if self.pause and batch and not stopping and not backlog:
                self._urgent.wait(self.pause)
                self._urgent.clear()

    def _take(self, item: T | Barrier) -> tuple[list[T], list[Barrier]]:
        """``item`` and what follows it in the queue, up to ``batch_size`` items."""
        batch: list[T] = []
        barriers: list[Barrier] = []
        while True:
            if isinstance(item, Barrier):
                barriers.append(item)
            else:
                batch.append(item)
            if len(batch) >= self.batch_size:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        if self._nudge is not None:
            self._nudge.progressed()
        if self._room:
            self._room.release_all()
        return batch, barriers

    def _handle(self, batch: list[T]) -> None:
        """Hand ``batch`` to the handler, or to ``rejected`` once the writer has failed."""
        if batch and self.failure is None:
            try:
                self._handler(batch)
                self.handled, self.batches = self.handled + len(batch), self.batches + 1
                if self._nudge is not None:
                    self._nudge.progressed(len(batch))
            except BaseException as exc:
                self.record_failure(exc)
        rejected, failure = self._rejected, self.failure
        if batch and rejected is not None and failure is not None:
            self._safely(lambda: rejected(batch, failure))

    def record_failure(self, exc: BaseException) -> None:
        """A handler failed (or work done outside the thread on the writer's behalf)."""
        if self.failure is not None:
            return
        self.failure = exc
        on_failure = self._on_failure
        if on_failure is not None:
            self._safely(lambda: on_failure(exc))
        else:
            logger.error("writer %r failed; later items are not handled", self.name, exc_info=exc)

    def _finish(self) -> None:
        """The thread's last act: ``on_close``, then wake every waiter."""
        if self._on_close is not None:
            self._safely(self._on_close)
        self._stopped.set()
        self._close_waiters.release_all()
        self._room.release_all()
        self._leftovers()

    def _leftovers(self) -> None:
        """Once stopped: release barriers queued since, drop (count) items."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Barrier):
                item.release()
            else:
                self._drop()

    def _safely(self, call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException:
            logger.warning("writer %r: a callback failed", self.name, exc_info=True)
