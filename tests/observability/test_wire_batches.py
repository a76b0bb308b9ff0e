"""Spans of a private provider go from events to OTLP bytes and to the backend in batches,
with the settings of the processor they skip (:mod:`hush.observability.wire_batches`)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import graphs
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind
from otlp_receiver import HangingServer, OtlpReceiver, decode_spans

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.observability import LangfuseTracer, OTLPTracer
from hush.observability.exporter import OTLPHttpExporter
from hush.observability.health import BackendHealth
from hush.observability.otlp_wire import span_fields
from hush.observability.wire_batches import WireBatches

TABLE = [list(range(row * 5, row * 5 + 5)) for row in range(3)]
SPANS = 1 + 1 + 3 * (1 + 1 + 5 * 2)
"""The run, the rows map, and per row its item, its cells map and two spans per cell."""


@pytest.fixture
def on_end_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the spans a ``BatchSpanProcessor`` was handed."""
    names: list[str] = []
    on_end = BatchSpanProcessor.on_end

    def counted(self: BatchSpanProcessor, span: Any) -> None:
        names.append(span.name)
        on_end(self, span)

    monkeypatch.setattr(BatchSpanProcessor, "on_end", counted)
    return names


async def test_spans_skip_the_processor_and_reach_the_backend(
    receiver: OtlpReceiver, on_end_calls: list[str], quiet_map_errors: None
) -> None:
    tracer = OTLPTracer(receiver.url)
    await graphs.nested_map(bad=7).run({"rows": TABLE}, tracer=tracer, run_id="wire-direct")
    tracer.close()

    spans = receiver.wait_for_spans(SPANS)
    assert len(spans) == SPANS and on_end_calls == []
    bad = next(s for s in spans if s.name == "work" and s.status_code == 2)
    assert bad.events[0][0] == "exception"
    assert bad.events[0][1]["exception.type"] == "ValueError"


async def test_a_processor_added_by_someone_else_gets_the_spans_started_after(
    receiver: OtlpReceiver, on_end_calls: list[str], quiet_map_errors: None
) -> None:
    tracer = OTLPTracer(receiver.url)
    await graphs.nested_map().run({"rows": TABLE}, tracer=tracer)
    await tracer.flush()
    theirs = InMemorySpanExporter()
    tracer.provider.add_span_processor(SimpleSpanProcessor(theirs))
    await graphs.nested_map().run({"rows": TABLE}, tracer=tracer)
    tracer.close()

    assert len(receiver.wait_for_spans(2 * SPANS)) == 2 * SPANS
    assert len(theirs.get_finished_spans()) == SPANS
    assert len(on_end_calls) == SPANS


def gated_graph(gate: threading.Event) -> Hush:
    """``first``, then ``second`` which waits (at most 10 s) for ``gate``."""

    async def first() -> dict[str, int]:
        return {"x": 1}

    async def second(x: int) -> dict[str, bool]:
        return {"opened": await asyncio.to_thread(gate.wait, 10.0)}

    with GraphNode(name="gated") as g:
        a = CodeNode(name="first", code_fn=first)
        b = CodeNode(name="second", code_fn=second, inputs={"x": a["x"]})
        b["opened"] >> PARENT["opened"]
        START >> a >> b >> END
    return Hush(g)


async def test_a_span_reaches_the_backend_within_the_flush_interval_while_the_run_goes_on(
    receiver: OtlpReceiver,
) -> None:
    gate = threading.Event()
    tracer = OTLPTracer(receiver.url, flush_interval=0.2)
    run = asyncio.create_task(gated_graph(gate).run({}, tracer=tracer))
    started = time.monotonic()
    seen = await asyncio.to_thread(receiver.wait_for_spans, 1, 5.0)
    waited = time.monotonic() - started
    gate.set()
    result = await run
    tracer.close()

    assert [s.name for s in seen] == ["first"], "the span waited for the run's end"
    assert result["opened"] is True
    assert waited < 5.0


async def test_requests_carry_at_most_flush_at_spans(
    receiver: OtlpReceiver, make_tracer: Callable[..., LangfuseTracer], quiet_map_errors: None
) -> None:
    tracer = make_tracer(receiver.url, flush_at=4, max_queue_size=64)
    await graphs.nested_map().run({"rows": TABLE}, tracer=tracer)
    tracer.close()

    assert len(receiver.wait_for_spans(SPANS)) == SPANS
    sizes = [len(decode_spans(request.body)) for request in receiver.requests]
    assert sum(sizes) == SPANS and max(sizes) == 4 and len(sizes) >= SPANS // 4


def encoded(n: int) -> bytes:
    return span_fields((1, n + 1, None), f"s{n}", SpanKind.INTERNAL, (1, 2), {"n": n})


def small_wire(exporter: OTLPHttpExporter) -> WireBatches:
    """Batches of 2 spans sent at once, at most 4 waiting for the sender."""
    return WireBatches(
        exporter,
        Resource.create({}),
        InstrumentationScope("test"),
        batch_size=2,
        interval=0.0,
        max_queue=4,
        name="test-wire",
    )


def test_spans_beyond_the_queue_of_a_stuck_backend_are_dropped_and_counted(
    hanging_server: HangingServer, caplog: pytest.LogCaptureFixture
) -> None:
    health = BackendHealth("OTLP", hanging_server.url, logging.getLogger("test"))
    exporter = OTLPHttpExporter(f"{hanging_server.url}/v1/traces", None, 30.0, health)
    wire = small_wire(exporter)
    caplog.set_level(logging.WARNING, logger="hush.observability.wire_batches")
    try:
        for n in range(2):
            wire.add(encoded(n))
        deadline = time.monotonic() + 5.0
        while hanging_server.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hanging_server.accepted == 1, "the first batch was never posted"
        for n in range(2, 10):
            wire.add(encoded(n))
    finally:
        exporter.shutdown()
        hanging_server.close()
        wire.close(10.0)

    assert wire.dropped == 4 and health.dropped >= 4
    warnings = [r for r in caplog.records if "max_queue_size" in r.getMessage()]
    assert len(warnings) == 1


FORKING = textwrap.dedent(
    """
    import asyncio, os, sys, threading
    from hush.core import END, START, CodeNode, GraphNode, Hush
    from hush.observability import OTLPTracer

    tracer = OTLPTracer(sys.argv[1], flush_interval=30.0)

    async def step() -> dict:
        return {"z": 1}

    def child() -> None:
        with GraphNode(name="kid") as k:
            START >> CodeNode(name="step", code_fn=step) >> END
        asyncio.run(Hush(k).run({}, tracer=tracer, run_id="child"))
        tracer.close(10)

    async def a() -> dict:
        return {"x": 1}

    async def b(x: int) -> dict:
        await asyncio.sleep(0.3)  # a's span is handed over: the sender lingers with it
        return {"y": 1}

    async def c(y: int) -> dict:
        await asyncio.sleep(0.3)  # b's span is handed over: it waits in the sender's queue
        pid = os.fork()
        if pid == 0:
            runner = threading.Thread(target=child)
            runner.start()
            runner.join()
            os._exit(0)
        os.waitpid(pid, 0)
        return {"z": 1}

    with GraphNode(name="parent") as g:
        na = CodeNode(name="a", code_fn=a)
        nb = CodeNode(name="b", code_fn=b, inputs={"x": na["x"]})
        nc = CodeNode(name="c", code_fn=c, inputs={"y": nb["y"]})
        START >> na >> nb >> nc >> END
    asyncio.run(Hush(g).run({}, tracer=tracer, run_id="parent"))
    tracer.close(10)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_its_own_spans_and_not_its_parents(receiver: OtlpReceiver) -> None:
    """The child is forked while the parent's spans wait for the sender (30 s interval), one
    in its queue: the parent sends them, the child its own spans only, each once."""
    done = subprocess.run(
        [sys.executable, "-c", FORKING, receiver.url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for_spans(6)
    time.sleep(0.5)  # a duplicate would be on its way: give it the time to arrive
    spans = list(receiver.spans)
    named = sorted((s.attributes["hush.run_id"], s.name) for s in spans)
    assert named == [
        ("child", "kid"),
        ("child", "step"),
        ("parent", "a"),
        ("parent", "b"),
        ("parent", "c"),
        ("parent", "parent"),
    ]


class SlowReceiver(OtlpReceiver):
    """Answers every request ``delay`` seconds late."""

    delay = 0.5

    def _receive(self, request: Any) -> None:
        time.sleep(self.delay)
        super()._receive(request)


async def test_the_run_end_waits_for_its_spans_as_long_as_the_backend_takes() -> None:
    slow = SlowReceiver().start()

    async def step() -> dict[str, int]:
        return {"x": 1}

    with GraphNode(name="g") as g:
        START >> CodeNode(name="step", code_fn=step) >> END
    tracer = OTLPTracer(slow.url, flush_timeout=10.0)
    try:
        await Hush(g).run({}, tracer=tracer)
        assert len(slow.spans) == 2, "the run returned before its spans were posted"
    finally:
        tracer.close(5)
        slow.stop()


class GatedExporter(OTLPHttpExporter):
    """Posts nothing: each send waits for ``gate``, then counts its spans."""

    def __init__(self) -> None:
        health = BackendHealth("OTLP", "gated", logging.getLogger("test"))
        super().__init__("http://gated.invalid/v1/traces", None, 1.0, health)
        self.gate = threading.Event()
        self.sent = 0

    def send(self, body: bytes, spans: int) -> bool:
        self.gate.wait(10.0)
        self.sent += spans
        return True


def test_each_backlog_of_a_slow_backend_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    exporter = GatedExporter()
    wire = small_wire(exporter)
    caplog.set_level(logging.WARNING, logger="hush.observability.wire_batches")

    def backlog(first: int) -> None:
        exporter.gate.clear()
        for n in range(first, first + 2):  # taken by the sender, which waits at the gate
            wire.add(encoded(n))
        deadline = time.monotonic() + 5.0
        while wire._handed != wire._taken and time.monotonic() < deadline:
            time.sleep(0.01)
        for n in range(first + 2, first + 12):  # 4 wait for the sender, 6 are dropped
            wire.add(encoded(n))
        exporter.gate.set()
        assert wire.flush(5.0)

    try:
        backlog(0)
        assert wire.dropped == 6 and exporter.sent == 6
        backlog(100)
        assert wire.dropped == 12 and exporter.sent == 12
    finally:
        exporter.gate.set()
        wire.close(5.0)
    warnings = [r for r in caplog.records if "max_queue_size" in r.getMessage()]
    assert len(warnings) == 2
