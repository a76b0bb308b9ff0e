"""Spans reach OpenTelemetry through the SDK's public API: processors see every span start
(before its children, with its parent) and end, the provider's span limits apply, a run keeps
its trace id, and Langfuse marks the run's root span as the trace's application root."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import graphs
import pytest
from hand_spans import start_run
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from otlp_receiver import OtlpReceiver

from hush.core import Hush
from hush.observability import LangfuseTracer, OTelTracer
from hush.observability.ids import trace_id_for

ROOT = Path(__file__).resolve().parents[2]


class Recording(SpanProcessor):
    """Keeps what a span processor is told, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, int | None]] = []
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        parent = span.parent.span_id if span.parent is not None else None
        self.log.append(("start", span.context.span_id, parent))

    def on_end(self, span: ReadableSpan) -> None:
        self.log.append(("end", span.context.span_id, None))
        self.ended.append(span)

    def check_order(self) -> None:
        """Each span starts once, after its parent started and before that parent ended, and
        ends once, after it started."""
        started: set[int] = set()
        ended: set[int] = set()
        for what, span_id, parent in self.log:
            if what == "start":
                assert span_id not in started, "started twice"
                assert parent is None or (parent in started and parent not in ended), (
                    "a span started outside its parent"
                )
                started.add(span_id)
            else:
                assert span_id in started and span_id not in ended, "ended without a start"
                ended.add(span_id)
        assert started == ended, "a span started and never ended"


BAD_CELL = 77


def nested_map() -> Hush:
    return graphs.nested_map(bad=BAD_CELL)


TABLE = [list(range(row * 10, row * 10 + 10)) for row in range(10)]


@pytest.fixture
def quiet_map_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.CRITICAL, logger="hush.core")
    yield


@pytest.fixture
def provider() -> Iterator[Callable[..., tuple[TracerProvider, Recording]]]:
    made: list[TracerProvider] = []

    def make(**options: object) -> tuple[TracerProvider, Recording]:
        provider = TracerProvider(**options)  # type: ignore[arg-type]
        recording = Recording()
        provider.add_span_processor(recording)
        made.append(provider)
        return provider, recording

    yield make
    for provider in made:
        provider.shutdown()


@pytest.mark.parametrize("sample", [1.0, 0.0])
async def test_processors_see_each_span_start_with_its_parent_then_end(
    provider: Callable[..., tuple[TracerProvider, Recording]], quiet_map_errors: None, sample: float
) -> None:
    sdk, recording = provider()
    tracer = OTelTracer(sdk, sample=sample)
    await nested_map().run({"rows": TABLE}, tracer=tracer, run_id=f"sdk-api-{sample}")
    tracer.close()

    recording.check_order()
    spans = recording.ended
    assert {f"{s.context.trace_id:032x}" for s in spans} == {trace_id_for(f"sdk-api-{sample}")}
    assert [s.name for s in spans if s.parent is None] == ["nested"]
    items = sorted(s.name for s in spans if s.attributes["hush.kind"] == "item")
    if sample == 0.0:
        assert items == ["cells[7]", "rows[7]"], "held spans replay only for the failed item"
    else:
        assert len(items) == 110
    for span in spans:
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time, span.name


def test_spans_left_open_start_before_and_end_with_the_run(
    provider: Callable[..., tuple[TracerProvider, Recording]],
) -> None:
    sdk, recording = provider()
    tracer = OTelTracer(sdk, sample=0.5)
    run = start_run(tracer, "graph", run_id="left-open")
    items = run.child("map", kind="map")
    for index in range(4):
        items.child(f"map[{index}]", kind="item").child("step", kind="node")
    run.end(output={"done": True})
    tracer.close()

    recording.check_order()
    status = sorted((s.name, s.attributes["hush.status"]) for s in recording.ended)
    assert ("graph", "ok") in status
    unfinished = [name for name, state in status if state == "unfinished"]
    assert len(unfinished) == len(status) - 1 == 1 + 4 + 4


def test_the_providers_span_limits_apply(
    provider: Callable[..., tuple[TracerProvider, Recording]],
) -> None:
    sdk, recording = provider(span_limits=SpanLimits(max_span_attributes=3))
    tracer = OTelTracer(sdk)
    run = start_run(tracer, "graph", run_id="limited", input={"q": 1})
    run.child("step", kind="node", input={"x": 1}).end(output={"y": 2})
    run.end(output={"done": True})
    tracer.close()

    assert len(recording.ended) == 2
    for span in recording.ended:
        assert len(span.attributes) == 3 and span.dropped_attributes > 0, span.name


def test_spans_are_built_by_hand_only_for_hushs_own_provider() -> None:
    """A ``ReadableSpan`` is built directly only by the private provider's path
    (``otel_spans.DirectSpans``, checked against the SDK's in test_otel_direct_spans.py), and
    no processor is reached through the SDK's private attributes."""
    found = subprocess.run(
        ["grep", "-rln", "-e", "_active_span_processor", "-e", "ReadableSpan(", "hush"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.stdout.split() == ["hush/observability/otel_spans.py"]
    found = subprocess.run(
        ["grep", "-rn", "_active_span_processor", "hush"], cwd=ROOT, capture_output=True, text=True
    )
    assert found.stdout == ""


@pytest.mark.parametrize("sample", [1.0, 0.0])
async def test_langfuse_marks_the_runs_root_as_the_app_root(
    receiver: OtlpReceiver,
    make_tracer: Callable[..., LangfuseTracer],
    quiet_map_errors: None,
    sample: float,
) -> None:
    tracer = make_tracer(receiver.url, sample=sample)
    await nested_map().run({"rows": TABLE}, tracer=tracer, run_id=f"app-root-{sample}")
    tracer.close()
    spans = receiver.wait_for_spans(10 if sample == 0.0 else 2 + 10 + 10 * 2 + 100 * 2)

    assert {s.trace_id for s in spans} == {trace_id_for(f"app-root-{sample}")}
    roots = [s.name for s in spans if s.attributes.get("langfuse.internal.is_app_root")]
    assert roots == ["nested"]
    ids = {s.span_id for s in spans}
    assert all(s.parent_id in ids for s in spans if s.parent_id), "no orphaned span"
