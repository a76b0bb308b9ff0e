"""OpenTelemetry spans from a run's events, built and exported off the event loop.

:class:`OTelTracer` queues each event on the loop (a fraction of a microsecond)
and builds spans in a thread of its own through a private ``TracerProvider``
(never the global one unless you pass yours): one root span per run named
after the graph, a span per nested graph, map, item and node, and for each LLM
call a span following the OpenTelemetry GenAI conventions. Start and end times
are the events' own, so building late changes nothing in the trace. Errors are
the span's status plus an ``exception`` event.

A dead, hanging or failing backend costs a run at most ``flush_timeout`` at its
end and one warning. Exports run in daemon threads; at interpreter exit a
tracer not closed before exports what is left, for at most ``flush_timeout``.
"""

from __future__ import annotations

import atexit
import json
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from hush import __version__
from hush.core.events import Event, LLMCall, Subscriber
from hush.observability.bounded import BoundedCall
from hush.observability.handles import RunSpan, start_run
from hush.observability.ids import trace_id_for
from hush.observability.serialize import DEFAULT_MAX_CHARS, describe_error, to_json_text
from hush.observability.worker import EventWorker

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_SIZE = 16_384
"""Finished spans held for export; OpenTelemetry's default (2048) drops spans of big fast maps."""

_GENAI_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}

Attributes = dict[str, Any]


@dataclass(slots=True)
class Pending:
    """A span started and not yet ended: what it will be made of."""

    name: str
    context: SpanContext
    parent: SpanContext | None
    start: int
    attributes: Attributes
    kind: trace.SpanKind = trace.SpanKind.INTERNAL
    live: trace.Span | None = None
    """The SDK span, when spans go through a provider given by the user."""


@dataclass(slots=True)
class RunTrace:
    """What the spans of one run share."""

    run_id: str
    name: str
    fields: Mapping[str, Any]
    """``user_id``, ``session_id``, ``tags`` and ``metadata`` of the run."""
    trace_id: int = 0
    common: Attributes = field(default_factory=dict)
    """Attributes put on every span of the run."""
    spans: dict[str, Pending] = field(default_factory=dict)
    sampled: bool = True


class OTelTracer:
    """Traces runs as OpenTelemetry spans through ``provider``; see the module docstring.

    Subclasses choose the provider's processors and exporter and may add the
    attributes their backend reads (:class:`~hush.observability.LangfuseTracer`).
    """

    backend = "OpenTelemetry"

    def __init__(
        self,
        provider: TracerProvider,
        *,
        flush_timeout: float = 5.0,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        include_io: bool = True,
        log: logging.Logger | None = None,
    ) -> None:
        self.provider = provider
        self.flush_timeout = flush_timeout
        self.max_field_chars = max_field_chars
        self.include_io = include_io
        self._log = log or logger
        self._tracer = provider.get_tracer("hush")
        self._scope = InstrumentationScope("hush", __version__)
        self._processors: list[SpanProcessor] | None = None
        """Processors fed directly with finished spans (a provider of the tracer's own);
        ``None``: spans go through the provider's public API."""
        self._runs: dict[str, RunTrace] = {}
        self._worker = EventWorker(self._handle, name=f"hush-{type(self).__name__}")
        self._flusher = BoundedCall(self._export_now, name=f"hush-{type(self).__name__}-flush")
        self._closer = BoundedCall(self.provider.shutdown, name=f"hush-{type(self).__name__}-close")
        self._closed = False
        self.warned = False
        """Whether a warning about this tracer's exports was already logged."""
        atexit.register(self.close)

    # ---- the engine's side ----------------------------------------------------------

    def subscribe(self, start: Event) -> Subscriber:
        """Trace the run that ``start`` opens: its events are queued for the tracer's thread."""
        return self._worker.put

    def start_run(self, name: str, *, run_id: str, **fields: Any) -> RunSpan:
        """Open the root span of a run traced by hand (see :func:`~hush.observability.handles.start_run`)."""
        return start_run(self, name, run_id=run_id, **fields)

    async def flush(self, timeout: float | None = None) -> None:
        """Build the spans of every event so far and export them, waiting at most ``timeout``
        seconds (default ``flush_timeout``); on timeout, one warning and the export goes on in
        the background. Never raises."""
        bound = self.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + bound
        finished = await self._worker.drained(bound)
        if finished:
            finished = await self._flusher.run(max(deadline - time.monotonic(), 0.0))
        if not finished:
            self.warned = True
            self._log.warning(
                "%s export to %s did not finish within %.1f s (backend unreachable or slow?); "
                "the run is not affected and export continues in the background",
                self.backend,
                self.destination,
                bound,
            )

    def close(self, timeout: float | None = None) -> None:
        """Export what is queued and shut the provider down, blocking at most ``timeout``."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        bound = self.flush_timeout if timeout is None else timeout
        self._worker.drained_sync(bound)
        self._worker.close()
        if not self._closer.run_sync(bound):
            self._log.warning("%s exporter did not shut down within %.1f s", self.backend, bound)

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close` without blocking the event loop."""
        await self.flush(timeout)
        if not self._closed:
            self._closed = True
            atexit.unregister(self.close)
            self._worker.close()
            await self._closer.run(self.flush_timeout if timeout is None else timeout)

    @property
    def destination(self) -> str:
        """Where spans go, for messages."""
        return "the tracer provider"

    def _export_now(self) -> None:
        self.provider.force_flush()

    # ---- the tracer's thread --------------------------------------------------------

    def add_processor(self, processor: SpanProcessor) -> None:
        """Send this tracer's spans to ``processor`` (added to the tracer's own provider)."""
        self.provider.add_span_processor(processor)
        if self._processors is None:
            self._processors = []
        self._processors.append(processor)

    def _handle(self, event: Event) -> None:
        kind = event.kind
        if kind == "run_start":
            self._start_run(event)
            return
        run = self._runs.get(event.run_id)
        if run is None or not run.sampled:
            if kind == "run_end":
                self._runs.pop(event.run_id, None)
            return
        if kind == "node_start":
            parent = run.spans.get(event.parent or "")
            run.spans[event.path] = self._open(
                run,
                event.name or event.path,
                parent,
                event.time,
                {**run.common, **self.span_start(run, event)},
            )
        elif kind == "llm" and event.llm is not None:
            llm = event.llm
            pending = self._open(
                run,
                self.generation_name(event, llm),
                run.spans.get(event.path),
                llm.started,
                {**run.common, **self.generation_attributes(run, event, llm)},
                kind=trace.SpanKind.CLIENT,
            )
            error = None
            if llm.error is not None:
                error = (llm.error.partition(":")[0], llm.error, "")
            self._close(run, pending, {}, llm.error, error, llm.ended)
        elif kind in ("node_end", "run_end"):
            ended = run.spans.pop(event.path, None)
            if ended is not None:
                failure = event.error
                self._close(
                    run,
                    ended,
                    self.span_end(run, event),
                    describe_error(failure) if failure is not None else None,
                    (failure.type, failure.message, failure.traceback or "")
                    if failure is not None
                    else None,
                    event.time,
                )
            if kind == "run_end":
                for orphan in list(run.spans.values()):
                    self._close(run, orphan, {"hush.status": "unfinished"}, None, None, event.time)
                self._runs.pop(event.run_id, None)

    def _start_run(self, event: Event) -> None:
        fields = dict(event.metadata or {})
        run = RunTrace(event.run_id, event.name or event.path, fields)
        run.trace_id = int(trace_id_for(event.run_id), 16)
        run.common = self.run_attributes(run)
        self._runs[event.run_id] = run
        if self._processors is not None:
            decision = self.provider.sampler.should_sample(None, run.trace_id, run.name)
            run.sampled = decision.decision == Decision.RECORD_AND_SAMPLE
            if not run.sampled:
                return
        remote = SpanContext(
            trace_id=run.trace_id,
            span_id=_span_id(),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        run.spans[event.path] = self._open(
            run,
            run.name,
            Pending("", remote, None, 0, {}),
            event.time,
            {**run.common, **self.span_start(run, event)},
        )

    def _open(
        self,
        run: RunTrace,
        name: str,
        parent: Pending | None,
        start: float,
        attributes: Attributes,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    ) -> Pending:
        parent_context = parent.context if parent is not None else None
        if self._processors is not None:
            context = SpanContext(
                trace_id=run.trace_id,
                span_id=_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            return Pending(name, context, parent_context, _ns(start), attributes, kind)
        carrier: trace.Span | None = None
        if parent is not None:
            carrier = parent.live or NonRecordingSpan(parent.context)
        live = self._tracer.start_span(
            name,
            context=trace.set_span_in_context(carrier) if carrier is not None else None,
            kind=kind,
            start_time=_ns(start),
            attributes=attributes,
        )
        return Pending(name, live.get_span_context(), parent_context, _ns(start), {}, kind, live)

    def _close(
        self,
        run: RunTrace,
        pending: Pending,
        attributes: Attributes,
        message: str | None,
        exception: tuple[str, str, str] | None,
        end: float,
    ) -> None:
        end_ns = _ns(end)
        status = Status(StatusCode.ERROR, message) if message is not None else Status()
        events: tuple[SdkEvent, ...] = ()
        if exception is not None:
            events = (
                SdkEvent(
                    "exception",
                    {
                        "exception.type": exception[0],
                        "exception.message": exception[1],
                        "exception.stacktrace": exception[2],
                    },
                    end_ns,
                ),
            )
        live = pending.live
        if live is not None:
            live.set_attributes(attributes)
            if message is not None:
                live.set_status(status)
            for item in events:
                live.add_event(item.name, item.attributes, timestamp=item.timestamp)
            live.end(end_time=end_ns)
            return
        assert self._processors is not None
        span = ReadableSpan(
            pending.name,
            context=pending.context,
            parent=pending.parent,
            resource=self.provider.resource,
            attributes={**pending.attributes, **attributes},
            events=events,
            kind=pending.kind,
            status=status,
            start_time=pending.start,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        for processor in self._processors:
            processor.on_end(span)

    # ---- attributes: what a backend reads (subclasses extend these) ----------------

    def text(self, value: Any) -> str:
        """An input or output as bounded JSON text (a string stays as it is)."""
        return to_json_text(value, max_chars=self.max_field_chars)

    def run_attributes(self, run: RunTrace) -> Attributes:
        """Attributes for every span of the run."""
        return {"hush.run_id": run.run_id}

    def span_start(self, run: RunTrace, event: Event) -> Attributes:
        """Attributes of a span known when it starts."""
        attributes: Attributes = {"hush.kind": event.type or "node", "hush.path": event.path}
        if event.type == "run":
            fields = run.fields
            for key, name in (("user_id", "user.id"), ("session_id", "session.id")):
                if fields.get(key):
                    attributes[name] = str(fields[key])
            if fields.get("tags"):
                attributes["hush.tags"] = [str(t) for t in fields["tags"]]
            if fields.get("metadata"):
                attributes["hush.metadata"] = self.text(fields["metadata"])
        if self.include_io and event.input is not None:
            attributes["hush.input"] = self.text(event.input)
        return attributes

    def span_end(self, run: RunTrace, event: Event) -> Attributes:
        """Attributes of a span known when it ends."""
        attributes: Attributes = {"hush.status": event.status or "ok"}
        if event.attempts is not None:
            attributes["hush.attempts"] = event.attempts
        if self.include_io and event.output is not None:
            attributes["hush.output"] = self.text(event.output)
        return attributes

    def generation_name(self, event: Event, llm: LLMCall) -> str:
        """The GenAI convention: ``"{operation} {model}"``."""
        return f"chat {llm.model}"

    def generation_attributes(self, run: RunTrace, event: Event, llm: LLMCall) -> Attributes:
        """GenAI semantic-convention attributes of one LLM call."""
        attributes: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": llm.model,
            "hush.kind": "generation",
            "hush.latency_s": round(llm.latency, 6),
        }
        if llm.response_model:
            attributes["gen_ai.response.model"] = llm.response_model
        usage = llm.usage or {}
        for key, attribute in (
            ("prompt_tokens", "gen_ai.usage.input_tokens"),
            ("completion_tokens", "gen_ai.usage.output_tokens"),
        ):
            count = usage.get(key)
            if isinstance(count, int) and not isinstance(count, bool):
                attributes[attribute] = count
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
        if self.include_io:
            attributes["hush.input"] = self.text(llm.messages)
            if llm.output is not None:
                attributes["hush.output"] = self.text(llm.output)
        return attributes


class QuietExporter(SpanExporter):
    """Wraps an exporter: its own log lines are kept out of the log, and the first failure
    becomes one warning from ``tracer`` (unless it already warned)."""

    def __init__(self, inner: SpanExporter, tracer: OTelTracer) -> None:
        self.inner = inner
        self.tracer = tracer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        _quiet.active = True
        _quiet.reason = None
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            _quiet.reason = str(exc)
            result = SpanExportResult.FAILURE
        finally:
            _quiet.active = False
        if result is not SpanExportResult.SUCCESS:
            self._failed(len(spans))
        return result

    def _failed(self, count: int) -> None:
        tracer = self.tracer
        first = not tracer.warned
        tracer.warned = True
        tracer._log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s export to %s failed; %d span(s) dropped (%s)",
            tracer.backend,
            tracer.destination,
            count,
            _quiet.reason or "see the debug log",
        )

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _Quiet(threading.local):
    active = False
    reason: str | None = None


_quiet = _Quiet()


class _KeepExportsQuiet(logging.Filter):
    """Drops the OTLP exporter's records while a :class:`QuietExporter` exports, keeping the
    message of the last one as the reason of the failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _quiet.active:
            return True
        try:
            _quiet.reason = record.getMessage()[:300]
        except Exception:
            _quiet.reason = None
        return False


_filter_installed = False
_filter_lock = threading.Lock()


def keep_exports_quiet() -> None:
    """Install the filter on the OTLP exporter's loggers (once per process)."""
    global _filter_installed
    with _filter_lock:
        if _filter_installed:
            return
        _filter_installed = True
        for name in (
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "opentelemetry.exporter.otlp.proto.http",
            "opentelemetry.exporter.http_transport",
            "opentelemetry.sdk._shared_internal",
        ):
            logging.getLogger(name).addFilter(_KeepExportsQuiet())


def private_provider(
    *,
    service_name: str,
    sample_rate: float = 1.0,
    resource_attributes: Mapping[str, Any] | None = None,
) -> TracerProvider:
    """A ``TracerProvider`` of the tracer's own: never installed globally; the tracer shuts
    it down (bounded) at exit."""
    from opentelemetry.sdk.resources import Resource

    attributes = {"service.name": service_name, **(resource_attributes or {})}
    return TracerProvider(
        resource=Resource.create({k: v for k, v in attributes.items() if v}),
        sampler=TraceIdRatioBased(sample_rate) if sample_rate < 1.0 else None,
        shutdown_on_exit=False,
    )


def meta_value(value: Any, max_chars: int) -> str:
    """A metadata value as compact JSON text (strings quoted), bounded."""
    from hush.observability.serialize import to_jsonable

    return json.dumps(
        to_jsonable(value, max_chars=max_chars), ensure_ascii=False, separators=(",", ":")
    )


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _span_id() -> int:
    return random.getrandbits(64) or 1
