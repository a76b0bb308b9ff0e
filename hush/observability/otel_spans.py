"""How a hush span becomes an OpenTelemetry span: through the SDK, or built directly.

:class:`SdkSpans` goes through the SDK's public API (``Tracer.start_span`` when the span
starts, ``Span.end`` when it ends): any provider's processors see ``on_start`` and
``on_end``, and its span limits and sampler apply. That is most of what an OTel span
cost the tracer's thread (the sampler, ``BoundedAttributes`` checking every attribute
twice, the span's lock, the copy to a ``ReadableSpan``, the Langfuse processor's
``on_start`` reading the context), on a thread sharing the GIL with the event loop.

:class:`DirectSpans` serves hush's own :class:`PrivateProvider` while its processors are
all hush's (a processor added by anyone else turns it off for the spans started after):
a span's start only computes its attributes and what hush's processor's ``on_start``
would add (:meth:`~hush.observability.otel.OTelTracer.own_processor_start`), and its end
writes the span straight to OTLP bytes for the tracer's exporter (:attr:`DirectSpans.wire`,
:mod:`~hush.observability.wire_batches`), or, once someone else's processor was added,
builds the ``ReadableSpan`` the SDK would have built and hands it to the processors'
``on_end``. The sampler is asked once per trace (at its root span; the private
provider's samplers decide by trace id and parent alone), the span limits apply with the
SDK's own ``BoundedAttributes`` whenever they could cut anything. What it gives up: the
SDK's self-metrics (``otel.sdk.span.*``, recorded only when a global meter provider is
set). ``tests/observability/test_otel_direct_spans.py`` decodes the OTLP bytes of both
paths for the same events and compares them attribute by attribute. Measured with
``python benchmarks/bench_otel_span_cost.py --runs 3`` (the old and new code alternating,
9 rounds each, load average about 5 on 2 cores), the tracer thread's CPU per span of a
map of code nodes went from 108–170 to 33–54 µs (OTLP) and from 125–251 to 43–68 µs
(Langfuse); LocalTracer's, for scale, is 44–72 µs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    Tracer,
    TracerProvider,
    sampling,
)
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

from hush.observability.open_spans import OpenSpan
from hush.observability.otel_ids import RunIds, run_ids
from hush.observability.otlp_wire import span_fields
from hush.observability.wire_batches import WireBatches

Attributes = dict[str, Any]
Failure = tuple[str, str, str]
"""An error as (type, message, traceback)."""

DEFAULT_MAX_SPAN_ATTRIBUTES = 1_024
"""Attributes a span of a private provider keeps unless ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` or
``OTEL_ATTRIBUTE_COUNT_LIMIT`` says otherwise (OpenTelemetry's 128 evicts the oldest, the
trace-level fields first, from a long conversation's OpenInference messages)."""

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_RECORD_AND_SAMPLE = sampling.Decision.RECORD_AND_SAMPLE


class PrivateProvider(TracerProvider):
    """A tracer's own ``TracerProvider`` that knows its processors and limits, so that its
    spans may skip the SDK's ``Span`` while every processor is hush's (:class:`DirectSpans`)."""

    def __init__(self, *, span_limits: SpanLimits, **options: Any) -> None:
        super().__init__(span_limits=span_limits, **options)
        self.limits = span_limits
        self.processors: tuple[SpanProcessor, ...] = ()
        """Every processor added, in order (what the provider's ``on_end`` calls)."""
        self.only_hush = True
        """No processor but hush's was added (:meth:`add_hush_processor`)."""

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        """Add a processor of someone else's: later spans go through the SDK."""
        self.only_hush = False
        self._add(span_processor)

    def add_hush_processor(self, span_processor: SpanProcessor) -> None:
        """Add the tracer's own processor (its ``on_start`` is known to the tracer)."""
        self._add(span_processor)

    def _add(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.processors += (span_processor,)


class SdkSpans:
    """Spans through the SDK's public API, with the ids hush gives them."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._ids = run_ids(tracer)

    def start(
        self,
        trace_id: int,
        span_id: int,
        parent: OpenSpan | None,
        name: str,
        start: float,
        attributes: Attributes,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        links: Sequence[trace.Link] | None = None,
    ) -> Span:
        """Start ``span_id`` under ``parent`` (a trace's root, of id ``trace_id``, when ``None``)."""
        if parent is None:
            context = Context()
            self._ids.next(trace_id, span_id)
        else:
            above = parent.export
            if not isinstance(above, Span):
                sampled = not isinstance(above, DirectSpan) or above.sampled
                flags = SAMPLED if sampled else TraceFlags(TraceFlags.DEFAULT)
                above = NonRecordingSpan(SpanContext(trace_id, parent.id, False, flags))
            context = trace.set_span_in_context(above)
            self._ids.next(None, span_id)
        return self.tracer.start_span(
            name, context, kind, attributes, links, start_time=int(start * 1e9)
        )

    @staticmethod
    def end(span: Span, attributes: Attributes, end: float, error: Failure | None) -> None:
        """Add the attributes known at the end, the error if any, and end ``span``."""
        end_ns = int(end * 1e9)
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(_error_status(error))
            span.add_event("exception", _exception(error), end_ns)
        span.end(end_time=end_ns)


class DirectSpan:
    """A span of :class:`DirectSpans` between its start and its end."""

    __slots__ = (
        "added",
        "attributes",
        "id",
        "kind",
        "links",
        "name",
        "open",
        "parent",
        "sampled",
        "start",
        "trace_id",
    )

    def __init__(
        self,
        context: tuple[int, int, int | None],
        name: str,
        start: int,
        attributes: Attributes,
        kind: trace.SpanKind,
        links: Sequence[trace.Link],
        sampled: bool,
    ) -> None:
        self.trace_id, self.id, self.parent = context
        """The trace's, the span's and its parent's (``None``: a root) ids."""
        self.name, self.start, self.attributes, self.kind = name, start, attributes, kind
        self.links, self.sampled = links, sampled
        self.added: Attributes = {}
        """What hush's processor's ``on_start`` adds (set after ``attributes``)."""
        self.open = True


class DirectSpans:
    """``ReadableSpan`` s built directly for a :class:`PrivateProvider` whose processors are all
    hush's; ``own_start(parent_open)`` is what hush's processor's ``on_start`` adds to a span
    whose parent is (or is not) a started, unended span of the provider."""

    def __init__(
        self, provider: PrivateProvider, tracer: Tracer, own_start: Callable[[bool], Attributes]
    ) -> None:
        self.provider = provider
        self.own_start = own_start
        self.resource: Resource = provider.resource
        self.info = tracer.instrumentation_info
        self.scope = InstrumentationScope(self.info.name, self.info.version, self.info.schema_url)
        self.limits = limits = provider.limits
        self.max_attributes = limits.max_span_attributes
        self.plain = limits.max_span_attribute_length is None
        """No value is ever cut: attributes below the count limit need no checking."""
        self.wire: WireBatches | None = None
        """Where a span goes as OTLP bytes while every processor is hush's (the tracer's
        exporter, batched as its processor would), instead of to the processors."""

    @property
    def usable(self) -> bool:
        """Whether a span starting now may be built directly."""
        return self.provider.only_hush

    @staticmethod
    def serves(provider: TracerProvider) -> TypeGuard[PrivateProvider]:
        """Whether ``provider`` is a private one whose sampler decides by trace id and parent
        alone (one of the SDK's own), so that a trace's spans share its root's decision."""
        sampler = provider.sampler
        return (
            isinstance(provider, PrivateProvider)
            and type(sampler).__module__ == sampling.__name__
            and not isinstance(sampler, sampling.AlwaysRecordSampler)
        )

    def start(
        self,
        trace_id: int,
        span_id: int,
        parent: OpenSpan | None,
        name: str,
        start: float,
        attributes: Attributes,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        links: Sequence[trace.Link] | None = None,
    ) -> DirectSpan:
        """What ``SdkSpans.start`` would start, kept until :meth:`end`."""
        above = None if parent is None else parent.id
        up = None if parent is None else parent.export
        if isinstance(up, DirectSpan):
            sampled, parent_open = up.sampled, up.open
        else:
            context = Context() if above is None else _context(_local(trace_id, above))
            decision = self.provider.sampler.should_sample(context, trace_id, name, kind)
            sampled, parent_open = decision.decision == _RECORD_AND_SAMPLE, False
        span = DirectSpan(
            (trace_id, span_id, above),
            name,
            int(start * 1e9),
            attributes,
            kind,
            _links(links, self.limits) if links else (),
            sampled,
        )
        if sampled:
            span.added = self.own_start(parent_open)
        return span

    def end(
        self, span: DirectSpan, attributes: Attributes, end: float, error: Failure | None
    ) -> None:
        """Encode the span for the tracer's exporter (:attr:`wire`) while every processor is
        hush's; else build the ``ReadableSpan`` the SDK would and hand it to every processor's
        ``on_end``."""
        span.open = False
        if not span.sampled:
            return
        end_ns = int(end * 1e9)
        events: Sequence[Event] = ()
        status = None
        if error is not None:
            status = _error_status(error)
            events = BoundedList.from_seq(self.limits.max_events, [self._exception(error, end_ns)])
        merged = self._attributes(span, attributes)
        wire = self.wire
        if wire is not None and self.provider.only_hush:
            ids = (span.trace_id, span.id, span.parent)
            times = (span.start, end_ns)
            wire.add(
                span_fields(ids, span.name, span.kind, times, merged, events, span.links, status)
            )
            return
        readable = ReadableSpan(
            span.name,
            _local(span.trace_id, span.id),
            None if span.parent is None else _local(span.trace_id, span.parent),
            self.resource,
            merged,
            events,
            span.links,
            span.kind,
            self.info,
            status or _UNSET,
            span.start,
            end_ns,
            self.scope,
        )
        for processor in self.provider.processors:
            processor.on_end(readable)

    def _attributes(self, span: DirectSpan, end: Attributes) -> Mapping[str, Any]:
        """The span's attributes as the SDK's ``BoundedAttributes`` would hold them: the start's,
        what ``on_start`` added (unless the span is full), then the end's (a key set again moves
        last). A plain dict when no limit can cut anything."""
        start, added, limit = span.attributes, span.added, self.max_attributes
        if self.plain and (limit is None or len(start) + len(added) + len(end) <= limit):
            if not added:
                for key in end:  # a loop: cheaper than any() on a few keys
                    if key in start:
                        break
                else:
                    start.update(end)  # the span's own dict, read no more
                    return start
            merged = {**start, **added}
            for key in merged.keys() & end.keys():
                del merged[key]
            merged.update(end)
            return merged
        bounded = BoundedAttributes(
            limit, start, immutable=False, max_value_len=self.limits.max_span_attribute_length
        )
        if added and (limit is None or len(bounded) < limit):
            bounded.update(added)
        bounded.update(end)
        return bounded

    def _exception(self, error: Failure, end_ns: int) -> Event:
        attributes = BoundedAttributes(
            self.limits.max_event_attributes,
            _exception(error),
            max_value_len=self.limits.max_attribute_length,
        )
        return Event("exception", attributes, end_ns)


def _local(trace_id: int, span_id: int) -> SpanContext:
    """The context of a sampled span of this process."""
    return SpanContext(trace_id, span_id, False, SAMPLED)


def _context(parent: SpanContext) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _links(links: Sequence[trace.Link], limits: SpanLimits) -> BoundedList[trace.Link]:
    """``links`` as a span the SDK starts keeps them."""
    kept = [
        trace.Link(
            link.context,
            BoundedAttributes(
                limits.max_link_attributes,
                link.attributes,
                max_value_len=limits.max_attribute_length,
            ),
        )
        for link in links
    ]
    return BoundedList.from_seq(limits.max_links, kept)


def _error_status(error: Failure) -> Status:
    type_, message, _ = error
    return Status(StatusCode.ERROR, f"{type_}: {message}"[:2_000] if message else type_)


def _exception(error: Failure) -> Attributes:
    type_, message, stack = error
    return {"exception.type": type_, "exception.message": message, "exception.stacktrace": stack}


def private_provider(
    *,
    service_name: str,
    sample_rate: float = 1.0,
    resource_attributes: Mapping[str, Any] | None = None,
) -> TracerProvider:
    """A ``TracerProvider`` of the tracer's own: never installed globally; the tracer shuts
    it down (bounded) at exit."""
    attributes = {"service.name": service_name, **(resource_attributes or {})}
    count_set = any(
        os.environ.get(name)
        for name in ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT")
    )
    return PrivateProvider(
        resource=Resource.create({k: v for k, v in attributes.items() if v}),
        sampler=TraceIdRatioBased(sample_rate) if sample_rate < 1.0 else None,
        shutdown_on_exit=False,
        id_generator=RunIds(),
        span_limits=SpanLimits(
            max_span_attributes=None if count_set else DEFAULT_MAX_SPAN_ATTRIBUTES
        ),
    )
