"""Loopback stand-ins for a Langfuse server's OTLP endpoint.

``OtlpReceiver`` accepts ``POST /api/public/otel/v1/traces`` (Langfuse) and
``POST /v1/traces`` (any OTLP backend), decodes the OTLP protobuf (gzip or not)
and keeps the spans as plain dicts; while ``fail_with`` is set it answers that
status instead, its status text and body echoing the ``Authorization`` header
(as some servers do). ``HangingServer`` accepts connections and never answers.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TRACES_PATH = "/api/public/otel/v1/traces"
OTLP_PATH = "/v1/traces"


@dataclass
class ReceivedRequest:
    """One HTTP request as received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    raw_body: bytes
    body: bytes
    """The body after gzip decoding."""


@dataclass
class ReceivedSpan:
    """One decoded OTLP span."""

    name: str
    span_id: str
    parent_id: str | None
    trace_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    status_message: str
    start_ns: int
    end_ns: int
    kind: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Each link's trace id, span id and attributes."""

    @property
    def type(self) -> str | None:
        value = self.attributes.get("langfuse.observation.type")
        return str(value) if value is not None else None


@dataclass
class OtlpReceiver:
    """A Langfuse-like OTLP/HTTP receiver on 127.0.0.1 running in a thread."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    fail_with: int | None = None
    """A status to answer instead of accepting the spans."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = (
                    gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                )
                receiver._receive(
                    ReceivedRequest(
                        "POST",
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        raw,
                        body,
                    )
                )
                if receiver.fail_with is not None:
                    echoed = f"bad credentials {self.headers.get('Authorization')}"
                    payload = f"{echoed}; expected another key".encode()
                    self.send_response(receiver.fail_with, echoed)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if self.path not in (TRACES_PATH, OTLP_PATH):
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.01)
        with self._lock:
            return list(self.spans)

    def _receive(self, request: ReceivedRequest) -> None:
        accepted = self.fail_with is None and request.path in (TRACES_PATH, OTLP_PATH)
        spans = decode_spans(request.body) if accepted else []
        with self._lock:
            self.requests.append(request)
            self.spans.extend(spans)


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    """Decode an ``ExportTraceServiceRequest`` into plain span records."""
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    spans = []
    for resource_spans in message.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        trace_id=span.trace_id.hex(),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        kind=span.kind,
                        events=[(e.name, _attributes(e.attributes)) for e in span.events],
                        links=[
                            (link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
                            for link in span.links
                        ],
                    )
                )
    return spans


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


class HangingServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte back."""

    def __init__(self) -> None:
        self.accepted = 0
        """Connections accepted so far."""
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._connections.append(connection)
            self.accepted += 1

    def close(self) -> None:
        self._closed.set()
        self._socket.close()
        for connection in self._connections:
            connection.close()


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
