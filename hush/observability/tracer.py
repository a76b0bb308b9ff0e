"""The tracer interface the engine reports to.

The engine holds one :class:`Span` per traced unit (run, graph, map item, node)
and passes parents explicitly, so concurrent items and concurrent runs never
mix up their parents. When no tracer is given the engine skips every call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

SpanKind = Literal["graph", "map", "item", "node", "llm"]


@runtime_checkable
class Generation(Protocol):
    """One LLM call, child of the LLM node's span."""

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
    """A traced unit of work; children are created from it."""

    def child(self, name: str, *, kind: SpanKind, input: Any = None) -> Span:
        """Start a child span (a nested graph, a map item or a node)."""

    def generation(
        self,
        name: str,
        *,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> Generation:
        """Start an LLM generation under this span."""

    def end(
        self,
        *,
        output: Any = None,
        error: BaseException | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Close the span; ``error`` marks it with level ERROR and the message."""


@runtime_checkable
class Tracer(Protocol):
    """Receives one root span per run and is flushed when the run ends."""

    def start_run(
        self,
        name: str,
        *,
        run_id: str,
        input: Any = None,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Span:
        """Start the trace of one run and return its root span."""

    async def flush(self, timeout: float) -> None:
        """Export what is queued, waiting at most ``timeout`` seconds; never raises."""
