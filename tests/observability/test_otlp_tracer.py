"""OTLPTracer: the engine's runs as OpenTelemetry spans, decoded from a loopback OTLP receiver."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing

import anyio
import pytest
from graphs import QUERIES, batch_graph
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OTLP_PATH, OtlpReceiver, ReceivedSpan, closed_port_url

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.observability import OTLPTracer
from hush.observability.ids import trace_id_for
from hush.testing import MockLLMServer

ERROR = otel_trace.StatusCode.ERROR.value
CLIENT = 3  # SpanKind.SPAN_KIND_CLIENT in the OTLP protobuf


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id]


async def test_a_run_is_one_nested_trace_with_genai_spans(
    llm_resource: MockLLMServer, receiver: OtlpReceiver
) -> None:
    tracer = OTLPTracer(receiver.url, service_name="batch-service")
    result = await Hush(batch_graph()).run(
        {"queries": QUERIES}, tracer=tracer, run_id="otlp-run", user_id="u-1", session_id="s-1"
    )
    assert result["$state"].iterations["traced-batch/llm_batch"].failed == 1

    spans = receiver.wait_for_spans(82)
    assert len(spans) == 82
    assert {r.path for r in receiver.requests} == {OTLP_PATH}
    assert {s.trace_id for s in spans} == {trace_id_for("otlp-run")}
    assert {s.resource["service.name"] for s in spans} == {"batch-service"}
    ids = {s.span_id for s in spans}
    (root,) = [s for s in spans if s.parent_id not in ids]
    assert root.name == "traced-batch"
    assert root.attributes["hush.kind"] == "run"
    assert (root.attributes["user.id"], root.attributes["session.id"]) == ("u-1", "s-1")
    (batch,) = children(spans, root)
    assert (batch.name, batch.attributes["hush.kind"]) == ("llm_batch", "map")
    items = {s.name: s for s in children(spans, batch)}
    assert sorted(items) == sorted(f"llm_batch[{i}]" for i in range(20))

    for name, item in items.items():
        index = int(name[len("llm_batch[") : -1])
        assert item.attributes["hush.kind"] == "item"
        assert item.attributes["hush.path"] == f"traced-batch/llm_batch[{index}]"
        nodes = {s.name: s for s in children(spans, item)}
        assert set(nodes) == {"prompt", "llm"}
        assert f"question {index}" in nodes["prompt"].attributes["input.value"]
        assert nodes["prompt"].start_ns <= nodes["prompt"].end_ns <= nodes["llm"].start_ns
        (generation,) = children(spans, nodes["llm"])
        attributes = generation.attributes
        assert generation.name == "chat gpt-4o-mini" and generation.kind == CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.request.temperature"] == 0
        assert nodes["llm"].start_ns <= generation.start_ns <= generation.end_ns
        assert generation.end_ns <= nodes["llm"].end_ns
        if index == 13:
            for span in (item, nodes["llm"], generation):
                assert span.status_code == ERROR, span.name
                assert "HTTP 400" in span.status_message
            (exception,) = [e for e in nodes["llm"].events if e[0] == "exception"]
            assert exception[1]["exception.type"] == "LLMCallError"
            assert "HTTP 400" in exception[1]["exception.message"]
            assert "Traceback" in exception[1]["exception.stacktrace"]
            assert nodes["llm"].attributes["hush.status"] == "error"
            continue
        assert item.status_code != ERROR and item.attributes["hush.status"] == "ok"
        assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
        assert f"question {index}" in attributes["output.value"]
    assert b"sk-llm-secret-xyz" not in b"".join(r.body for r in receiver.requests)


async def test_a_cancelled_run_and_a_timed_out_node_are_exported(receiver: OtlpReceiver) -> None:
    async def hang() -> dict[str, int]:
        await asyncio.sleep(60)
        return {"x": 1}

    with GraphNode(name="stuck") as graph:
        hanging = CodeNode(name="hang", code_fn=hang, outputs={"x": PARENT})
        timed = CodeNode(name="timed", code_fn=hang, outputs={"y": PARENT}, timeout=0.05)
        START >> [hanging, timed] >> END
    tracer = OTLPTracer(receiver.url)
    with anyio.fail_after(10):
        async with aclosing(Hush(graph).stream(tracer=tracer)) as events:
            async for event in events:
                if event.kind == "node_end" and event.name == "timed":
                    assert event.status == "timeout"
                    break
        await tracer.flush()

    spans = receiver.wait_for_spans(3)
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"stuck", "hang", "timed"}
    assert by_name["stuck"].attributes["hush.status"] == "cancelled"
    assert by_name["hang"].attributes["hush.status"] == "cancelled"
    assert by_name["timed"].attributes["hush.status"] == "timeout"
    assert by_name["timed"].status_code == ERROR
    assert "timed out after 0.05s" in by_name["timed"].status_message
    assert by_name["hang"].end_ns - by_name["hang"].start_ns < 5e9


async def test_endpoint_from_the_standard_environment_variables(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GraphNode(name="env") as graph:
        node = CodeNode(name="n", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> node >> END
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url + "/")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    tracer = OTLPTracer()
    assert tracer.endpoint == receiver.url + OTLP_PATH
    await Hush(graph).run(tracer=tracer)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + OTLP_PATH)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    await Hush(graph).run(tracer=OTLPTracer())
    assert len(receiver.wait_for_spans(4)) == 4


async def test_your_own_tracer_provider_gets_the_spans() -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    before = otel_trace.get_tracer_provider()
    with GraphNode(name="mine") as graph:
        node = CodeNode(name="n", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> node >> END
    tracer = OTLPTracer(tracer_provider=provider)
    await Hush(graph).run(tracer=tracer)
    assert sorted(s.name for s in exported.get_finished_spans()) == ["mine", "n"]
    assert otel_trace.get_tracer_provider() is before
    tracer.close()
    with provider.get_tracer("still-yours").start_as_current_span("after"):
        pass
    assert exported.get_finished_spans()[-1].name == "after"


def test_a_tracer_provider_that_is_not_the_sdks_is_refused() -> None:
    with pytest.raises(TypeError, match="OpenTelemetry SDK TracerProvider"):
        OTLPTracer(tracer_provider=otel_trace.NoOpTracerProvider())  # type: ignore[arg-type]


async def test_a_dead_backend_costs_the_flush_timeout_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with GraphNode(name="dead") as graph:
        node = CodeNode(name="n", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> node >> END
    tracer = OTLPTracer(closed_port_url(), flush_timeout=0.5)
    started = time.monotonic()
    for _ in range(3):
        result = await Hush(graph).run(tracer=tracer)
        assert result["v"] == 1
    assert time.monotonic() - started < 3 * 0.5 + 1.5
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.name == "hush.observability.otlp" for r in loud), [r.name for r in loud]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert loud[0].getMessage().startswith(f"OTLP export to {tracer.endpoint} ")
    tracer.close(timeout=0.2)


async def test_a_run_started_inside_a_streamed_run_does_not_stream_into_it() -> None:
    with GraphNode(name="inner") as inner_graph:
        leaf = CodeNode(name="leaf", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> leaf >> END
    inner = Hush(inner_graph)

    async def nested() -> dict[str, int]:
        result = await inner.run({})
        return {"v": result["v"] + 1}

    with GraphNode(name="outer") as outer_graph:
        node = CodeNode(name="calls_inner", code_fn=nested, outputs={"v": PARENT})
        START >> node >> END
    events = [event async for event in Hush(outer_graph).stream({})]
    assert {event.run_id for event in events} == {events[0].run_id}
    assert not [event for event in events if event.path.startswith("inner")]
    assert events[-1].kind == "run_end" and events[-1].result["v"] == 2  # type: ignore[index]


async def test_a_backend_echoing_the_bearer_key_in_its_error_leaks_no_key(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-otlp-echo-0123456789abcdef"
    receiver.fail_with = 403
    caplog.set_level(logging.DEBUG)
    with GraphNode(name="echoed") as graph:
        node = CodeNode(name="n", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> node >> END
    tracer = OTLPTracer(receiver.url, headers={"Authorization": f"Bearer {key}"})
    assert (await Hush(graph).run(tracer=tracer))["v"] == 1

    assert receiver.requests[0].headers["authorization"] == f"Bearer {key}"
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and "HTTP 403" in loud[0] and "bad credentials" in loud[0]
    assert key not in caplog.text and key not in "".join(r.getMessage() for r in caplog.records)
    tracer.close(timeout=0.2)
