"""A run's own events, ``run_start`` and ``run_end``, and who receives them.

:class:`Announcement` subscribes the tracer, the progress display and a
``stream()`` consumer when the run starts, and emits ``run_end`` only after
``run_start`` and always then: the engine calls :meth:`Announcement.end` from
the one exit stack of the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hush.core.events import Emitter, Event, Subscriber

if TYPE_CHECKING:
    from hush.core.progress import ProgressReporter
    from hush.core.state import RunRecord
    from hush.core.streaming import EventBuffer

logger = logging.getLogger("hush.engine")


class Tracer(Protocol):
    """What a tracer is to the engine (every hush tracer is one):
    ``subscribe`` is given the ``run_start`` event and returns what receives the run's
    events; ``flush`` exports them, waiting at most ``timeout`` (``None``: its own)."""

    def subscribe(self, start: Event) -> Subscriber: ...

    async def flush(self, timeout: float | None = None) -> None: ...


class Announcement:
    """The ``run_start`` and ``run_end`` of one run, and the emitter of its events."""

    def __init__(
        self,
        name: str,
        record: RunRecord,
        inputs: Mapping[str, Any],
        metadata: dict[str, Any],
        *,
        tracer: Tracer | None,
        reporter: ProgressReporter | None,
        stream: EventBuffer | None,
    ) -> None:
        self.record = record
        self.tracer = tracer
        self.reporter = reporter
        self.stream = stream
        self.output: dict[str, Any] | None = None
        """What the root graph wrote (``None`` if it did not finish)."""
        self.started = Event(
            "run_start",
            name,
            record.run_id,
            type="run",
            name=name,
            input=dict(inputs),
            node=name,
            metadata=metadata,
        )
        self.emit: Emitter | None = None
        self.announced = False

    def start(self) -> Emitter | None:
        """Subscribe the tracer, progress and stream; emit ``run_start``; return the emitter
        (``None`` when nothing subscribes)."""
        subscribers: list[Subscriber] = []
        traced = _subscribe(self.tracer, self.started)
        if traced is not None:
            subscribers.append(traced)
        if self.reporter is not None:
            subscribers.append(self.reporter)
        backpressure = None
        if self.stream is not None:
            subscribers.append(self.stream.put)
            backpressure = self.stream.room
        if subscribers:
            self.emit = Emitter(subscribers, backpressure)
            self.emit(self.started)
        self.announced = True
        return self.emit

    async def end(self, result: dict[str, Any], flush_timeout: float | None) -> None:
        """If the run was announced: close the progress display, emit ``run_end`` and let
        the tracer export the run for at most ``flush_timeout``."""
        if not self.announced:
            return
        stream = self.stream
        if stream is not None and stream.dropped_tokens:
            self.record.dropped_tokens = stream.dropped_tokens
            logger.warning(
                "stream: dropped %d token event(s) while the consumer was %d events behind",
                stream.dropped_tokens,
                stream.limit,
            )
        try:
            if self.reporter is not None:
                self.reporter.close()
        finally:
            if self.emit is not None:
                self.emit(self._run_end(result))
            await _flush(self.tracer, flush_timeout)

    def _run_end(self, result: dict[str, Any]) -> Event:
        started, record = self.started, self.record
        return Event(
            "run_end",
            started.path,
            started.run_id,
            type="run",
            name=started.name,
            output=self.output,
            status=record.status,
            error=record.errors[0] if record.errors else None,
            duration=record.duration,
            node=started.node,
            result=result,
        )


def _subscribe(tracer: Tracer | None, started: Event) -> Subscriber | None:
    """The tracer's subscriber for this run; a tracer that fails here is left out."""
    if tracer is None:
        return None
    try:
        return tracer.subscribe(started)
    except Exception:
        logger.warning("tracer failed to start the run; continuing without tracing", exc_info=True)
        return None


async def _flush(tracer: Tracer | None, timeout: float | None) -> None:
    """Let the tracer export the run, for at most ``timeout`` (its own default if ``None``).

    The bound is a task of its own (``asyncio.wait_for``), not a cancel scope of the run's
    task: the run's closing may be stepped by hand under a shield, and a scope entered in
    one step and left in another would not be the task's current one."""
    if tracer is None:
        return
    try:
        await asyncio.wait_for(
            tracer.flush(timeout), (timeout if timeout is not None else 30.0) + 1
        )
    except TimeoutError:
        return
    except Exception:
        logger.warning("tracer failed to finish the run", exc_info=True)
