"""What a tracer is to the engine, and the spans you can open by hand.

A tracer subscribes to a run's events (:mod:`hush.core.events`): the engine
calls :meth:`Tracer.subscribe` with the ``run_start`` event and hands every
later event of that run to what it returns, on the event loop. The tracers
here only queue the event there; spans are built and exported in a thread of
their own. When no tracer is given, the engine builds no event.

``tracer.start_run(...)`` gives a :class:`Span` to trace work that does not run
in a graph; it emits the same events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from hush.core.events import Event, Subscriber

SpanKind = Literal["graph", "map", "item", "node", "llm"]


@runtime_checkable
class Tracer(Protocol):
    """Receives the events of each run it is given to, and exports them."""

    def subscribe(self, start: Event) -> Subscriber:
        """Begin the trace of the run that ``start`` (its ``run_start`` event) opens;
        return what receives the run's events, ``start`` included. Must be thread-safe."""

    async def flush(self, timeout: float | None = None) -> None:
        """Export what is queued, waiting at most ``timeout`` seconds (``None``: the
        tracer's own ``flush_timeout``); never raises."""


@runtime_checkable
class Generation(Protocol):
    """One LLM call opened by hand, child of a span."""

    def end(
        self,
        *,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        model: str | None = None,
        error: BaseException | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Close the generation with its reply, token usage and error, if any."""


@runtime_checkable
class Span(Protocol):
    """A unit of work opened by hand; children are opened from it."""

    def child(self, name: str, *, kind: SpanKind, input: Any = None) -> Span:
        """Open a child span."""

    def generation(
        self,
        name: str,
        *,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> Generation:
        """Open an LLM generation under this span."""

    def end(
        self,
        *,
        output: Any = None,
        error: BaseException | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Close the span; ``error`` marks it failed. A second ``end`` does nothing."""
