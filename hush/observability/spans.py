"""The base of hush's tracers: a run's events paired into spans in a thread of the tracer's own.

On the event loop, a tracer only queues each event (a fraction of a
microsecond). Its daemon thread handles them in order: a ``node_start`` opens
a span under its parent's (:meth:`SpanTracer.span_started`), the matching
``node_end`` (``run_end`` for the root) ends it (:meth:`SpanTracer.span_ended`),
an ``llm`` event is a finished child of its node's span, and spans still open
when the run ends end with it as ``unfinished``. Subclasses
turn spans into what they export. The thread lets go of the GIL every
millisecond, and a call that hangs there (an export to an unreachable server)
never blocks the loop nor keeps the process from ending.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import queue
import threading
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from time import monotonic, perf_counter, sleep
from typing import Any

from hush.core.events import Event, Subscriber
from hush.observability.health import BackendHealth
from hush.observability.ids import new_span_id, trace_id_for

logger = logging.getLogger(__name__)

YIELD_EVERY = 0.001
"""Seconds of work after which the thread lets the event loop have the GIL."""
IDLE_EXIT = 10.0
"""Seconds with nothing queued after which the thread ends (the next event starts another),
so an unused tracer holds no thread and can be garbage-collected."""
DEFAULT_MAX_QUEUED_EVENTS = 100_000
"""Events that may wait for a tracer's thread; more are dropped (counted in one warning)."""
_NEVER_DROPPED = frozenset({"run_start", "run_end"})
"""Events kept even when the queue is full: a run's trace always begins and ends."""


@dataclass(slots=True)
class OpenSpan:
    """A span whose start arrived and whose end did not yet."""

    id: int
    parent: OpenSpan | None
    start: Event
    item: OpenSpan | None = None
    """The innermost map item around it, whose end decides whether it is exported (sampling)."""
    held: list[Callable[[], None]] | None = None
    """A sampled item's exports waiting for its end."""
    errored: bool = False
    """A sampled item that holds a failure (always exported)."""
    export: Any = None
    """What the tracer made of the span when it started (an OpenTelemetry span)."""

    @property
    def name(self) -> str:
        return self.start.name or self.start.path

    @property
    def holder(self) -> OpenSpan | None:
        """The item whose end decides on what ends inside this span: itself or its ``item``."""
        return self if self.held is not None else self.item


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
    """Pairs events into spans in the tracer's thread; subclasses export them.

    What a tracer may cost a run is bounded: events beyond ``max_queued_events``
    waiting for the thread are dropped (never waited for) and counted in one
    warning at the next flush; :meth:`flush` and :meth:`close` share one
    deadline, so a wait that ran out is not waited again until the thread
    catches up, and neither waits while the backend is known to be down
    (:class:`~hush.observability.health.BackendHealth`). A thread that fails
    disables the tracer with one warning naming the cause.

    ``sample`` below 1 traces that share of map items: an item's spans are held unbuilt
    until it ends, then kept with it if anything in it failed or :func:`sampled` draws it;
    runs, graphs and maps are always traced.
    """

    backend = "trace"

    def __init__(
        self,
        *,
        flush_timeout: float = 5.0,
        log: logging.Logger | None = None,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        sample: float = 1.0,
    ) -> None:
        if max_queued_events < 1:
            raise ValueError(f"max_queued_events must be at least 1, got {max_queued_events!r}")
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= 1:
            raise ValueError(f"sample must be a number between 0 and 1, got {sample!r}")
        self.sample = float(sample)
        """Share of map items traced (each decided at its end; failed items are always)."""
        self.flush_timeout = flush_timeout
        self.max_queued_events = max_queued_events
        self._log = log or logger
        self.health = BackendHealth(self.backend, self.destination, self._log)
        """Whether the backend answers; exports and waits consult it."""
        self._runs: dict[str, RunSpans] = {}
        self._queue: queue.SimpleQueue[Event | _Barrier] = queue.SimpleQueue()
        self._failures = 0
        self._stopped = False
        self._deadline: float | None = None
        self._late_for: float | None = None
        self._overflow = 0
        self._overflow_lock = threading.Lock()
        self.failure: BaseException | None = None
        """What stopped the tracer's thread, if it failed (the tracer is then disabled)."""
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        _live.add(self)

    def subscribe(self, start: Event) -> Subscriber:
        """Trace the run that ``start`` opens: its events are queued for the tracer's thread."""
        return self._put

    async def flush(self, timeout: float | None = None) -> None:
        """Wait at most ``timeout`` seconds (default ``flush_timeout``) until every event so far
        is handled and exported, sharing the deadline of any wait still unfinished; on
        timeout, one warning naming the cause, the work going on. Never raises."""
        bound = self.flush_timeout if timeout is None else timeout
        deadline = self._deadline_for(bound)
        if not await self._drained(deadline, self._export):
            self._late(bound, deadline, "the work goes on in the background")
        self._report_overflow()

    def close(self, timeout: float | None = None) -> None:
        """Export what is queued and release what the tracer holds, blocking at most
        ``timeout`` seconds (default ``flush_timeout``; the deadline of a wait still unfinished,
        none while the backend is down); later events are dropped. Called at interpreter
        exit for a tracer not closed."""
        if self._stopped:
            return
        _live.discard(self)
        bound = self.flush_timeout if timeout is None else timeout
        deadline = self._deadline_for(bound)
        if not self._stop(deadline, self._closing):
            self._late(bound, deadline, "at close; what is left is dropped")
        self._report_overflow()

    @property
    def destination(self) -> str:
        """Where the tracer exports, for messages."""
        return "its exporter"

    # ---- what subclasses provide (called in the tracer's thread) ----------------------

    def run_started(self, run: RunSpans) -> bool:
        """Called for each new run; ``False`` leaves it untraced."""
        return True

    def span_started(self, run: RunSpans, span: OpenSpan) -> None:
        """A span started (in a sampled item: replayed, in order, once the item is kept)."""

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

    # ---- deadlines and what is said when they pass --------------------------------------

    def _deadline_for(self, bound: float) -> float:
        """When a wait of ``bound`` seconds ends: now while the backend is down (and no retry
        is due) or the tracer failed, no later than the deadline of a wait the thread has
        not caught up with."""
        now = monotonic()
        if self.failure is not None or not self.health.available():
            return now
        pending = self._deadline
        if pending is not None:
            return min(pending, now + max(bound, 0.0))
        if bound <= 0:
            return now
        self._deadline = now + bound
        return self._deadline

    def _late(self, bound: float, deadline: float, what: str) -> None:
        """A wait ran out at ``deadline``: one warning naming the cause (none for a deadline
        already warned about, an outage already reported or a failed thread). A request
        unanswered for half the wait or more marks the backend down; a shorter one is only
        slow."""
        if self._late_for == deadline or self.failure is not None or self.health.down:
            return
        self._late_for = deadline
        stalled = self.health.stalled_for()
        if stalled is not None and stalled >= bound / 2:
            self.health.failed(f"no answer within {stalled:.1f} s")
            return
        backlog = self._queue.qsize()
        if backlog:
            self._log.warning(
                "%s tracing fell behind the run: %d event(s) not yet handled after %.1f s "
                "(%s); the run is not affected",
                self.backend,
                backlog,
                bound,
                what,
            )
            return
        self.health.slow(bound, what)

    def _report_overflow(self) -> None:
        with self._overflow_lock:
            dropped, self._overflow = self._overflow, 0
        if dropped:
            self._log.warning(
                "%s tracing dropped %d event(s): %d were already waiting for the tracer's thread "
                "(max_queued_events); the traces of the runs concerned are incomplete, the runs "
                "are not affected",
                self.backend,
                dropped,
                self.max_queued_events,
            )

    # ---- the queue and the thread ---------------------------------------------------

    def _put(self, event: Event) -> None:
        if self._stopped:
            return
        if self._queue.qsize() >= self.max_queued_events and event.kind not in _NEVER_DROPPED:
            with self._overflow_lock:
                self._overflow += 1
            return
        self._queue.put(event)
        if self._thread is None:
            self._start_thread()

    def _send(self, barrier: _Barrier) -> None:
        self._queue.put(barrier)
        if self._thread is None:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None and self.failure is None:
                name = f"hush-{type(self).__name__}"
                self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
                self._thread.start()

    async def _drained(self, deadline: float, then: Callable[[], object] | None = None) -> bool:
        """Wait until what was queued before is handled and ``then`` (run in the thread)
        returned; ``False`` at ``deadline``, the work going on."""
        if self._stopped:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._send(_Barrier(then, lambda: _resolve_soon(loop, future), self._deadline))
        try:
            await asyncio.wait_for(asyncio.shield(future), max(deadline - monotonic(), 0.0))
        except TimeoutError:
            return False
        return True

    def _stop(self, deadline: float, then: Callable[[], object] | None = None) -> bool:
        """Handle what is queued, run ``then`` and stop the thread, blocking until
        ``deadline`` at most (``False`` if that was not enough); later events are dropped."""
        if self._stopped:
            return True
        self._stopped = True
        done = threading.Event()
        self._send(_Barrier(then, done.set, self._deadline))
        self._send(_Barrier(None, None, None))
        return done.wait(max(deadline - monotonic(), 0.0))

    def _loop(self) -> None:
        """The thread: serve the queue; if that fails, disable the tracer (one warning)."""
        try:
            self._serve()
        except BaseException as exc:
            self._failed(exc)

    def _serve(self) -> None:
        get, empty = self._queue.get, self._queue.empty
        held = perf_counter()
        while True:
            try:
                item = get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._thread_lock:
                    if not empty():
                        continue
                    self._thread = None
                if not empty():
                    self._start_thread()
                return
            if isinstance(item, _Barrier):
                self._run_idle()
                if item.release is None:
                    return
                item.run()
                if item.deadline is not None and self._deadline == item.deadline:
                    self._deadline = None
                continue
            try:
                self._handle(item)
            except Exception:
                self._failures += 1
                self._log.log(
                    logging.WARNING if self._failures == 1 else logging.DEBUG,
                    "tracing could not handle a %s event of %s; its span is lost",
                    item.kind,
                    item.path,
                    exc_info=self._failures == 1,
                )
            if empty():
                self._run_idle()
            elif perf_counter() - held > YIELD_EVERY:
                sleep(0)
                held = perf_counter()

    def _failed(self, exc: BaseException) -> None:
        """The thread failed: the tracer is disabled, waiters are released, one warning."""
        self.failure = exc
        self._stopped = True
        _live.discard(self)
        with self._thread_lock:
            self._thread = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Barrier) and item.release is not None:
                item.release()
        self._log.warning(
            "%s tracing stopped: its thread failed (%s: %s); later runs are not traced, the "
            "runs are not affected",
            self.backend,
            type(exc).__name__,
            exc,
        )

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
            opened = OpenSpan(new_span_id(), parent, event)
            run.open[event.path] = opened
            start = partial(self._emit_start, run, opened)
            if self.sample < 1.0:
                opened.item = parent.holder if parent is not None else None
                if event.type == "item":
                    opened.held = [start]
                    return
                if opened.item is not None:
                    _hold(opened.item, [start], False)
                    return
            start()
        elif kind == "llm" and event.llm is not None:
            owner = run.open.get(event.path)
            holder = owner.holder if owner is not None else None
            export = partial(self._emit_llm, run, owner, event)
            if holder is None:
                export()
            else:
                _hold(holder, [export], event.llm.error is not None)
        elif kind == "node_end" and (span := run.open.pop(event.path, None)):
            self._ended(run, span, event)
        elif kind == "run_end":
            try:
                self._end_run(run, event)
            finally:
                del self._runs[event.run_id]

    def _ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        """Export a span that ended, or hold it for the item around it. A sampled item's end
        decides: with a failure inside or its share drawn (:func:`sampled`), it and what it
        held go on (to the item around it, if any); otherwise they are dropped unbuilt."""
        failed = end.error is not None or end.status not in (None, "ok")
        exports: list[Callable[[], None]] = [partial(self._emit_span, run, span, end)]
        if span.held is not None:
            if not (failed or span.errored or sampled(run.run_id, span.start.path, self.sample)):
                return
            exports = [*span.held, *exports]
        if span.item is None:
            for export in exports:
                export()
        else:
            _hold(span.item, exports, failed or span.errored)

    def _emit_start(self, run: RunSpans, span: OpenSpan) -> None:
        if self.health.available():
            self.span_started(run, span)

    def _emit_span(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        if self._exporting():
            self.span_ended(run, span, end)

    def _emit_llm(self, run: RunSpans, owner: OpenSpan | None, event: Event) -> None:
        if self._exporting():
            self.llm_called(run, owner, event)

    def _end_run(self, run: RunSpans, event: Event) -> None:
        """End the root span, and every span still open as ``unfinished``; what the sampled
        items among them held goes first, so every span starts before any of them ends."""
        root = run.open.pop(event.path, None)
        for orphan in run.open.values():
            for export in orphan.held or ():
                export()
        if root is not None:
            self._emit_span(run, root, event)
        for path, orphan in run.open.items():
            end = Event("node_end", path, event.run_id, event.time, status="unfinished")
            self._emit_span(run, orphan, end)

    def _exporting(self) -> bool:
        """Whether to build the span at hand: not while the backend is down (it is counted
        as dropped)."""
        if self.health.available():
            return True
        self.health.gave_up(1)
        return False


def _hold(item: OpenSpan, exports: list[Callable[[], None]], failed: bool) -> None:
    """Keep ``exports`` until ``item`` ends; a failure among them means it is exported."""
    assert item.held is not None
    item.held.extend(exports)
    item.errored = item.errored or failed


def sampled(run_id: str, path: str, share: float) -> bool:
    """Whether the item at ``path`` of run ``run_id`` is among the ``share`` traced: a hash of
    both, so the same run id keeps the same items."""
    if share >= 1.0:
        return True
    return zlib.crc32(f"{run_id}\x00{path}".encode()) < share * 2**32


class _Barrier:
    """Runs ``then`` once what was queued before it is handled, then ``release``; with no
    ``release``, stops the thread. ``deadline`` is the shared wait deadline it belongs to."""

    __slots__ = ("deadline", "release", "then")

    def __init__(
        self,
        then: Callable[[], object] | None,
        release: Callable[[], object] | None,
        deadline: float | None,
    ) -> None:
        self.then = then
        self.release = release
        self.deadline = deadline

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
    its ``flush_timeout``, none while its backend is down)."""
    for tracer in list(_live):
        tracer.close()


def _forget_threads() -> None:
    """In a forked child the tracers' threads do not exist: the next event starts new ones."""
    for tracer in list(_live):
        tracer._thread = None
        tracer._thread_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)
