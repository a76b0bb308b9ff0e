"""LangfuseTracer: one Langfuse trace per run, on the official ``langfuse`` SDK.

How the SDK is used:

* The client gets its own ``TracerProvider``, so it never installs itself as
  the process-wide OpenTelemetry provider.
* Trace-level fields (trace name, user, session, tags, metadata) are set with
  ``propagate_attributes`` when the root span starts. That context is kept and
  re-attached, for the duration of the call only, whenever a child span or a
  generation is started, whatever task or thread starts it. The SDK's span
  processor copies the fields from that context onto every span of the run.
* Parents are explicit (``parent.start_observation``), never the "current span".
* Spans are exported by the SDK's batch processor in the background;
  :meth:`LangfuseTracer.flush` runs the SDK's blocking ``flush`` in a daemon
  thread and waits for it at most ``timeout`` seconds. The SDK's flush at
  interpreter exit is replaced by :meth:`LangfuseTracer.close`, bounded the same way.
* Secrets stay in the ``Authorization`` header the SDK builds; no key is ever
  put in a span attribute.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from langfuse import Langfuse, LangfuseGeneration, LangfuseSpan, propagate_attributes
from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Sampler, TraceIdRatioBased

from hush.observability.bounded import BoundedCall
from hush.observability.credentials import resolve_credentials
from hush.observability.ids import trace_id_for
from hush.observability.serialize import (
    DEFAULT_MAX_CHARS,
    error_message,
    to_json_text,
    to_jsonable,
    usage_details,
)
from hush.observability.tracer import SpanKind

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

MAX_TRACE_ATTRIBUTE_CHARS = 200
"""Langfuse drops trace-level strings (ids, tags, metadata values) longer than this."""

DEFAULT_MAX_QUEUE_SIZE = 16_384
"""Finished spans held for export; OpenTelemetry's default (2048) drops spans of big fast maps."""

_QUEUE_SIZE_ENV = "OTEL_BSP_MAX_QUEUE_SIZE"
_ENV_LOCK = threading.Lock()


class LangfuseTracer:
    """Sends each run to Langfuse as one trace: graph → map → item → node spans, LLM generations.

    Keys come from the arguments, else the ``langfuse:default`` resource, else
    ``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY`` (host: ``LANGFUSE_BASE_URL``
    or ``LANGFUSE_HOST``, default Langfuse Cloud). ``client_kwargs`` go to
    ``langfuse.Langfuse`` (for example ``timeout``, ``flush_at``,
    ``flush_interval``, ``mask``). The trace id of a run is
    :func:`~hush.observability.ids.trace_id_for` of its ``run_id``.

    ``max_queue_size`` bounds the finished spans waiting for export (default
    ``OTEL_BSP_MAX_QUEUE_SIZE`` if set, else 16384); beyond it spans are
    dropped with a warning from OpenTelemetry. Each span holds at most
    ``max_field_chars`` of input and of output.

    The SDK keeps one client per public key per process: a second tracer with
    the same public key shares the first one's endpoint and exporter.
    """

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
        **client_kwargs: Any,
    ) -> None:
        credentials = resolve_credentials(public_key, secret_key, host)
        self.public_key = credentials.public_key
        self.host = credentials.host
        self.flush_timeout = flush_timeout
        self.max_field_chars = max_field_chars
        rate = _sample_rate(sample_rate)
        environment = environment or os.environ.get("LANGFUSE_TRACING_ENVIRONMENT") or None
        release = release or os.environ.get("LANGFUSE_RELEASE") or None
        provider = client_kwargs.pop("tracer_provider", None) or _tracer_provider(
            rate, environment, release
        )
        with _queue_size(max_queue_size):
            self._client = Langfuse(
                public_key=credentials.public_key,
                secret_key=credentials.secret_key,
                base_url=credentials.host,
                tracer_provider=provider,
                sample_rate=rate,
                environment=environment,
                release=release,
                **client_kwargs,
            )
        self._warn_if_shared(provider)
        self._flusher = BoundedCall(self._client.flush, name="hush-langfuse-flush")
        self._closer = BoundedCall(self._client.shutdown, name="hush-langfuse-shutdown")
        self._closed = False
        self._errors = _ErrorLog()
        self._bound_exit_flush()
        logger.debug("Langfuse tracing to %s (keys from %s)", self.host, credentials.source)

    @staticmethod
    def trace_id(run_id: str) -> str:
        """The Langfuse trace id of the run ``run_id``."""
        return trace_id_for(run_id)

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
    ) -> _LangfuseSpan:
        """Start the trace of one run; the trace and its root span are named ``name``."""
        try:
            return self._start_run(name, run_id, input, user_id, session_id, tags, metadata)
        except Exception as exc:
            self._errors.report("starting the trace", exc)
            return _LangfuseSpan(
                _Run(otel_context.Context(), self.max_field_chars, self._errors), None
            )

    def _start_run(
        self,
        name: str,
        run_id: str,
        input: Any,
        user_id: str | None,
        session_id: str | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> _LangfuseSpan:
        trace_metadata = {"run_id": run_id, **(metadata or {})}
        # A clean context: the run is a trace of its own, whatever span the caller is in.
        token = otel_context.attach(otel_context.Context())
        try:
            with propagate_attributes(
                trace_name=_short(name),
                user_id=_short(user_id),
                session_id=_short(session_id),
                tags=[tag for tag in (_short(t) for t in tags or ()) if tag] or None,
                metadata=_short_metadata(trace_metadata),
            ):
                run = _Run(otel_context.get_current(), self.max_field_chars, self._errors)
                root = self._client.start_observation(
                    trace_context={"trace_id": trace_id_for(run_id)},
                    name=name,
                    as_type="span",
                    input=run.text(input),
                    metadata={"kind": "run", **run.jsonable_mapping(trace_metadata)},
                )
        finally:
            otel_context.detach(token)
        return _LangfuseSpan(run, root)

    async def flush(self, timeout: float | None = None) -> None:
        """Export queued spans, waiting at most ``timeout`` (default ``flush_timeout``) seconds.

        On timeout, logs one warning and returns; the export goes on in the
        background. Never raises.
        """
        bound = self.flush_timeout if timeout is None else timeout
        try:
            finished = await self._flusher.run(bound)
        except Exception as exc:
            self._errors.report("flushing", exc)
            return
        if not finished:
            logger.warning(
                "Langfuse export to %s did not finish within %.1f s (server unreachable or slow?); "
                "the run is not affected and export continues in the background",
                self.host,
                bound,
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush and stop the SDK client, blocking at most ``timeout`` seconds; never raises.

        Called at interpreter exit for tracers not closed before.
        """
        if self._mark_closed():
            bound = self.flush_timeout if timeout is None else timeout
            if not self._closer.run_sync(bound):
                logger.warning("Langfuse client did not shut down within %.1f s", bound)

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close` for async code: waits without blocking the event loop."""
        if self._mark_closed():
            bound = self.flush_timeout if timeout is None else timeout
            if not await self._closer.run(bound):
                logger.warning("Langfuse client did not shut down within %.1f s", bound)

    def _mark_closed(self) -> bool:
        if self._closed:
            return False
        self._closed = True
        atexit.unregister(self.close)
        return True

    def _bound_exit_flush(self) -> None:
        """Replace the SDK's exit-time flush, unbounded, by :meth:`close`, bounded by ``flush_timeout``.

        Against a hanging server the SDK's own flush at exit blocks for
        ``timeout`` seconds per queued batch.
        """
        sdk_shutdown = getattr(getattr(self._client, "_resources", None), "shutdown", None)
        if sdk_shutdown is not None:
            atexit.unregister(sdk_shutdown)
        atexit.register(self.close)

    def _warn_if_shared(self, provider: TracerProvider) -> None:
        resources = getattr(self._client, "_resources", None)
        shared_provider = getattr(resources, "tracer_provider", provider)
        if shared_provider is provider:
            return
        shared_host = str(getattr(resources, "base_url", self.host)).rstrip("/")
        if shared_host != self.host:
            logger.warning(
                "a Langfuse client for public key %s already exists in this process and sends to %s; "
                "this tracer's host %s is ignored (the SDK keeps one client per public key)",
                self.public_key,
                shared_host,
                self.host,
            )


class _Run:
    """What every span of one run shares: the trace-level context, size limit and error log."""

    __slots__ = ("context", "errors", "max_chars")

    def __init__(self, context: otel_context.Context, max_chars: int, errors: _ErrorLog) -> None:
        self.context = context
        self.max_chars = max_chars
        self.errors = errors

    def start(self, what: str, fn: Callable[[], _T]) -> _T | None:
        """Call ``fn`` with the run's context attached, so new spans get the trace-level fields."""
        try:
            token = otel_context.attach(self.context)
            try:
                return fn()
            finally:
                otel_context.detach(token)
        except Exception as exc:
            self.errors.report(what, exc)
            return None

    def guard(self, what: str, fn: Callable[[], None]) -> None:
        """Call ``fn``, reporting instead of raising any failure."""
        try:
            fn()
        except Exception as exc:
            self.errors.report(what, exc)

    def text(self, value: Any) -> str | None:
        """An input or output as the JSON text the SDK would make of it (strings stay raw)."""
        return None if value is None else to_json_text(value, max_chars=self.max_chars)

    def jsonable(self, value: Any) -> Any:
        return None if value is None else to_jsonable(value, max_chars=self.max_chars)

    def jsonable_mapping(self, value: Mapping[str, Any] | None) -> dict[str, Any]:
        return {str(k): self.jsonable(v) for k, v in (value or {}).items() if v is not None}


class _LangfuseSpan:
    """A span of a run; children and generations start under it."""

    __slots__ = ("_ended", "_observation", "_run")

    def __init__(self, run: _Run, observation: LangfuseSpan | None) -> None:
        self._run = run
        self._observation = observation
        self._ended = False

    def child(self, name: str, *, kind: SpanKind, input: Any = None) -> _LangfuseSpan:
        parent, run = self._observation, self._run
        if parent is None:
            return _LangfuseSpan(run, None)

        def start() -> LangfuseSpan:
            return parent.start_observation(
                name=name, as_type="span", input=run.text(input), metadata={"kind": kind}
            )

        return _LangfuseSpan(run, run.start(f"starting span {name!r}", start))

    def generation(
        self,
        name: str,
        *,
        model: str,
        input: Any,
        model_parameters: Mapping[str, Any] | None = None,
    ) -> _LangfuseGeneration:
        parent, run = self._observation, self._run
        if parent is None:
            return _LangfuseGeneration(run, None)

        def start() -> LangfuseGeneration:
            return parent.start_observation(
                name=name,
                as_type="generation",
                model=model,
                model_parameters=_model_parameters(model_parameters),
                input=run.text(input),
            )

        return _LangfuseGeneration(run, run.start(f"starting generation {name!r}", start))

    def end(
        self,
        *,
        output: Any = None,
        error: BaseException | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        observation, run = self._observation, self._run
        if observation is None or self._ended:
            return
        self._ended = True

        def finish() -> None:
            extra = run.jsonable_mapping(metadata)
            if status is not None:
                extra["status"] = status
            level: Literal["WARNING", "ERROR"] | None = None
            message: str | None = None
            if error is not None:
                level, message = "ERROR", error_message(error)
            elif status == "cancelled":
                level, message = "WARNING", "cancelled before it finished"
            observation.update(
                output=run.text(output),
                metadata=extra or None,
                level=level,
                status_message=message,
            )
            observation.end()

        run.guard("ending a span", finish)


class _LangfuseGeneration:
    """One LLM call, a Langfuse observation of type ``generation``."""

    __slots__ = ("_ended", "_observation", "_run")

    def __init__(self, run: _Run, observation: LangfuseGeneration | None) -> None:
        self._run = run
        self._observation = observation
        self._ended = False

    def end(
        self,
        *,
        output: Any = None,
        usage: Mapping[str, int] | None = None,
        model: str | None = None,
        error: BaseException | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        observation, run = self._observation, self._run
        if observation is None or self._ended:
            return
        self._ended = True

        def finish() -> None:
            observation.update(
                output=run.text(output),
                usage_details=usage_details(usage),
                model=model,
                metadata=run.jsonable_mapping(metadata) or None,
                level="ERROR" if error is not None else None,
                status_message=error_message(error) if error is not None else None,
            )
            observation.end()

        run.guard("ending a generation", finish)


class _ErrorLog:
    """Logs the first tracing failure as a warning and later ones at debug level."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def report(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._count += 1
            first = self._count == 1
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "Langfuse tracing failed while %s: %s", what, exc, exc_info=first)


@contextmanager
def _queue_size(size: int | None) -> Iterator[None]:
    """Set the export queue size while the SDK builds its span processor.

    The SDK's processor takes the size only from ``OTEL_BSP_MAX_QUEUE_SIZE``,
    read once at construction; the variable is restored right after.
    """
    current = os.environ.get(_QUEUE_SIZE_ENV)
    if size is None and current is not None:
        yield
        return
    with _ENV_LOCK:
        os.environ[_QUEUE_SIZE_ENV] = str(size or DEFAULT_MAX_QUEUE_SIZE)
        try:
            yield
        finally:
            if current is None:
                os.environ.pop(_QUEUE_SIZE_ENV, None)
            else:
                os.environ[_QUEUE_SIZE_ENV] = current


def _sample_rate(sample_rate: float | None) -> float:
    rate = (
        sample_rate
        if sample_rate is not None
        else float(os.environ.get("LANGFUSE_SAMPLE_RATE", 1.0))
    )
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, got {rate}")
    return rate


def _tracer_provider(rate: float, environment: str | None, release: str | None) -> TracerProvider:
    """A private provider (never the global one), configured as the SDK would configure its own."""
    attributes = {"langfuse.environment": environment, "langfuse.release": release}
    sampler: Sampler | None = TraceIdRatioBased(rate) if rate < 1.0 else None
    return TracerProvider(
        resource=Resource.create({k: v for k, v in attributes.items() if v}),
        sampler=sampler,
        shutdown_on_exit=False,
    )


def _short(value: str | None) -> str | None:
    """``value`` as a string if Langfuse accepts it as a trace-level field, else ``None``."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_TRACE_ATTRIBUTE_CHARS else None


def _short_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata entries small enough to be trace metadata (all of them stay on the root span)."""
    kept: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        data = to_jsonable(value, max_chars=MAX_TRACE_ATTRIBUTE_CHARS)
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if len(encoded) <= MAX_TRACE_ATTRIBUTE_CHARS:
            kept[str(key)] = data
    return kept


def _model_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Model parameters as the scalar or string values Langfuse accepts."""
    if not parameters:
        return None
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if value is None or isinstance(value, str | int | float | bool):
            out[str(key)] = value
        else:
            out[str(key)] = str(to_jsonable(value, max_chars=2_000))
    return out
