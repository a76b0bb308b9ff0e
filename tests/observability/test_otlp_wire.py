"""hush's OTLP encoder writes what OpenTelemetry's own encoder writes, decoded by the library."""

from __future__ import annotations

from collections.abc import Sequence

import graphs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from hush.observability import OTLPTracer, otlp_wire
from hush.observability.otel_spans import private_provider
from hush.observability.otlp_wire import Request, encode_request, span_fields


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def same_as_the_library(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)


async def nested_map_spans(rows: int) -> list[ReadableSpan]:
    """The spans of a run of ``rows`` rows of 10 cells (one bad), each item a trace of its
    own, through the SDK to a processor that keeps them."""
    keep = Keep()
    provider = private_provider(service_name="wire", resource_attributes={"x.y": "é ✓"})
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = OTLPTracer(tracer_provider=provider, trace_per_item=True)
    table = [list(range(row * 10, row * 10 + 10)) for row in range(rows)]
    await graphs.nested_map(bad=17).run({"rows": table}, tracer=tracer, run_id=f"wire-{rows}")
    tracer.close()
    return keep.spans


async def test_the_spans_of_a_run_encode_as_opentelemetrys_encoder_does(
    quiet_map_errors: None,
) -> None:
    spans = await nested_map_spans(rows=3)

    assert any(s.links for s in spans) and any(s.events for s in spans)
    assert any(s.status.status_code is StatusCode.ERROR for s in spans)
    same_as_the_library(spans)


def test_every_attribute_type_encodes_as_opentelemetrys_encoder_does() -> None:
    keep = Keep()
    provider = private_provider(service_name="wire")
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("wire-test", "1.0", schema_url="https://example.com/s")
    linked = SpanContext(2**100 + 5, 2**60 + 3, True, TraceFlags(1))
    with tracer.start_as_current_span(
        "outer", kind=SpanKind.SERVER, links=[Link(linked, {"n": -3})]
    ) as outer:
        outer.set_attributes(
            {
                "s": "text ✓ \x00",
                "b": True,
                "i": -(2**40),
                "big": 2**62,
                "f": 0.25,
                "ss": ["a", "b"],
                "ii": [1, 2, 300],
                "ff": [1.5],
                "bb": [False, True],
                "empty": "",
            }
        )
        outer.add_event("happened", {"k": 1})
        with tracer.start_as_current_span("inner", kind=SpanKind.CLIENT) as inner:
            inner.set_status(Status(StatusCode.ERROR, "it failed"))
    provider.shutdown()

    assert len(keep.spans) == 2
    same_as_the_library(keep.spans)


def test_attributes_kept_encoded_are_told_apart_by_type_and_place() -> None:
    """An attribute encoded once and kept (a short string, an integer, a boolean) is not
    confused with an equal value of another type (``True == 1``) nor with the same pair in a
    resource, an event or a link."""
    keep = Keep()
    provider = private_provider(service_name="wire", resource_attributes={"k": "v"})
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("wire-test", "1.0")
    linked = SpanContext(2**100 + 5, 2**60 + 3, False, TraceFlags(1))
    for value in (True, 1, "v", 1, True, 0, False, 1.0):
        with tracer.start_as_current_span("s", links=[Link(linked, {"k": value})]) as span:
            span.set_attributes({"k": value, "x" * 300: "y" * 300})
            span.add_event("e", {"k": value})
    provider.shutdown()

    same_as_the_library(keep.spans)
    kept = ExportTraceServiceRequest.FromString(encode_request(keep.spans))
    values = [
        span.attributes[0].value.WhichOneof("value")
        for span in kept.resource_spans[0].scope_spans[0].spans
    ]
    bool_, int_, str_ = "bool_value", "int_value", "string_value"
    assert values == [bool_, int_, str_, int_, bool_, int_, bool_, "double_value"]


def test_a_remote_parent_and_trace_state_encode_as_opentelemetrys_encoder_does() -> None:
    keep = Keep()
    provider = private_provider(service_name="wire")
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("wire-test", "1.0")
    remote = SpanContext(2**90 + 7, 2**50 + 1, True, TraceFlags(1), TraceState([("k", "v")]))
    with tracer.start_as_current_span(
        "child", context=set_span_in_context(NonRecordingSpan(remote))
    ):
        pass
    with tracer.start_as_current_span("unset") as span:
        span.set_status(Status(StatusCode.OK))
    provider.shutdown()

    assert keep.spans[0].context.trace_state and keep.spans[0].parent.is_remote
    same_as_the_library(keep.spans)


async def test_spans_written_from_their_fields_make_the_librarys_request(
    quiet_map_errors: None,
) -> None:
    """:func:`span_fields` and :class:`Request` (what spans built directly are sent as) write
    what OpenTelemetry's encoder writes, keys whose values vary (over 64 paths) included."""
    spans = await nested_map_spans(rows=10)
    assert any(s.links for s in spans) and any(s.events for s in spans)
    request = Request(spans[0].resource, spans[0].instrumentation_scope)
    framed = [
        Request.frame(
            span_fields(
                (s.context.trace_id, s.context.span_id, s.parent and s.parent.span_id),
                s.name,
                s.kind,
                (s.start_time or 0, s.end_time or 0),
                s.attributes or {},
                s.events,
                s.links,
                s.status,
            )
        )
        for s in spans
    ]
    assert ExportTraceServiceRequest.FromString(request.of(framed)) == encode_spans(spans)


def test_a_span_whose_links_were_all_dropped_says_how_many() -> None:
    resource, scope = Resource.create({"service.name": "x"}), InstrumentationScope("hush", "1")
    links = BoundedList.from_seq(0, [Link(SpanContext(9, 8, False, TraceFlags(1)), {"a": "b"})])
    assert len(links) == 0 and links.dropped == 1
    span = ReadableSpan(
        "item",
        SpanContext(5, 6, False, TraceFlags(1)),
        None,
        resource,
        {"k": "v"},
        links=links,
        kind=SpanKind.INTERNAL,
        start_time=1,
        end_time=2,
        instrumentation_scope=scope,
    )
    fields = span_fields((5, 6, None), "item", SpanKind.INTERNAL, (1, 2), {"k": "v"}, (), links)
    ours = Request(resource, scope).of([Request.frame(fields)])
    assert ExportTraceServiceRequest.FromString(ours) == encode_spans([span])


def test_text_that_is_not_unicode_and_integers_beyond_int64_keep_the_request_valid() -> None:
    """A lone surrogate (a file name decoded with ``surrogateescape``) is sent escaped, an
    integer OTLP cannot hold as its exact digits: the other spans of the request arrive."""
    bad = "report-\udcff.txt"
    attributes = [{"ok": "fine"}, {"output.value": bad, "n": 2**64, "m": -(2**63)}]
    request = Request(Resource.create({}), InstrumentationScope("hush"))
    framed = [
        Request.frame(span_fields((5, 6 + i, None), bad, SpanKind.INTERNAL, (1, 2), a))
        for i, a in enumerate(attributes)
    ]
    decoded = ExportTraceServiceRequest.FromString(request.of(framed))
    spans = decoded.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["report-\\udcff.txt"] * 2
    values = {kv.key: kv.value for kv in spans[1].attributes}
    assert values["output.value"].string_value == "report-\\udcff.txt"
    assert values["n"].string_value == str(2**64) and values["m"].int_value == -(2**63)


def test_the_encoded_attributes_kept_are_bounded() -> None:
    """Keys that vary (a per-message key, a per-run metadata key) and values of keys that
    repeat are kept encoded up to a bound in all, then the tables start over."""
    for n in range(3 * otlp_wire._KEPT_MAX):
        otlp_wire._attributes(9, {f"key.{n}": f"v{n % 50}", "flag": n % 2 == 0, "i": n % 7})
        if n % 997:
            continue
        kept = sum(
            1 + len(k.texts or ()) for keys in otlp_wire._keys.values() for k in keys.values()
        )
        assert kept + len(otlp_wire._scalars) <= otlp_wire._KEPT_MAX + 1
