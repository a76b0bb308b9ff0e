"""The base of hush's tracers: a run's events paired into spans in a thread of the tracer's own.

On the event loop, a tracer only queues each event (a fraction of a
microsecond) on its :class:`~hush.background.writer.BackgroundWriter`. The
writer's thread handles them in order: a ``node_start`` opens a span under its
parent's (:meth:`SpanTracer.span_started`), the matching ``node_end``
(``run_end`` for the root) ends it (:meth:`SpanTracer.span_ended`), an ``llm``
event is a finished child of its node's span, and spans still open when the run
ends end with it as ``unfinished``. Subclasses turn spans into what they
export. The thread lets go of the GIL every millisecond; a call that hangs there
(an export to an unreachable server) never blocks the loop, and the exit waits
for it at most ``flush_timeout`` (none while the backend is down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from time import monotonic, perf_counter, sleep

from hush.background import BackgroundWriter, shutdown
from hush.core.events import Event, Subscriber
from hush.observability.health import BackendHealth
from hush.observability.ids import new_span_id, trace_id_for
from hush.observability.open_spans import (
    OpenSpan,
    RunSpans,
    Subscription,
    decided_later,
    hold,
    sampled,
)

logger = logging.getLogger(__name__)

YIELD_EVERY = 0.001
"""Seconds of work after which the thread lets the event loop have the GIL."""
IDLE_EXIT = 10.0
"""Seconds idle after which the thread ends (the next event starts another one)."""
DEFAULT_MAX_QUEUED_EVENTS = 100_000
"""Events that may wait for a tracer's thread; more are dropped (counted in one warning)."""
_NEVER_DROPPED = frozenset({"run_start", "run_end"})
"""Events kept even when the queue is full: a run's trace always begins and ends."""

__all__ = ["OpenSpan", "RunSpans", "SpanTracer", "sampled"]


class SpanTracer:
    """Pairs events into spans in the tracer's thread; subclasses export them.

    What a tracer may cost a run is bounded: events beyond ``max_queued_events``
    waiting for the thread are dropped (never waited for), counted on the run's root
    span or record (``dropped_events``) and in one warning at the next flush;
    :meth:`flush` and :meth:`close` share one deadline, so a wait that ran out is not
    waited again until the thread catches up, and neither waits while the backend is
    known to be down (:class:`~hush.observability.health.BackendHealth`). A thread
    that fails disables the tracer with one warning naming the cause.

    ``sample`` below 1 traces that share of map items, drawn by :func:`sampled` as each
    starts (:class:`Subscription`); the engine builds no event inside the others, and traces
    one that fails from its errors (:mod:`hush.core.quiet_items`). An item run elsewhere (an
    executor) not drawn is held until it ends, then kept if it failed; runs, graphs and maps
    are always traced.
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
        self._dropped_in: dict[str, int] = {}
        self._failures = 0
        self._deadline: float | None = None
        self._late_for: float | None = None
        self.failure: BaseException | None = None
        """What stopped the tracer's thread, if it failed (the tracer is then disabled)."""
        self.name = f"{self.backend} tracing"
        """The tracer, in messages."""
        self.writer: BackgroundWriter[Event] = BackgroundWriter(
            self._handle_batch,
            name=f"hush-{type(self).__name__}",
            maxsize=max_queued_events,
            idle_exit=IDLE_EXIT,
            exit_timeout=flush_timeout,
            on_error="count",
            on_failure=self._failed,
            on_idle=partial(self._safely, self._idle, logging.DEBUG),
            on_close=partial(self._safely, self._closing),
        )
        """The queue and thread the events go through (drop-and-count when full)."""
        shutdown.unregister(self.writer)
        shutdown.register(self)

    def subscribe(self, start: Event) -> Subscriber:
        """Trace the run that ``start`` opens (events of items not drawn are never built)."""
        return Subscription(self._put, start.run_id, self.sample)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait at most ``timeout`` seconds (default ``flush_timeout``) until every event so far
        is handled and exported, sharing the deadline of any wait still unfinished; on
        timeout, one warning naming the cause, the work going on. Never raises."""
        bound = self.flush_timeout if timeout is None else timeout
        deadline = self._deadline_for(bound)
        if not await self._drained(deadline):
            self._late(bound, deadline, "the work goes on in the background")
        self._report_overflow()

    def close(self, timeout: float | None = None) -> None:
        """Export what is queued and release what the tracer holds, blocking at most
        ``timeout`` seconds (default ``flush_timeout``; the deadline of a wait still unfinished,
        none while the backend is down); later events are dropped. Called at interpreter
        exit for a tracer not closed."""
        if self.writer.closed:
            return
        shutdown.unregister(self)
        bound = self.flush_timeout if timeout is None else timeout
        deadline = self._deadline_for(bound)
        if not self.writer.close(max(deadline - monotonic(), 0.0)):
            self._late(bound, deadline, "at close; what is left is dropped")
        self._report_overflow()

    @property
    def destination(self) -> str:
        """Where the tracer exports, for messages."""
        return "its exporter"

    # ---- closed at interpreter exit (hush.background.shutdown) -----------------------------

    @property
    def exit_timeout(self) -> float:
        """How long the exit waits for the tracer: what is left of its flush deadline, nothing
        while its backend is down or its thread failed."""
        return max(self._deadline_for(self.flush_timeout) - monotonic(), 0.0)

    @exit_timeout.setter
    def exit_timeout(self, seconds: float) -> None:
        self.flush_timeout = seconds

    def begin_close(self) -> None:
        """Start closing without waiting (at exit)."""
        shutdown.unregister(self)
        self.writer.begin_close()

    def wait_closed(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the close to finish; ``True`` also when it did
        not but the reason was already said (the backend is down, the thread failed)."""
        done = self.writer.wait_closed(timeout)
        return done or self.health.down or self.failure is not None

    def after_fork(self) -> None:
        """In a forked child the thread does not exist: the next event starts one."""
        self.writer.after_fork()

    # ---- what subclasses provide (called in the tracer's thread) ----------------------

    def run_started(self, run: RunSpans) -> bool:
        """Called for each new run; ``False`` leaves it untraced."""
        return True

    def span_started(self, run: RunSpans, span: OpenSpan) -> None:
        """A span started (in an item not drawn: replayed, in order, once the item is kept)."""

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
        backlog = self.writer.pending
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
        dropped = self.writer.take_dropped()
        if dropped and self.failure is None:
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
        writer = self.writer
        if writer.closed:
            return
        if not writer.offer(event, force=event.kind in _NEVER_DROPPED) and self.failure is None:
            self._dropped_in[event.run_id] = self._dropped_in.get(event.run_id, 0) + 1

    async def _drained(self, deadline: float) -> bool:
        """Wait until what was queued before is handled and exported; ``False`` at
        ``deadline``, the work going on."""
        if self.writer.closed or self.failure is not None:
            return True
        caught_up = partial(self._caught_up, self._deadline)
        return await self.writer.aflush(max(deadline - monotonic(), 0.0), then=caught_up)

    def _caught_up(self, deadline: float | None) -> None:
        """In the thread, at a flush: export, and end the shared wait it belongs to."""
        self._safely(self._idle, logging.DEBUG)
        self._safely(self._export)
        if deadline is not None and self._deadline == deadline:
            self._deadline = None

    def _handle_batch(self, events: list[Event]) -> None:
        """The thread: handle ``events`` in order, letting the loop have the GIL every
        :data:`YIELD_EVERY` seconds; an exception loses its event's span only."""
        held = perf_counter()
        for event in events:
            try:
                self._handle(event)
            except Exception:
                self._failures += 1
                self._log.log(
                    logging.WARNING if self._failures == 1 else logging.DEBUG,
                    "tracing could not handle a %s event of %s; its span is lost",
                    event.kind,
                    event.path,
                    exc_info=self._failures == 1,
                )
            if perf_counter() - held > YIELD_EVERY:
                sleep(0)
                held = perf_counter()

    def _failed(self, exc: BaseException) -> None:
        """The thread failed: the tracer is disabled (later events are dropped), one warning."""
        self.failure = exc
        self._log.warning(
            "%s tracing stopped: its thread failed (%s: %s); later runs are not traced, the "
            "runs are not affected",
            self.backend,
            type(exc).__name__,
            exc,
        )

    def _safely(self, hook: Callable[[], None], level: int = logging.WARNING) -> None:
        try:
            hook()
        except Exception:
            what = getattr(hook, "__name__", "hook").strip("_")
            logger.log(level, "tracing %s failed", what, exc_info=True)

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
            if self.sample < 1.0 and decided_later(opened, parent, run.run_id, self.sample):
                hold(opened.holder, [partial(self._emit_start, run, opened)], False)
                return
            self._emit_start(run, opened)
        elif kind == "llm" and event.llm is not None:
            owner = run.open.get(event.path)
            holder = owner.holder if owner is not None else None
            export = partial(self._emit_llm, run, owner, event)
            if holder is None:
                export()
            else:
                hold(holder, [export], event.llm.error is not None)
        elif kind == "node_end" and (span := run.open.pop(event.path, None)):
            self._ended(run, span, event)
        elif kind == "run_end":
            run.dropped = self._dropped_in.pop(event.run_id, 0)
            try:
                self._end_run(run, event)
            finally:
                del self._runs[event.run_id]

    def _ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        """Export a span that ended, or hold it for the item around it. A sampled item's end
        decides: with a failure inside or its share drawn (:func:`sampled`), it and what it
        held go on (to the item around it, if any); otherwise they are dropped unbuilt."""
        if span.held is None and span.item is None:
            self._emit_span(run, span, end)
            return
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
            hold(span.item, exports, failed or span.errored)

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
        """Whether to build the span at hand: not while the backend is down (counted dropped)."""
        if self.health.available():
            return True
        self.health.gave_up(1)
        return False
