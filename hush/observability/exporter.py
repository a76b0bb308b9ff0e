"""The OTLP/HTTP span exporter of hush's OpenTelemetry tracers.

Spans are encoded straight to OTLP protobuf (:mod:`hush.observability.otlp_wire`, what
OpenTelemetry's encoder writes, several times faster) and posted with ``httpx``.
Unlike OpenTelemetry's exporter, which retries a refused connection with
growing waits for as long as its timeout allows (so each batch to a dead port
cost seconds, one after the other), each batch here is one request bounded by
``timeout``; only a busy answer (429, 502, 503, 504) is tried again within that
time. Every outcome is reported to the tracer's
:class:`~hush.observability.health.BackendHealth`: a refused connection, a
timeout or a refusal marks the backend down, and while it is down later
batches give up at once. A batch the backend rejects as such (400, 413) is
dropped with one warning and does not mark it down.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping, Sequence
from time import monotonic, sleep

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from hush.observability.health import BackendHealth
from hush.observability.otlp_wire import encode_request

logger = logging.getLogger(__name__)

BUSY = frozenset({429, 502, 503, 504})
"""Statuses that mean "try again shortly"."""
REJECTED = frozenset({400, 413})
"""Statuses that refuse this batch, not every batch."""
FIRST_RETRY_WAIT = 0.25
"""Seconds before the first retry of a busy answer (doubling after)."""
GZIP_LEVEL = 1
"""Spans compress about 12-fold at level 1 and 14-fold at 6, which costs 3.5 times the CPU
(1.2 against 4.3 ms for 1,058 spans of a map) in a process whose event loop wants the GIL."""


class OTLPHttpExporter(SpanExporter):
    """Posts spans as OTLP/HTTP protobuf to ``endpoint``, each batch within ``timeout`` seconds."""

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None,
        timeout: float,
        health: BackendHealth,
        *,
        compress: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.health = health
        self.compress = compress
        sent = {"Content-Type": "application/x-protobuf", **dict(headers or {})}
        if compress:
            sent["Content-Encoding"] = "gzip"
        self._client = httpx.Client(headers=sent, timeout=timeout)
        self._closed = False
        self._rejections = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send ``spans``; give up at once while the backend is down."""
        if self._closed or not self.health.try_export():
            self.health.gave_up(len(spans))
            return SpanExportResult.FAILURE
        try:
            body = encode_request(spans)
        except Exception:
            logger.warning(
                "could not encode %d span(s); dropped",
                len(spans),
                exc_info=True,
            )
            self.health.gave_up(len(spans))
            return SpanExportResult.FAILURE
        return (
            SpanExportResult.SUCCESS if self.deliver(body, len(spans)) else SpanExportResult.FAILURE
        )

    def send(self, body: bytes, spans: int) -> bool:
        """Send a request already encoded (``spans`` spans); give up at once while the backend
        is down."""
        if self._closed or not self.health.try_export():
            self.health.gave_up(spans)
            return False
        return self.deliver(body, spans)

    def deliver(self, body: bytes, spans: int) -> bool:
        """Post ``body`` (retrying busy answers within ``timeout``) and report the outcome."""
        if self.compress:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        deadline = monotonic() + self.timeout
        wait = FIRST_RETRY_WAIT
        while True:
            failure, status, retry_after = self._post(body, deadline)
            if failure is None:
                self.health.succeeded()
                return True
            if status in BUSY:
                pause = retry_after if retry_after is not None else wait
                if monotonic() + pause < deadline:
                    sleep(pause)
                    wait *= 2
                    continue
            if status in REJECTED:
                self._rejected(failure, spans)
            else:
                self.health.failed(failure, spans)
            return False

    def _post(self, body: bytes, deadline: float) -> tuple[str | None, int | None, float | None]:
        """One request: ``(None, status, None)`` on success, else the failure, the status
        (if any) and the ``Retry-After`` seconds (if given)."""
        budget = max(deadline - monotonic(), 0.001)
        try:
            with self.health.request():
                response = self._client.post(self.endpoint, content=body, timeout=budget)
        except httpx.TimeoutException:
            return f"no answer within {self.timeout:.1f} s", None, None
        except httpx.ConnectError as exc:
            return f"cannot connect: {exc}", None, None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}", None, None
        status = response.status_code
        if 200 <= status < 300:
            return None, status, None
        text = response.text.strip().replace("\n", " ")[:300]
        failure = f"HTTP {status} {response.reason_phrase}" + (f": {text}" if text else "")
        return failure, status, _seconds(response.headers.get("retry-after"))

    def _rejected(self, failure: str, spans: int) -> None:
        self.health.gave_up(spans)
        self._rejections += 1
        logger.log(
            logging.WARNING if self._rejections == 1 else logging.DEBUG,
            "%s rejected a batch of %d span(s) (%s); it is dropped, later batches are still sent",
            self.endpoint,
            spans,
            failure,
        )

    def shutdown(self) -> None:
        """Close the connections; later exports fail at once."""
        self._closed = True
        self._client.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here."""
        return True


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None
