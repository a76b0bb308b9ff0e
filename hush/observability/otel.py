"""OpenTelemetry spans from a run's events, built and exported in the tracer's thread.

One root span per run named after the graph, a span per nested graph, map,
item and node, and for each LLM call a span following the OpenTelemetry GenAI
conventions; times are the events' own. With your ``TracerProvider``, spans go through
the SDK's public API (``Tracer.start_span`` when a span's start is handled, ``Span.end``
at its end), so your processors see ``on_start`` and your span limits apply. With the
tracer's own provider, whose only processor is hush's, each span is written at its end
straight to the OTLP bytes the SDK's path would send (:mod:`hush.observability.otel_spans`
says how, and what it gives up). The ids are hush's own (:mod:`hush.observability.otel_ids`).
Errors are the span's status plus an ``exception`` event. A dead, hanging or failing
backend costs a run and the process exit together at most ``flush_timeout`` and one
warning (:mod:`hush.observability.health`); while it is down, spans are neither built nor
sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, Tracer, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Span, SpanContext

from hush import __version__
from hush.core.events import Event, LLMCall
from hush.observability.exporter import OTLPHttpExporter
from hush.observability.ids import new_span_id
from hush.observability.item_traces import item_trace_id, outermost_item, run_root, session_of
from hush.observability.openinference import IO_KEYS, JSON_MIME, io_attributes, llm_attributes
from hush.observability.otel_spans import (
    SAMPLED,
    DirectSpan,
    DirectSpans,
    Failure,
    PrivateProvider,
    SdkSpans,
)
from hush.observability.serialize import (
    DEFAULT_MAX_CHARS,
    fit,
    flat_json,
    to_json_text,
    usage_details,
)
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS, OpenSpan, RunSpans, SpanTracer
from hush.observability.wire_batches import WireBatches

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_SIZE = 16_384
"""Finished spans held for export; OpenTelemetry's default (2048) drops spans of big fast maps."""
_GENAI_PARAMS = {
    **{p: f"gen_ai.request.{p}" for p in ("temperature", "max_tokens", "top_p", "seed")},
    **{p: f"gen_ai.request.{p}" for p in ("frequency_penalty", "presence_penalty")},
    "max_completion_tokens": "gen_ai.request.max_tokens",
}

Attributes = dict[str, Any]


class OTelTracer(SpanTracer):
    """Traces runs as OpenTelemetry spans to the span processors of ``provider`` (a private
    one, or yours: never shut down by the tracer). Subclasses may add the attributes their
    backend reads (:class:`~hush.observability.LangfuseTracer`)."""

    backend = "OpenTelemetry"
    input_key, output_key = "hush.input", "hush.output"
    openinference = True
    """Add the OpenInference attributes (Phoenix, Arize) beside the GenAI ones."""

    def __init__(
        self,
        provider: TracerProvider,
        *,
        own: bool = False,
        flush_timeout: float = 5.0,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        include_io: bool = True,
        log: logging.Logger | None = None,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        sample: float = 1.0,
        trace_per_item: bool = False,
    ) -> None:
        if not isinstance(provider, TracerProvider):
            raise TypeError(
                f"tracer_provider must be an OpenTelemetry SDK TracerProvider, got {provider!r}"
            )
        self.provider = provider
        self.own = own
        """Whether the provider is the tracer's own (shut down by :meth:`close`)."""
        self.max_field_chars = max_field_chars
        self.include_io = include_io
        self.trace_per_item = trace_per_item
        """Each outermost map item is a trace of its own (:mod:`hush.observability.item_traces`)."""
        self._item_common: dict[str, dict[int, Attributes]] = {}
        tracer = provider.get_tracer("hush", __version__)
        self._sdk = SdkSpans(tracer) if isinstance(tracer, Tracer) else None
        """Spans through the SDK; ``None`` when the SDK is disabled (nothing traced)."""
        self._direct: DirectSpans | None = None
        """Spans built directly, for a private provider (:mod:`hush.observability.otel_spans`)."""
        if isinstance(tracer, Tracer) and own and DirectSpans.serves(provider):
            self._direct = DirectSpans(provider, tracer, self.own_processor_start)
        self._truncation_said = False
        self._flat_io = type(self).text is OTelTracer.text
        super().__init__(
            flush_timeout=flush_timeout,
            log=log or logger,
            max_queued_events=max_queued_events,
            sample=sample,
        )

    def otlp_exporter(
        self, endpoint: str, headers: Mapping[str, str] | None, timeout: float, gzip: bool = False
    ) -> OTLPHttpExporter:
        """An OTLP/HTTP protobuf exporter to ``endpoint`` reporting to the tracer's health."""
        return OTLPHttpExporter(endpoint, headers, timeout, self.health, compress=gzip)

    def wire_export(self, processor: SpanProcessor, exporter: OTLPHttpExporter) -> None:
        """Let spans built directly skip ``processor`` (the tracer's own, exporting with
        ``exporter``) and go to ``exporter`` as OTLP bytes, batched with the processor's
        settings (:mod:`hush.observability.wire_batches`): read from it, so that what it made
        of its arguments and of the ``OTEL_BSP_*`` variables applies (attributes private to
        OpenTelemetry's ``BatchProcessor``; hush's defaults if a version names them otherwise)."""
        direct = self._direct
        if direct is None:
            return
        batching = getattr(processor, "_batch_processor", None)
        direct.wire = WireBatches(
            exporter,
            direct.resource,
            direct.scope,
            batch_size=getattr(batching, "_max_export_batch_size", 512),
            interval=getattr(batching, "_schedule_delay", 1.0),
            max_queue=getattr(batching, "_max_queue_size", DEFAULT_MAX_QUEUE_SIZE),
            name=f"hush-{type(self).__name__}-export",
        )

    @property
    def _wire(self) -> WireBatches | None:
        return None if self._direct is None else self._direct.wire

    def after_fork(self) -> None:
        super().after_fork()
        wire = self._wire
        if wire is not None:
            wire.after_fork()

    def _idle(self) -> None:
        wire = self._wire
        if wire is not None:
            wire.hand_over()

    def _closing(self) -> None:
        wire = self._wire
        if wire is not None:
            wire.close()
        if self.own:
            self.provider.shutdown()
        else:
            self.provider.force_flush()

    def _export(self) -> None:
        wire = self._wire
        if wire is not None:
            wire.flush()
        self.provider.force_flush()

    # ---- spans, in the tracer's thread ----------------------------------------------

    def run_started(self, run: RunSpans) -> bool:
        if self._sdk is None:
            return False
        decision = self.provider.sampler.should_sample(None, run.trace_id, run.name)
        if decision.decision != Decision.RECORD_AND_SAMPLE:
            return False
        run.common = self.run_attributes(run)
        return True

    def span_started(self, run: RunSpans, span: OpenSpan) -> None:
        trace_id, common, item = self._trace(run, span)
        attributes = {**common, **self.span_start(run, span.start)}
        spans = self._spans()
        if item is not span:
            span.export = spans.start(
                trace_id, span.id, span.parent, span.name, span.start.time, attributes
            )
            return
        root = SpanContext(run.trace_id, run_root(span).id, False, SAMPLED)
        links = [trace.Link(root, {"hush.link": "run"})]
        span.export = spans.start(
            trace_id, span.id, None, span.name, span.start.time, attributes, links=links
        )

    def span_ended(self, run: RunSpans, span: OpenSpan, end: Event) -> None:
        if span.export is None:
            self.span_started(run, span)
        attributes = self.span_end(run, end)
        if span.parent is None:
            self._item_common.pop(run.run_id, None)
        error = end.error
        failure = (error.type, error.message, error.traceback or "") if error else None
        self._end(span.export, attributes, end.time, failure)

    def llm_called(self, run: RunSpans, owner: OpenSpan | None, event: Event) -> None:
        llm = event.llm
        assert llm is not None
        failed = llm.error.partition(": ") if llm.error else None
        trace_id, common, _ = self._trace(run, owner)
        spans = self._spans()
        live = spans.start(
            trace_id,
            new_span_id(),
            owner,
            self.generation_name(event, llm),
            llm.started,
            {**common, **self.generation_attributes(run, event, llm)},
            trace.SpanKind.CLIENT,
        )
        self._end(live, {}, llm.ended, failed and (failed[0], failed[2], ""))

    def _end(
        self, live: Span | DirectSpan, attributes: Attributes, end: float, error: Failure | None
    ) -> None:
        """End a span started by :meth:`_spans`'s choice at its start."""
        if isinstance(live, DirectSpan):
            assert self._direct is not None
            self._direct.end(live, attributes, end, error)
        else:
            SdkSpans.end(live, attributes, end, error)

    def _spans(self) -> SdkSpans | DirectSpans:
        """Spans built directly while every processor is hush's, else through the SDK."""
        direct = self._direct
        if direct is not None and direct.usable:
            return direct
        assert self._sdk is not None
        return self._sdk

    def add_processor(self, processor: SpanProcessor) -> None:
        """Add the tracer's own span processor to its provider."""
        if isinstance(self.provider, PrivateProvider) and self.own:
            self.provider.add_hush_processor(processor)
        else:
            self.provider.add_span_processor(processor)

    def own_processor_start(self, parent_open: bool) -> Attributes:
        """What the ``on_start`` of the tracer's own processor adds to a span whose parent is
        (or is not) an open span of the provider: nothing (a ``BatchSpanProcessor``)."""
        return {}

    def _trace(
        self, run: RunSpans, span: OpenSpan | None
    ) -> tuple[int, Attributes, OpenSpan | None]:
        """The trace of ``span`` (or of a child of it): its id, the attributes its spans
        share, and the item at its root (``None`` for the run's own trace)."""
        item = outermost_item(span) if self.trace_per_item else None
        if item is None:
            return run.trace_id, run.common, None
        known = self._item_common.setdefault(run.run_id, {})
        common = known.get(item.id)
        if common is None:
            common = known[item.id] = {**run.common, **self.item_trace_attributes(run, item)}
        return item_trace_id(run, item), common, item

    # ---- attributes: what a backend reads (subclasses extend these) ----------------

    def text(self, value: Any) -> str:
        """An input or output as JSON text (a string stays as it is), cut to
        ``max_field_chars`` with a marker."""
        text = to_json_text(value, max_chars=self.max_field_chars)
        if len(text) > self.max_field_chars and not self._truncation_said:
            self._said_truncated(f"a value of {len(text)} characters", self.max_field_chars)
        return text

    def io(self, prefix: str, value: Any) -> Attributes:
        """An input or output (``prefix``), encoded once: ``input.value`` or ``output.value`` and
        its mime type (OpenInference), else under ``input_key`` or ``output_key``. A small flat
        dict is encoded at once, as :meth:`text` would (which a subclass's own sees all)."""
        if type(value) is dict and self._flat_io:
            flat = flat_json(value, self.max_field_chars)
            if flat is not None:
                if not self.openinference:
                    return {self.input_key if prefix == "input" else self.output_key: flat}
                if prefix in IO_KEYS:
                    value_key, mime_key = IO_KEYS[prefix]
                    return {value_key: flat, mime_key: JSON_MIME}
        if self.openinference:
            return io_attributes(prefix, value, self.text)
        return {self.input_key if prefix == "input" else self.output_key: self.text(value)}

    def bounded(self, text: str, limit: int, what: str) -> str:
        """``text`` cut to ``limit`` characters, marker included, if longer (one warning)."""
        if len(text) <= limit:
            return text
        if not self._truncation_said:
            self._said_truncated(f"{what} ({len(text)} characters)", limit)
        return fit(text, limit)

    def _said_truncated(self, what: str, limit: int) -> None:
        self._truncation_said = True
        self._log.warning(
            "%s tracing truncated %s to %d characters, marked '[truncated N chars]'; later "
            "truncations are not reported",
            self.backend,
            what,
            limit,
        )

    def run_attributes(self, run: RunSpans) -> Attributes:
        """Attributes for every span of the run."""
        return {"hush.run_id": run.run_id}

    def item_trace_attributes(self, run: RunSpans, item: OpenSpan) -> Attributes:
        """Attributes of every span of an item's own trace (``trace_per_item``)."""
        return {"hush.run_trace_id": f"{run.trace_id:032x}", "session.id": session_of(run)}

    def span_start(self, run: RunSpans, event: Event) -> Attributes:
        """Attributes of a span known when it starts."""
        attributes: Attributes = {"hush.kind": event.type or "node", "hush.path": event.path}
        if event.type == "run":
            fields = run.fields
            for key, name in (("user_id", "user.id"), ("session_id", "session.id")):
                if fields.get(key):
                    attributes[name] = str(fields[key])
            if self.trace_per_item:
                attributes["session.id"] = session_of(run)
            if fields.get("tags"):
                attributes["hush.tags"] = [str(t) for t in fields["tags"]]
            if fields.get("metadata"):
                attributes["hush.metadata"] = self.text(fields["metadata"])
        if self.openinference:
            attributes["openinference.span.kind"] = "CHAIN"
        if self.include_io and event.input is not None and event.input != {}:
            attributes.update(self.io("input", event.input))
        return attributes

    def span_end(self, run: RunSpans, event: Event) -> Attributes:
        """Attributes of a span known when it ends."""
        attributes: Attributes = {"hush.status": event.status or "ok"}
        if event.kind == "run_end" and run.dropped:
            attributes["hush.dropped_events"] = run.dropped
        if event.attempts is not None:
            attributes["hush.attempts"] = event.attempts
        if self.include_io and event.output is not None and event.output != {}:
            attributes.update(self.io("output", event.output))
        return attributes

    def generation_name(self, event: Event, llm: LLMCall) -> str:
        """The GenAI convention: ``"{operation} {model}"``."""
        return f"{llm.operation} {llm.model}"

    def generation_input(self, llm: LLMCall) -> Any:
        """What an LLM call's ``input_key`` holds (without OpenInference): its messages."""
        return llm.messages

    def generation_attributes(self, run: RunSpans, event: Event, llm: LLMCall) -> Attributes:
        """GenAI semantic-convention attributes of one LLM call."""
        attributes: Attributes = {
            "gen_ai.operation.name": llm.operation,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": llm.model,
            "hush.kind": "generation",
            "hush.latency_s": round(llm.latency, 6),
        }
        if llm.response_model:
            attributes["gen_ai.response.model"] = llm.response_model
        usage = usage_details(llm.usage) or {}
        for key in ("input", "output"):
            if key in usage:
                attributes[f"gen_ai.usage.{key}_tokens"] = usage[key]
        if llm.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [llm.finish_reason]
        for key, value in llm.params.items():
            param = _GENAI_PARAMS.get(key)
            if param is not None and isinstance(value, int | float) and not isinstance(value, bool):
                attributes[param] = value
        ttft = llm.time_to_first_token
        if ttft is not None:
            attributes["hush.time_to_first_token_s"] = round(ttft, 6)
        if llm.resource:
            attributes["hush.resource"] = llm.resource
        if llm.cost is not None:
            attributes["hush.cost_usd"] = llm.cost
        if llm.cached:
            attributes["hush.cached"] = True
        if llm.batch_id:
            attributes["hush.batch_id"] = llm.batch_id
        if (llm.usage or {}).get("estimated"):
            attributes["hush.usage_estimated"] = True
        if self.include_io and not self.openinference:
            attributes[self.input_key] = self.text(self.generation_input(llm))
            if llm.output is not None:
                attributes[self.output_key] = self.text(llm.output)
        if self.openinference:
            attributes.update(llm_attributes(llm, self.text, self.include_io))
        return attributes
