"""The base of hush's tracers: a run's events paired into spans in a thread of the tracer's own.

On the event loop, a tracer only queues each event (a fraction of a
microsecond). Its daemon thread handles them in order: a ``node_start`` opens
a span under its parent's, the matching ``node_end`` (``run_end`` for the
root) ends it, an ``llm`` event is a finished child of its node's span, and
spans still open when the run ends end with it as ``unfinished``. Subclasses
turn spans into what they export. The thread lets go of the GIL every
millisecond, and a call that hangs there (an export to an unreachable server)
never blocks the loop nor keeps the process from ending.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter, sleep
from typing import Any

from hush.core.events import Event, Subscriber
from hush.observability.ids import new_span_id, trace_id_for

logger = logging.getLogger(__name__)

YIELD_EVERY = 0.001
"""Seconds of work after which the thread lets the event loop have the GIL."""
IDLE_EXIT = 10.0
"""Seconds with nothing queued after which the thread ends (the next event starts another),
so an unused tracer holds no thread and can be garbage-collected."""


@dataclass(slots=True)
class OpenSpan:
    """A span whose start arrived and whose end did not yet."""

    id: int
    parent: OpenSpan | None
    start: Event

    @property
    def name(self) -> str:
        return self.start.name or self.start.path


@dataclass(slots=True)
class RunSpans:
    """One run being traced."""

    start: Event
    trace_id: int
    fields: dict[str, Any]
    """``user_id``, ``session_id``, ``tags`` and ``metadata`` of the run."""
    open: dict[str, OpenSpan] = field(default_factory=dict)
    common: dict[str, Any] = field(default_factory=dict)
    """What a tracer shares between the spans of the run."""

    @property
    def run_id(self) -> str:
        return self.start.run_id

    @property
    def name(self) -> str:
        return self.start.name or self.start.path


class SpanTracer:
    """Pairs events into spans in the tracer's thread; subclasses export them."""

    backend = "trace"

    def __init__(self, *, flush_timeout: float = 5.0, log: logging.Logger | None = None) -> None:
        self.flush_timeout = flush_timeout
        self._log = log or logger
        self._runs: dict[str, RunSpans] = {}
        self._queue: queue.SimpleQueue[Event | _Barrier] = queue.SimpleQueue()
        self._failures = 0
        self._stopped = False
        self.warned = False
        """Whether a warning about this tracer's exports was already logged."""
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        _live.add(self)

    def subscribe(self, start: Event) -> Subscriber:
        """Trace the run that ``start`` opens: its events are queued for the tracer's thread."""
        return self._put

    async def flush(self, timeout: float | None = None) -> None:
        """Wait at most ``timeout`` seconds (default ``flush_timeout``) until every event so far
        is handled and exported; on timeout, one warning, the work going on. Never raises."""
        bound = self.flush_timeout if timeout is None else timeout
        if not await self._drained(bound, self._export):
            self._late(bound)

    def close(self, timeout: float | None = None) -> None:
        """Export what is queued and release what the tracer holds, blocking at most
        ``timeout`` seconds (default ``flush_timeout``); later events are dropped. Called at
        interpreter exit for a tracer not closed."""
        if self._stopped:
            return
        _live.discard(self)
        bound = self.flush_timeout if timeout is None else timeout
        if not self._stop(bound, self._closing):
            self._late(bound, "at close; what is left is dropped")

    @property
    def destination(self) -> str:
        """Where the tracer exports, for messages."""
        return "its exporter"

    # ---- what subclasses provide (called in the tracer's thread) ----------------------

    def run_started(self, run: RunSpans) -> bool:
        """Called for each new run; ``False`` leaves it untraced."""
        return True

    def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        """Export a span; ``end`` is its ``node_end`` or ``run_end`` event."""

    def llm_called(self, run: RunSpans, owner: OpenSpan | None, event: Event) -> None:
        """Export an LLM call (``event.llm``), a child of ``owner``."""

    def _export(self) -> None:
        """Called by :meth:`flush` once everything queued before it is handled."""

    def _closing(self) -> None:
        """Called by :meth:`close` once everything queued before it is handled."""

    def _idle(self) -> None:
        """Called whenever nothing is queued."""

    def _late(self, bound: float, what: str | None = None) -> None:
        self.warned = True
        self._log.warning(
            "%s export to %s did not finish within %.1f s %s",
            self.backend,
            self.destination,
            bound,
            what
            or "(backend unreachable or slow?); the run is not affected and export "
            "continues in the background",
        )

    # ---- the queue and the thread ---------------------------------------------------

    def _put(self, event: Event) -> None:
        if not self._stopped:
            self._queue.put(event)
            if self._thread is None:
                self._start_thread()

    def _send(self, barrier: _Barrier) -> None:
        self._queue.put(barrier)
        if self._thread is None:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                name = f"hush-{type(self).__name__}"
                self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
                self._thread.start()

    async def _drained(self, timeout: float, then: Callable[[], object] | None = None) -> bool:
        """Wait until what was queued before is handled and ``then`` (run in the thread)
        returned; ``False`` after ``timeout`` seconds, the work going on."""
        if self._stopped:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._send(_Barrier(then, lambda: _resolve_soon(loop, future)))
        try:
            await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    def _stop(self, timeout: float, then: Callable[[], object] | None = None) -> bool:
        """Handle what is queued, run ``then`` and stop the thread, blocking at most
        ``timeout`` seconds (``False`` if that was not enough); later events are dropped."""
        if self._stopped:
            return True
        self._stopped = True
        done = threading.Event()
        self._send(_Barrier(then, done.set))
        self._send(_Barrier(None, None))
        return done.wait(max(timeout, 0.0))

    def _loop(self) -> None:
        get, empty = self._queue.get, self._queue.empty
        held = perf_counter()
        while True:
            try:
                item = get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._thread_lock:
                    if empty():
                        self._thread = None
                        return
                continue
            if isinstance(item, _Barrier):
                self._run_idle()
                if item.release is None:
                    return
                item.run()
                continue
            try:
                self._handle(item)
            except Exception:
                self._failures += 1
                self._log.log(
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
        try:
            self._idle()
        except Exception:
            logger.debug("tracing idle hook failed", exc_info=True)

    def _handle(self, event: Event) -> None:
        kind = event.kind
        if kind == "run_start":
            trace_id = int(trace_id_for(event.run_id), 16)
            run = RunSpans(event, trace_id, dict(event.metadata or {}))
            if not self.run_started(run):
                return
            self._runs[event.run_id] = run
        elif (found := self._runs.get(event.run_id)) is None:
            return
        else:
            run = found
        if kind in ("run_start", "node_start"):
            parent = run.open.get(event.parent or "") if kind == "node_start" else None
            run.open[event.path] = OpenSpan(new_span_id(), parent, event)
        elif kind == "llm" and event.llm is not None:
            self.llm_called(run, run.open.get(event.path), event)
        elif kind in ("node_end", "run_end") and (span := run.open.pop(event.path, None)):
            self.span_ended(run, span, event)
        if kind == "run_end":
            for path, orphan in list(run.open.items()):
                end = Event("node_end", path, event.run_id, event.time, status="unfinished")
                self.span_ended(run, orphan, end)
            del self._runs[event.run_id]


class _Barrier:
    """Runs ``then`` once what was queued before it is handled, then ``release``; with no
    ``release``, stops the thread."""

    __slots__ = ("release", "then")

    def __init__(
        self, then: Callable[[], object] | None, release: Callable[[], object] | None
    ) -> None:
        self.then = then
        self.release = release

    def run(self) -> None:
        try:
            if self.then is not None:
                self.then()
        except Exception:
            logger.warning("tracing export failed", exc_info=True)
        finally:
            if self.release is not None:
                self.release()


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(resolve)


_live: weakref.WeakSet[SpanTracer] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, export what the tracers not closed still hold (each bounded by
    its ``flush_timeout``)."""
    for tracer in list(_live):
        tracer.close()
