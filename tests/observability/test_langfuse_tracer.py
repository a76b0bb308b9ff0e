"""LangfuseTracer against the real langfuse SDK and a loopback OTLP receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from batch_driver import MODEL, RESOLVED_MODEL, drive_batch, usage_of
from hand_spans import start_run
from langfuse import Langfuse
from opentelemetry import trace as otel_trace
from otlp_receiver import HangingServer, OtlpReceiver, ReceivedSpan, closed_port_url

from hush.observability import Tracer
from hush.observability.langfuse import LangfuseTracer

ITEMS = 20
SPANS_PER_RUN = 2 + ITEMS * 4  # root, map, then item, prompt, llm, generation per item
TRACE_LEVEL = ("langfuse.trace.name", "user.id", "session.id", "langfuse.trace.tags")

MakeTracer = Callable[..., LangfuseTracer]


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    matches = [span for span in spans if span.name == name]
    assert len(matches) == 1, f"{len(matches)} spans named {name!r}"
    return matches[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_id == parent.span_id]


def json_attr(span: ReceivedSpan, key: str) -> Any:
    return json.loads(span.attributes[key])


async def test_batch_run_arrives_as_one_nested_trace(
    receiver: OtlpReceiver, make_tracer: MakeTracer
) -> None:
    tracer = make_tracer(receiver.url)
    assert isinstance(tracer, Tracer)
    run_id = f"run-{uuid.uuid4().hex}"

    await drive_batch(tracer, run_id=run_id, items=ITEMS, failing={7}, threaded={3, 11})

    spans = receiver.wait_for_spans(SPANS_PER_RUN)
    assert len(spans) == SPANS_PER_RUN
    trace_id = Langfuse.create_trace_id(seed=run_id)
    assert tracer.trace_id(run_id) == trace_id
    assert {span.trace_id for span in spans} == {trace_id}

    # Trace-level fields are on every span, whichever task or thread started it.
    for span in spans:
        assert span.attributes["langfuse.trace.name"] == "batch", span.name
        assert span.attributes["user.id"] == "user-42", span.name
        assert span.attributes["session.id"] == "session-9", span.name
        assert span.attributes["langfuse.trace.tags"] == ["nightly", "batch"], span.name
        assert json.loads(span.attributes["langfuse.trace.metadata.team"]) == "ml"
        assert json.loads(span.attributes["langfuse.trace.metadata.run_id"]) == run_id

    root = only(spans, "batch")
    assert root.attributes["langfuse.internal.as_root"] is True
    assert root.parent_id not in by_id(spans)
    assert json_attr(root, "langfuse.observation.input") == {
        "questions": [f"question {i}" for i in range(ITEMS)]
    }
    assert json.loads(root.attributes["langfuse.observation.metadata.status"]) == "ok"

    batch = only(spans, "llm_batch")
    assert batch.parent_id == root.span_id
    assert json.loads(batch.attributes["langfuse.observation.metadata.kind"]) == "map"
    items = children(spans, batch)
    assert sorted(span.name for span in items) == sorted(f"llm_batch[{i}]" for i in range(ITEMS))

    for item in items:
        index = int(item.name.removeprefix("llm_batch[").removesuffix("]"))
        assert json_attr(item, "langfuse.observation.input") == {"q": f"question {index}"}
        nodes = {span.name: span for span in children(spans, item)}
        assert set(nodes) == {"prompt", "llm"}
        prompt, llm = nodes["prompt"], nodes["llm"]
        assert json_attr(prompt, "langfuse.observation.input") == {"q": f"question {index}"}
        assert json.loads(llm.attributes["langfuse.observation.metadata.kind"]) == "llm"
        (generation,) = children(spans, llm)
        assert generation.type == "generation"
        assert generation.name == f"chat {generation.attributes['gen_ai.request.model']}"
        assert json_attr(generation, "langfuse.observation.input")[1] == {
            "role": "user",
            "content": f"question {index}",
        }
        assert json_attr(generation, "langfuse.observation.model.parameters") == {
            "temperature": 0.0,
            "max_tokens": 64,
        }
        assert generation.start_ns <= generation.end_ns
        if index == 7:
            continue
        assert generation.attributes["langfuse.observation.model.name"] == RESOLVED_MODEL
        usage = usage_of(index)
        assert json_attr(generation, "langfuse.observation.usage_details") == {
            "input": usage["prompt_tokens"],
            "output": usage["completion_tokens"],
            "total": usage["total_tokens"],
        }
        assert generation.attributes["langfuse.observation.output"] == f"answer {index}"
        assert "langfuse.observation.level" not in item.attributes


async def test_error_item_has_level_error_and_message(
    receiver: OtlpReceiver, make_tracer: MakeTracer
) -> None:
    tracer = make_tracer(receiver.url)

    await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", items=ITEMS, failing={7})

    spans = receiver.wait_for_spans(SPANS_PER_RUN)
    item = only(spans, "llm_batch[7]")
    (llm,) = [span for span in children(spans, item) if span.name == "llm"]
    (generation,) = children(spans, llm)
    for span in (item, llm, generation):
        assert span.attributes["langfuse.observation.level"] == "ERROR", span.name
        assert (
            span.attributes["langfuse.observation.status_message"]
            == "RuntimeError: upstream 503 for item 7"
        )
        assert span.status_code == otel_trace.StatusCode.ERROR.value
    assert generation.attributes["langfuse.observation.model.name"] == MODEL
    others = [span for span in spans if span not in (item, llm, generation)]
    assert all("langfuse.observation.level" not in span.attributes for span in others)


async def test_requests_authenticate_and_never_carry_the_secret(
    receiver: OtlpReceiver, make_tracer: MakeTracer, secret_key: str
) -> None:
    tracer = make_tracer(receiver.url)

    await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", items=ITEMS)

    receiver.wait_for_spans(SPANS_PER_RUN)
    assert receiver.requests
    expected = "Basic " + base64.b64encode(f"{tracer.public_key}:{secret_key}".encode()).decode()
    secret = secret_key.encode()
    for request in receiver.requests:
        assert request.path == "/api/public/otel/v1/traces"
        assert request.headers["content-type"] == "application/x-protobuf"
        assert request.headers["authorization"] == expected
        assert request.headers["content-encoding"] == "gzip"
        assert secret not in request.body
        assert secret not in request.raw_body
        other_headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert secret_key not in json.dumps(other_headers)


async def test_concurrent_runs_keep_their_own_trace_fields(
    receiver: OtlpReceiver, make_tracer: MakeTracer
) -> None:
    tracer = make_tracer(receiver.url)
    runs = {f"run-{uuid.uuid4().hex}": f"user-{i}" for i in range(3)}

    await asyncio.gather(
        *(
            drive_batch(tracer, run_id=run_id, items=5, failing=(), user_id=user)
            for run_id, user in runs.items()
        )
    )

    spans = receiver.wait_for_spans(3 * (2 + 5 * 4))
    assert len(spans) == 3 * (2 + 5 * 4)
    ids = by_id(spans)
    for run_id, user in runs.items():
        trace_id = Langfuse.create_trace_id(seed=run_id)
        mine = [span for span in spans if span.trace_id == trace_id]
        assert len(mine) == 2 + 5 * 4
        assert {span.attributes["user.id"] for span in mine} == {user}
        for span in mine:
            if span.name != "batch":
                assert ids[span.parent_id or ""].trace_id == trace_id


async def test_unserializable_and_huge_values_are_made_safe(
    receiver: OtlpReceiver, make_tracer: MakeTracer
) -> None:
    tracer = make_tracer(receiver.url, max_field_chars=1_000)

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    root = start_run(tracer, "odd", run_id=f"run-{uuid.uuid4().hex}", input={"obj": Opaque()})
    node = root.child("big", kind="node", input="x" * 50_000)
    node.end(output={"set": {1}, "bytes": b"\x00" * 10, "nan": float("nan")})
    root.end(output=None, metadata={"huge": "y" * 5_000})
    await tracer.flush(5.0)

    spans = receiver.wait_for_spans(2)
    root_span, node_span = only(spans, "odd"), only(spans, "big")
    assert json_attr(root_span, "langfuse.observation.input") == {"obj": "<Opaque thing>"}
    big_input = node_span.attributes["langfuse.observation.input"]
    assert len(big_input) < 1_100
    assert big_input.endswith("[truncated 50000 chars]")
    assert json_attr(node_span, "langfuse.observation.output") == {
        "set": [1],
        "bytes": "<10 bytes>",
        "nan": "nan",
    }
    assert "langfuse.trace.metadata.huge" not in root_span.attributes
    assert len(json.loads(root_span.attributes["langfuse.observation.metadata.huge"])) < 1_100


async def test_spans_from_worker_threads(receiver: OtlpReceiver, make_tracer: MakeTracer) -> None:
    tracer = make_tracer(receiver.url)
    root = start_run(tracer, "threads", run_id=f"run-{uuid.uuid4().hex}", user_id="u-t")

    def work(index: int) -> None:
        span = root.child(f"node{index}", kind="node")
        span.end(output=index)

    await asyncio.gather(*(asyncio.to_thread(work, i) for i in range(8)))
    root.end()
    await tracer.flush(5.0)

    spans = receiver.wait_for_spans(9)
    assert len(spans) == 9
    root_span = only(spans, "threads")
    for span in spans:
        assert span.attributes["user.id"] == "u-t"
        if span is not root_span:
            assert span.parent_id == root_span.span_id


def tracing_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("hush.observability")
    ]


async def test_receiver_down_is_one_warning_and_later_exports_give_up_at_once(
    make_tracer: MakeTracer, caplog: pytest.LogCaptureFixture
) -> None:
    url = closed_port_url()
    tracer = make_tracer(url)
    caplog.set_level(logging.DEBUG, logger="hush")

    with anyio.fail_after(5):
        for _ in range(3):
            await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", flush_timeout=1.0)

    (warning,) = tracing_warnings(caplog)
    assert f"Langfuse export to {url}" in warning and "cannot connect" in warning
    # The first batch found the port refused; every later one gave up without a request.
    assert tracer.health.attempts == 1
    assert tracer.health.dropped >= SPANS_PER_RUN


async def test_hanging_receiver_costs_one_flush_timeout_and_one_warning(
    hanging_server: HangingServer, make_tracer: MakeTracer, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = make_tracer(hanging_server.url, timeout=30)
    caplog.set_level(logging.WARNING, logger="hush.observability")

    with anyio.fail_after(10):
        await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", flush_timeout=1.0)
        assert tracer.health.down
        # A second run while the first export still hangs: its flush does not wait at all.
        started = time.monotonic()
        await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", flush_timeout=5.0)
        assert time.monotonic() - started < 2.5

    (warning,) = tracing_warnings(caplog)
    assert "failed (no answer within" in warning
    assert tracer.health.attempts == 1 and hanging_server.accepted == 1


async def test_an_export_warning_names_the_status_but_never_a_key(
    receiver: OtlpReceiver,
    make_tracer: MakeTracer,
    secret_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.fail_with = 401
    public_key = f"pk-lf-test-{uuid.uuid4().hex}"
    tracer = make_tracer(receiver.url, public_key=public_key)
    caplog.set_level(logging.DEBUG)

    await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", flush_timeout=5.0)

    (warning,) = tracing_warnings(caplog)
    assert "HTTP 401" in warning and "bad credentials" in warning
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    assert token in receiver.requests[0].headers["authorization"]
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert secret_key not in logged and token not in logged


async def test_a_backend_that_answers_again_gets_the_spans(
    receiver: OtlpReceiver, make_tracer: MakeTracer, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_with = 503
    tracer = make_tracer(receiver.url, timeout=0.1)
    tracer.health.retry_after = 0.0
    caplog.set_level(logging.INFO, logger="hush.observability")
    await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", flush_timeout=5.0)
    assert tracer.health.down and receiver.spans == []

    receiver.fail_with = None
    await drive_batch(tracer, run_id=f"run-{uuid.uuid4().hex}", flush_timeout=5.0)

    assert not tracer.health.down
    assert len(receiver.wait_for_spans(SPANS_PER_RUN)) == SPANS_PER_RUN
    assert len(tracing_warnings(caplog)) == 1
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_tracer_failures_are_swallowed(
    receiver: OtlpReceiver, make_tracer: MakeTracer, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = make_tracer(receiver.url)
    root = start_run(tracer, "broken", run_id=f"run-{uuid.uuid4().hex}")

    class Exploding:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __str__(self) -> str:
            raise RuntimeError("no str")

    node = root.child("node", kind="node", input=Exploding())
    node.end(output=Exploding(), error=ValueError("bad"))
    generation = node.generation("llm", model="m", input=Exploding(), model_parameters={"x": {1}})
    bad_usage: Any = {"prompt_tokens": "many"}
    generation.end(usage=bad_usage)
    root.end()
    await tracer.flush(5.0)

    spans = receiver.wait_for_spans(3)
    assert {span.name for span in spans} == {"broken", "node", "chat m"}
    assert (
        "unrepresentable Exploding" in only(spans, "node").attributes["langfuse.observation.input"]
    )


def test_no_global_tracer_provider_is_installed(
    receiver: OtlpReceiver, make_tracer: MakeTracer
) -> None:
    before = otel_trace.get_tracer_provider()
    make_tracer(receiver.url)
    assert otel_trace.get_tracer_provider() is before
    assert type(before).__name__ == "ProxyTracerProvider"


def test_queue_size_reaches_the_sdk_and_the_environment_is_restored(
    receiver: OtlpReceiver, make_tracer: MakeTracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_BSP_MAX_QUEUE_SIZE", raising=False)
    # OpenTelemetry rejects an export batch larger than the queue: proof the size got there.
    with pytest.raises(ValueError, match="max_export_batch_size"):
        make_tracer(receiver.url, max_queue_size=8, flush_at=16)
    assert "OTEL_BSP_MAX_QUEUE_SIZE" not in os.environ
    make_tracer(receiver.url, max_queue_size=16, flush_at=16)

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    with pytest.raises(ValueError, match="max_export_batch_size"):
        make_tracer(receiver.url, flush_at=16)
    assert os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] == "4"
