"""The ids of the spans hush starts through OpenTelemetry: its own, not the SDK's random ones.

A run's trace id is :func:`~hush.observability.ids.trace_id_for` of its run id, the same in
every tracer and backend, and each span keeps the id its tracer gave it when it started
(:class:`~hush.observability.spans.OpenSpan`), so a span's parent is known before the
parent is built. :class:`RunIds` hands the SDK the ids asked for the next span started in
the calling thread, and the wrapped generator's otherwise.
"""

from __future__ import annotations

import threading

from opentelemetry.sdk.trace import Tracer
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator


class RunIds(IdGenerator):
    """Gives the next span started in this thread the ids set by :meth:`next`."""

    def __init__(self, fallback: IdGenerator | None = None) -> None:
        self.fallback = fallback or RandomIdGenerator()
        self._next = threading.local()

    def next(self, trace_id: int | None, span_id: int) -> None:
        """The ids of the next span this thread starts (``trace_id`` for a root only)."""
        self._next.trace_id = trace_id
        self._next.span_id = span_id

    def generate_trace_id(self) -> int:
        trace_id: int | None = getattr(self._next, "trace_id", None)
        if trace_id is None:
            return self.fallback.generate_trace_id()
        self._next.trace_id = None
        return trace_id

    def generate_span_id(self) -> int:
        span_id: int | None = getattr(self._next, "span_id", None)
        if span_id is None:
            return self.fallback.generate_span_id()
        self._next.span_id = None
        return span_id

    def is_trace_id_random(self) -> bool:
        """Run trace ids are hashes of run ids, not random (W3C ``random`` flag unset)."""
        return False


def run_ids(tracer: Tracer) -> RunIds:
    """The :class:`RunIds` of ``tracer`` (hush's own tracer of a provider), installed if not
    yet there; other tracers of the provider keep the provider's generator."""
    if not isinstance(tracer.id_generator, RunIds):
        tracer.id_generator = RunIds(tracer.id_generator)
    return tracer.id_generator
