"""What a tracer is to the engine.

A tracer subscribes to a run's events (:mod:`hush.core.events`): the engine
calls :meth:`Tracer.subscribe` with the ``run_start`` event and hands every
later event of that run to what it returns, on the event loop. The tracers
here only queue the event there; spans are built and exported in a thread of
their own. When no tracer is given, the engine builds no event.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hush.core.events import Event, Subscriber


@runtime_checkable
class Tracer(Protocol):
    """Receives the events of each run it is given to, and exports them."""

    def subscribe(self, start: Event) -> Subscriber:
        """Begin the trace of the run that ``start`` (its ``run_start`` event) opens;
        return what receives the run's events, ``start`` included. Must be thread-safe."""

    async def flush(self, timeout: float | None = None) -> None:
        """Export what is queued, waiting at most ``timeout`` seconds (``None``: the
        tracer's own ``flush_timeout``); never raises."""
