"""OTLPTracer: runs as OpenTelemetry traces to any OTLP/HTTP backend (Jaeger, Tempo, Phoenix...)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from hush.observability.credentials import register_header_secrets
from hush.observability.otel import (
    DEFAULT_MAX_QUEUE_SIZE,
    OTelTracer,
)
from hush.observability.otel_spans import private_provider
from hush.observability.serialize import DEFAULT_MAX_CHARS
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://localhost:4318"


class OTLPTracer(OTelTracer):
    """Exports each run as OTLP/HTTP protobuf to ``{endpoint}/v1/traces``.

    ``endpoint`` defaults to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (a full URL,
    used as is), else ``OTEL_EXPORTER_OTLP_ENDPOINT``, else
    ``http://localhost:4318``. ``headers`` (for example an API key) default to
    ``OTEL_EXPORTER_OTLP_HEADERS``. Spans carry the GenAI attributes on LLM
    calls and ``hush.*`` attributes (kind, path, status, input and output as
    JSON text unless ``include_io=False``).

    Values of secret-looking headers (``Authorization``, names with ``key``,
    ``token`` or ``secret``) are redacted from every message. Pass
    ``tracer_provider`` to send the spans through your own provider and its
    processors instead; nothing is added to it. ``sample`` traces that share of map items
    (failed ones always); ``sample_rate`` that share of runs. ``trace_per_item`` makes each
    map item a trace of its own, linked to the run's (:mod:`hush.observability.item_traces`).
    """

    backend = "OTLP"

    def __init__(
        self,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        service_name: str = "hush",
        *,
        tracer_provider: TracerProvider | None = None,
        flush_timeout: float = 5.0,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        include_io: bool = True,
        sample_rate: float = 1.0,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        flush_interval: float = 1.0,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        project_name: str | None = None,
        sample: float = 1.0,
        trace_per_item: bool = False,
    ) -> None:
        self.endpoint = traces_endpoint(endpoint)
        own = tracer_provider is None
        provider = tracer_provider or private_provider(
            service_name=service_name,
            sample_rate=sample_rate,
            resource_attributes={"openinference.project.name": project_name},
        )
        super().__init__(
            provider,
            own=own,
            flush_timeout=flush_timeout,
            max_field_chars=max_field_chars,
            include_io=include_io,
            log=logger,
            max_queued_events=max_queued_events,
            sample=sample,
            trace_per_item=trace_per_item,
        )
        register_header_secrets(headers, what="OTLPTracer header")
        if own:
            exporter = self.otlp_exporter(self.endpoint, headers, flush_timeout)
            processor = BatchSpanProcessor(
                exporter,
                max_queue_size=max_queue_size,
                schedule_delay_millis=flush_interval * 1000,
            )
            self.add_processor(processor)
            self.wire_export(processor, exporter)

    @property
    def destination(self) -> str:
        """The traces endpoint."""
        return self.endpoint


def traces_endpoint(endpoint: str | None) -> str:
    """The URL spans are posted to (see :class:`OTLPTracer`)."""
    if endpoint:
        endpoint = endpoint.rstrip("/")
        return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"
    specific = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if specific:
        return specific
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    return f"{base.rstrip('/')}/v1/traces"
