"""Spans built directly for hush's private provider reach the wire exactly as the SDK's would.

The same recorded events go to two tracers of the same kind and options: one on its private
provider (spans built directly, :mod:`hush.observability.otel_spans`), one whose provider
was given a processor of someone else's (spans through ``Tracer.start_span``/``Span.end``).
Both export to a loopback OTLP receiver; the requests are decoded with OpenTelemetry's
protobuf classes and compared span by span (span ids are random per tracer, so a span is
known by its trace, name, start time and its parent's), attribute by attribute, then every
other field.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import graphs
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as WireSpan
from opentelemetry.sdk.trace import SpanProcessor, Tracer
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from otlp_receiver import OtlpReceiver

from hush import Labels
from hush.core import Hush
from hush.core.events import Event
from hush.observability import LangfuseTracer, OTLPTracer
from hush.observability.ids import trace_id_for
from hush.testing import MockLLMServer

LABELS = Labels(user_id="ana", session_id="s-1", tags=["nightly", "t" * 300], metadata={"k": [1]})


class Recorder:
    """Keeps every event of a run, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def subscribe(self, start: Event) -> Callable[[Event], None]:
        return self.events.append

    async def flush(self, timeout: float | None = None) -> None:
        return None


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.CRITICAL, logger="hush.core")
    yield


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the spans started through ``Tracer.start_span``."""
    names: list[str] = []
    start_span = Tracer.start_span

    def counted(self: Tracer, name: str, *args: Any, **kwargs: Any) -> Any:
        names.append(name)
        return start_span(self, name, *args, **kwargs)

    monkeypatch.setattr(Tracer, "start_span", counted)
    return names


def kept_run(rate: float) -> str:
    """A run id whose trace ``TraceIdRatioBased(rate)`` keeps, while it drops some of its
    items' own traces (``trace_per_item``)."""
    sampler = TraceIdRatioBased(rate)
    for n in itertools.count():
        run_id = f"direct-nested-{n}"
        items = [f"{run_id}\x00nested/rows[{i}]" for i in range(4)]
        kept = [
            sampler.should_sample(None, int(trace_id_for(key), 16), "x").decision.is_sampled()
            for key in [run_id, *items]
        ]
        if kept[0] and not all(kept[1:]) and any(kept[1:]):
            return run_id
    raise AssertionError("unreachable")


async def nested_events(run_id: str = "direct-nested") -> list[Event]:
    recorder = Recorder()
    table = [list(range(row * 4, row * 4 + 4)) for row in range(4)]
    await graphs.nested_map(bad=6).run(
        {"rows": table}, tracer=recorder, run_id=run_id, labels=LABELS
    )
    return recorder.events


async def llm_events(server: MockLLMServer) -> list[Event]:
    recorder = Recorder()
    queries = [f"question {i}" + (" [[fail:400]]" if i == 3 else "") for i in range(6)]
    await Hush(graphs.batch_graph()).run(
        {"queries": queries}, tracer=recorder, run_id="direct-llm", labels=LABELS
    )
    return recorder.events


def replay(tracer: Any, events: list[Event]) -> None:
    sink = tracer.subscribe(events[0])
    for event in events:
        sink(event)
    tracer.close(timeout=10.0)


def decoded(receiver: OtlpReceiver) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Each span received, by its place in its trace: resource, scope, attributes in order,
    and the rest of the span (ids replaced by places)."""
    found: list[tuple[Any, Any, WireSpan]] = []
    for request in receiver.requests:
        message = ExportTraceServiceRequest()
        message.ParseFromString(request.body)
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append((resource_spans, scope_spans, span))
    by_id = {span.span_id: span for _, _, span in found}

    def place(span_id: bytes) -> tuple[Any, ...]:
        span = by_id[span_id]
        above = place(span.parent_span_id) if span.parent_span_id else span.trace_id.hex()
        return (above, span.name, span.start_time_unix_nano)

    spans: dict[tuple[Any, ...], dict[str, Any]] = {}
    for resource_spans, scope_spans, span in found:
        key = place(span.span_id)
        assert key not in spans, f"two spans at {key}"
        rest = WireSpan()
        rest.CopyFrom(span)
        del rest.attributes[:]
        rest.span_id = rest.parent_span_id = b""
        links = [place(link.span_id) for link in rest.links]
        for link in rest.links:
            link.span_id = b""
        spans[key] = {
            "resource": MessageToDict(resource_spans.resource),
            "scope": MessageToDict(scope_spans.scope),
            "attributes": [(a.key, MessageToDict(a.value)) for a in span.attributes],
            "rest": MessageToDict(rest),
            "links": links,
        }
    return spans


def assert_same(direct: OtlpReceiver, sdk: OtlpReceiver) -> None:
    built, through = decoded(direct), decoded(sdk)
    assert built and sorted(built, key=repr) == sorted(through, key=repr)
    for key, span in built.items():
        other = through[key]
        for (name, value), (other_name, other_value) in zip(
            span["attributes"], other["attributes"], strict=False
        ):
            assert (name, value) == (other_name, other_value), f"{key[1]}: attribute {name}"
        assert span["attributes"] == other["attributes"], f"{key[1]}: attribute count/order"
        for part in ("rest", "links", "scope", "resource"):
            assert span[part] == other[part], f"{key[1]}: {part}"


Make = Callable[..., Any]


@pytest.fixture
def kinds(make_tracer: Callable[..., LangfuseTracer]) -> dict[str, Make]:
    return {
        "otlp": lambda url, **options: OTLPTracer(url, flush_timeout=10.0, **options),
        "langfuse": lambda url, **options: make_tracer(url, flush_timeout=10.0, **options),
    }


def compare(
    kinds: dict[str, Make], kind: str, events: list[Event], started: list[str], **options: Any
) -> None:
    direct, sdk = OtlpReceiver().start(), OtlpReceiver().start()
    try:
        replay(kinds[kind](direct.url, **options), events)
        assert started == [], "the private provider's spans went through Tracer.start_span"
        tracer = kinds[kind](sdk.url, **options)
        tracer.provider.add_span_processor(SpanProcessor())
        replay(tracer, events)
        assert started, "a provider with a processor of someone else's goes through the SDK"
        assert_same(direct, sdk)
    finally:
        direct.stop()
        sdk.stop()


OPTIONS = [
    {},
    {"trace_per_item": True},
    {"sample": 0.5},
    {"trace_per_item": True, "sample_rate": 0.5},
]


@pytest.mark.parametrize("kind", ["otlp", "langfuse"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
async def test_a_nested_map_with_a_failure_reaches_the_wire_as_through_the_sdk(
    kinds: dict[str, Make], kind: str, options: dict[str, Any], started: list[str], quiet: None
) -> None:
    run_id = kept_run(options["sample_rate"]) if "sample_rate" in options else "direct-nested"
    compare(kinds, kind, await nested_events(run_id), started, **options)


@pytest.mark.parametrize("kind", ["otlp", "langfuse"])
@pytest.mark.parametrize("options", OPTIONS[:3], ids=lambda o: ",".join(o) or "default")
async def test_llm_calls_reach_the_wire_as_through_the_sdk(
    kinds: dict[str, Make],
    kind: str,
    options: dict[str, Any],
    started: list[str],
    llm_resource: MockLLMServer,
    quiet: None,
) -> None:
    compare(kinds, kind, await llm_events(llm_resource), started, **options)


@pytest.mark.parametrize("kind", ["otlp", "langfuse"])
async def test_span_limits_cut_the_same_attributes(
    kinds: dict[str, Make],
    kind: str,
    started: list[str],
    llm_resource: MockLLMServer,
    quiet: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Few attributes kept and short values: evictions, cut values, dropped counts and
    Langfuse's application-root mark on a full span are the SDK's."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "7")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "12")
    caplog.set_level(logging.ERROR, logger="opentelemetry")
    compare(kinds, kind, await llm_events(llm_resource), started)


@pytest.mark.parametrize("kind", ["otlp", "langfuse"])
async def test_a_full_span_loses_the_same_attributes(
    kinds: dict[str, Make],
    kind: str,
    started: list[str],
    quiet: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The count limit alone (every value whole): the oldest attributes go, as in the SDK."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    caplog.set_level(logging.ERROR, logger="opentelemetry")
    compare(kinds, kind, await nested_events(), started)


class Restating(OTLPTracer):
    """Sets again at a span's end one attribute its start set."""

    def span_end(self, run: Any, event: Event) -> dict[str, Any]:
        return {"hush.kind": "again", **super().span_end(run, event)}


async def test_an_attribute_set_again_at_the_end_moves_last_as_in_the_sdk(
    started: list[str], quiet: None
) -> None:
    kinds: dict[str, Make] = {"restating": lambda url, **o: Restating(url, flush_timeout=10.0)}
    compare(kinds, "restating", await nested_events(), started)
