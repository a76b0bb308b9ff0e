"""LangfuseTracer: each run as one Langfuse trace, through the official SDK's span processor.

The spans are the ones every OpenTelemetry tracer of hush builds
(:mod:`hush.observability.otel`), with the attributes Langfuse reads added:
observation type (``generation`` for LLM calls), input and output, level and
status message, model, parameters and usage, and the trace-level fields (trace
name, user, session, tags, metadata) on every span. They are exported by the
``langfuse`` SDK's ``LangfuseSpanProcessor`` on a private ``TracerProvider``,
to ``{host}/api/public/otel/v1/traces``, authenticated with the project's
keys; no key is ever put in a span.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from langfuse import LangfuseOtelSpanAttributes as A
from langfuse import __version__ as langfuse_version
from langfuse._client.span_processor import LangfuseSpanProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from hush.core.events import Event, LLMCall
from hush.core.redaction import register_secret
from hush.observability.credentials import register_header_secrets, resolve_credentials
from hush.observability.ids import trace_id_for
from hush.observability.item_traces import session_of
from hush.observability.otel import (
    DEFAULT_MAX_QUEUE_SIZE,
    Attributes,
    OTelTracer,
)
from hush.observability.otel_spans import private_provider
from hush.observability.serialize import (
    DEFAULT_MAX_CHARS,
    describe_error,
    to_jsonable,
    usage_details,
)
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS, OpenSpan, RunSpans

logger = logging.getLogger(__name__)

MAX_TRACE_ATTRIBUTE_CHARS = 200
"""Langfuse drops trace-level strings (ids, tags, metadata values) longer than this."""


class LangfuseTracer(OTelTracer):
    """Sends each run to Langfuse as one trace: graph → map → item → node spans, LLM generations.

    Keys: the arguments, else the ``langfuse:default`` resource, else ``LANGFUSE_PUBLIC_KEY``
    / ``LANGFUSE_SECRET_KEY`` (host: ``LANGFUSE_BASE_URL`` or ``LANGFUSE_HOST``, default
    Langfuse Cloud). A run's trace id is :func:`~hush.observability.ids.trace_id_for` of its
    ``run_id``. ``flush_timeout`` bounds the wait for the export at the end of each run,
    ``timeout`` each request (default: ``flush_timeout``); ``flush_at`` spans make a batch,
    sent at least every ``flush_interval`` seconds; ``max_queue_size`` finished spans wait
    (default ``OTEL_BSP_MAX_QUEUE_SIZE`` if set, else 16384), more are dropped. Each input,
    output and metadata value holds at most ``max_field_chars`` characters. With
    ``tracer_provider``, the Langfuse processor is added to your provider. ``sample`` traces
    that share of map items (failed ones always); ``sample_rate`` that share of runs.
    ``trace_per_item`` makes each map item a trace of its own, named ``"{graph} {item}"``, in
    the run's session (its ``session_id``, else its ``run_id``).
    """

    backend = "Langfuse"
    input_key, output_key = A.OBSERVATION_INPUT, A.OBSERVATION_OUTPUT
    openinference = False

    def __init__(
        self,
        public_key: str | None = None,
        secret_key: str | None = None,
        host: str | None = None,
        *,
        flush_timeout: float = 5.0,
        sample_rate: float | None = None,
        environment: str | None = None,
        release: str | None = None,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        max_queue_size: int | None = None,
        flush_at: int | None = None,
        flush_interval: float = 1.0,
        compression: bool = True,
        timeout: float | None = None,
        tracer_provider: TracerProvider | None = None,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        sample: float = 1.0,
        trace_per_item: bool = False,
    ) -> None:
        credentials = resolve_credentials(public_key, secret_key, host)
        headers = _headers(credentials.public_key, credentials.secret_key)
        register_secret(credentials.secret_key, what="Langfuse secret_key")
        register_header_secrets(headers, what="Langfuse header")
        self.public_key = credentials.public_key
        self.host = credentials.host
        environment = environment or os.environ.get("LANGFUSE_TRACING_ENVIRONMENT") or None
        release = release or os.environ.get("LANGFUSE_RELEASE") or None
        provider = tracer_provider or private_provider(
            service_name="hush",
            sample_rate=_sample_rate(sample_rate),
            resource_attributes={"langfuse.environment": environment, "langfuse.release": release},
        )
        super().__init__(
            provider,
            own=tracer_provider is None,
            flush_timeout=flush_timeout,
            max_field_chars=max_field_chars,
            log=logger,
            max_queued_events=max_queued_events,
            sample=sample,
            trace_per_item=trace_per_item,
        )
        exporter = self.otlp_exporter(
            f"{self.host}/api/public/otel/v1/traces",
            headers,
            timeout if timeout is not None else flush_timeout,
            gzip=compression,
        )
        processor = _Processor(
            queue_size=_queue_size(max_queue_size),
            public_key=credentials.public_key,
            secret_key=credentials.secret_key,
            base_url=self.host,
            flush_at=flush_at,
            flush_interval=flush_interval,
            should_export_span=lambda span: True,
            span_exporter=exporter,
        )
        self.add_processor(processor)
        self.wire_export(processor, exporter)
        logger.debug(
            "Langfuse tracing to %s (keys from %s)",
            self.host,
            credentials.source,
        )

    @staticmethod
    def trace_id(run_id: str) -> str:
        """The Langfuse trace id of the run ``run_id``."""
        return trace_id_for(run_id)

    @property
    def destination(self) -> str:
        """The Langfuse host."""
        return self.host

    def own_processor_start(self, parent_open: bool) -> Attributes:
        """What the Langfuse processor's ``on_start`` adds to hush's spans: the application-root
        mark on a span whose parent is not one of its open spans (hush's are all eligible, and
        the tracer's thread propagates no Langfuse attributes)."""
        return {} if parent_open else {A.IS_APP_ROOT: True}

    def _meta(self, prefix: str, values: dict[str, Any]) -> Attributes:
        return {
            f"{prefix}.{key}": meta_value(value, self.max_field_chars)
            for key, value in values.items()
            if value is not None
        }

    def run_attributes(self, run: RunSpans) -> Attributes:
        """The trace-level fields Langfuse reads from every span of the run."""
        fields = run.fields
        attributes: Attributes = {A.TRACE_NAME: self._short(run.name, "the trace name")}
        for key, name in (("user_id", A.TRACE_USER_ID), ("session_id", A.TRACE_SESSION_ID)):
            if fields.get(key) is not None and str(fields[key]):
                attributes[name] = self._short(fields[key], key)
        if self.trace_per_item:
            attributes[A.TRACE_SESSION_ID] = self._short(session_of(run), "session_id")
        tags = [self._short(t, "a tag") for t in fields.get("tags") or () if str(t)]
        if tags:
            attributes[A.TRACE_TAGS] = tags
        trace_metadata = {"run_id": run.run_id, **(fields.get("metadata") or {})}
        for key, value in trace_metadata.items():
            if value is not None:
                text = meta_value(value, self.max_field_chars)
                attributes[f"{A.TRACE_METADATA}.{key}"] = self._short(text, f"metadata {key!r}")
        return attributes

    def item_trace_attributes(self, run: RunSpans, item: OpenSpan) -> Attributes:
        """An item's own trace: named after the graph and the item, the run's trace id in its
        metadata (the session is the run's)."""
        run_trace = meta_value(f"{run.trace_id:032x}", self.max_field_chars)
        return {
            A.TRACE_NAME: self._short(f"{run.name} {item.name}", "the trace name"),
            f"{A.TRACE_METADATA}.run_trace_id": run_trace,
        }

    def _short(self, value: Any, what: str) -> str:
        """``value`` as a string Langfuse keeps as a trace-level field: longer ones are cut to
        ``MAX_TRACE_ATTRIBUTE_CHARS`` with a marker (Langfuse would drop them)."""
        return self.bounded(str(value), MAX_TRACE_ATTRIBUTE_CHARS, what)

    def span_start(self, run: RunSpans, event: Event) -> Attributes:
        attributes: Attributes = {A.OBSERVATION_TYPE: "span"}
        if event.input is not None:
            attributes[A.OBSERVATION_INPUT] = self.text(event.input)
        metadata: dict[str, Any] = {"kind": event.type or "node"}
        if event.type == "run":
            attributes[A.AS_ROOT] = True
            metadata.update({"run_id": run.run_id, **(run.fields.get("metadata") or {})})
        attributes.update(self._meta(A.OBSERVATION_METADATA, metadata))
        return attributes

    def span_end(self, run: RunSpans, event: Event) -> Attributes:
        attributes: Attributes = {}
        if event.output is not None:
            attributes[A.OBSERVATION_OUTPUT] = self.text(event.output)
        metadata = {"status": event.status, **dict(event.metadata or {})}
        if event.kind == "run_end" and run.dropped:
            metadata["dropped_events"] = run.dropped
        if event.attempts is not None and event.attempts > 1:
            metadata["attempts"] = event.attempts
        attributes.update(self._meta(A.OBSERVATION_METADATA, metadata))
        if event.error is not None:
            attributes[A.OBSERVATION_LEVEL] = "ERROR"
            attributes[A.OBSERVATION_STATUS_MESSAGE] = describe_error(event.error)
        elif event.status == "cancelled":
            attributes[A.OBSERVATION_LEVEL] = "WARNING"
            attributes[A.OBSERVATION_STATUS_MESSAGE] = "cancelled before it finished"
        return attributes

    def generation_input(self, llm: LLMCall) -> Any:
        """The messages, and the tools offered if any."""
        tools = llm.params.get("tools")
        return {"messages": llm.messages, "tools": tools} if tools else llm.messages

    def generation_attributes(self, run: RunSpans, event: Event, llm: LLMCall) -> Attributes:
        attributes = super().generation_attributes(run, event, llm)
        attributes[A.OBSERVATION_TYPE] = (
            "embedding" if llm.operation == "embeddings" else "generation"
        )
        attributes[A.OBSERVATION_MODEL] = llm.response_model or llm.model
        parameters = _model_parameters({k: v for k, v in llm.params.items() if k != "tools"})
        if parameters:
            attributes[A.OBSERVATION_MODEL_PARAMETERS] = self.text(parameters)
        usage = langfuse_usage(llm.usage)
        if usage:
            attributes[A.OBSERVATION_USAGE_DETAILS] = self.text(usage)
        if llm.cost is not None and (llm.cost > 0 or usage):
            attributes[A.OBSERVATION_COST_DETAILS] = self.text({"total": llm.cost})
        if llm.first_token is not None:
            stamp = datetime.fromtimestamp(llm.first_token, tz=UTC).isoformat()
            attributes[A.OBSERVATION_COMPLETION_START_TIME] = self.text(stamp)
        metadata = {
            "resource": llm.resource,
            "attempts": llm.attempts,
            "cached": llm.cached or None,
            "usage_estimated": bool((llm.usage or {}).get("estimated")) or None,
            **(event.metadata or {}),
        }
        attributes.update(self._meta(A.OBSERVATION_METADATA, metadata))
        if llm.error is not None:
            attributes[A.OBSERVATION_LEVEL] = "ERROR"
            attributes[A.OBSERVATION_STATUS_MESSAGE] = llm.error
        return attributes


class _SizedBatch(BatchSpanProcessor):
    """Gives the Langfuse processor's batch queue the size asked for (the SDK does not)."""

    _hush_queue_size: int | None = None

    def __init__(self, span_exporter: Any, **kwargs: Any) -> None:
        super().__init__(span_exporter, max_queue_size=self._hush_queue_size, **kwargs)


class _Processor(LangfuseSpanProcessor, _SizedBatch):
    def __init__(self, *, queue_size: int | None, **kwargs: Any) -> None:
        self._hush_queue_size = queue_size
        super().__init__(**kwargs)


def _headers(public_key: str, secret_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode("ascii")
    return {
        "Authorization": f"Basic {token}",
        "x-langfuse-sdk-name": "python",
        "x-langfuse-sdk-version": langfuse_version,
        "x-langfuse-public-key": public_key,
        "x-langfuse-ingestion-version": "4",
    }


def _queue_size(size: int | None) -> int | None:
    """The asked size; else ``None`` when ``OTEL_BSP_MAX_QUEUE_SIZE`` is set (OpenTelemetry
    reads it), else hush's default."""
    if size is not None:
        return size
    return None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else DEFAULT_MAX_QUEUE_SIZE


def _sample_rate(sample_rate: float | None) -> float:
    rate = sample_rate if sample_rate is not None else float(os.getenv("LANGFUSE_SAMPLE_RATE", 1))
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, got {rate}")
    return rate


def langfuse_usage(usage: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Token usage as the ``usage_details`` Langfuse prices: ``input`` and ``output`` without
    the cached prompt and reasoning tokens, which are ``input_cached_tokens`` and
    ``output_reasoning_tokens`` (the usage types of Langfuse's OpenAI model prices)."""
    details = usage_details(usage)
    if details is None:
        return None
    for key, part, name in (
        ("cached_tokens", "input", "input_cached_tokens"),
        ("reasoning_tokens", "output", "output_reasoning_tokens"),
    ):
        count = details.pop(key, 0)
        if count:
            details[name] = count
            details[part] = max(details.get(part, 0) - count, 0)
    return details


def _model_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Model parameters as the scalar or string values Langfuse accepts."""
    return {
        str(key): value
        if value is None or isinstance(value, str | int | float | bool)
        else meta_value(value, 2_000)
        for key, value in parameters.items()
    }


def meta_value(value: Any, max_chars: int) -> str:
    """A metadata value as compact JSON text (strings quoted), bounded."""
    if isinstance(value, str) and len(value) <= max_chars:
        return encode_basestring(value)
    data = to_jsonable(value, max_chars=max_chars)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
