"""The engine's runs, traced through the real langfuse SDK to a loopback receiver."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from graphs import QUERIES, batch_graph
from otlp_receiver import HangingServer, OtlpReceiver, closed_port_url

from hush import Progress
from hush.core import Hush
from hush.core.progress import MapProgress
from hush.observability import LocalTracer, read_trace
from hush.observability.langfuse import LangfuseTracer
from hush.testing import MockLLMServer


async def test_run_is_one_trace_nested_as_the_graph(
    llm_resource: MockLLMServer,
    receiver: OtlpReceiver,
    make_tracer: Callable[..., LangfuseTracer],
    secret_key: str,
) -> None:
    tracer = make_tracer(receiver.url)
    result = await Hush(batch_graph()).run(
        {"queries": QUERIES},
        tracer=tracer,
        user_id="u-7",
        session_id="s-9",
        tags=["nightly"],
        metadata={"batch": "b1"},
    )
    assert result["$state"].iterations["traced-batch/llm_batch"].failed == 1
    # root + map + 20 items x (item, prompt, llm, generation) = 82
    spans = receiver.wait_for_spans(82)
    assert len(spans) == 82
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent_id not in by_id]
    assert root.name == "traced-batch"
    assert {s.trace_id for s in spans} == {root.trace_id}
    for s in spans:
        assert s.attributes.get("langfuse.trace.name") == "traced-batch"
        assert s.attributes.get("user.id") == "u-7"
        assert s.attributes.get("session.id") == "s-9"
    assert list(root.attributes["langfuse.trace.tags"]) == ["nightly"]

    map_span = next(s for s in spans if s.name == "llm_batch")
    assert map_span.parent_id == root.span_id
    items = {s.name: s for s in spans if s.parent_id == map_span.span_id}
    assert sorted(items) == sorted(f"llm_batch[{i}]" for i in range(20))
    for name, item in items.items():
        children = {s.name: s for s in spans if s.parent_id == item.span_id}
        assert set(children) == {"prompt", "llm"}
        gens = [s for s in spans if s.parent_id == children["llm"].span_id]
        assert len(gens) == 1 and gens[0].type == "generation"
        index = int(name[len("llm_batch[") : -1])
        assert f"question {index}" in str(
            children["prompt"].attributes.get("langfuse.observation.input")
        )
    gen = next(
        s
        for s in spans
        if s.type == "generation" and by_id[s.parent_id].parent_id == items["llm_batch[0]"].span_id
    )
    assert gen.attributes["langfuse.observation.model.name"] == "gpt-4o-mini"
    assert '"total"' in gen.attributes["langfuse.observation.usage_details"]

    bad_item = items["llm_batch[13]"]
    assert bad_item.attributes.get("langfuse.observation.level") == "ERROR"
    bad_llm = next(s for s in spans if s.parent_id == bad_item.span_id and s.name == "llm")
    assert bad_llm.attributes.get("langfuse.observation.level") == "ERROR"
    assert "400" in bad_llm.attributes.get("langfuse.observation.status_message", "")
    assert items["llm_batch[12]"].attributes.get("langfuse.observation.level") != "ERROR"

    raw = b"".join(r.raw_body + r.body + repr(r.headers).encode() for r in receiver.requests)
    assert secret_key.encode() not in raw
    assert b"sk-llm-secret-xyz" not in raw


@pytest.mark.parametrize("where", ["closed", "hanging"])
async def test_langfuse_down_costs_a_warning_not_a_failure(
    where: str,
    llm_resource: MockLLMServer,
    hanging_server: HangingServer,
    make_tracer: Callable[..., LangfuseTracer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The request's own timeout and the run's flush end together here: whichever comes
    # first, the outage is said once, by the one place that decides the backend is down.
    url = closed_port_url() if where == "closed" else hanging_server.url
    tracer = make_tracer(url, flush_timeout=1.0, timeout=1)
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    with anyio.fail_after(10):
        result = await Hush(batch_graph()).run(
            {"queries": QUERIES[:5]}, tracer=tracer, flush_timeout=1.0
        )
    assert result["$state"].status == "ok"
    assert len(result["answers"]) == 5
    assert time.monotonic() - start < 8
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in loud] == ["hush.observability.langfuse"], [r.msg for r in loud]
    expected = "cannot connect" if where == "closed" else "no answer within"
    assert f"export to {url} failed ({expected}" in loud[0].getMessage()
    assert tracer.health.attempts == 1


async def test_local_tracer_records_the_run_offline(
    llm_resource: MockLLMServer, tmp_path: Any
) -> None:
    path = tmp_path / "trace.jsonl"
    tracer = LocalTracer(path)
    await Hush(batch_graph()).run({"queries": QUERIES[:3]}, tracer=tracer)
    records = read_trace(path)
    names = {r["name"] for r in records}
    assert {"traced-batch", "llm_batch", "llm_batch[0]", "prompt", "llm"} <= names
    assert any(r.get("usage") for r in records)


async def test_a_cancelled_run_still_exports_its_spans(
    llm_resource: MockLLMServer,
    receiver: OtlpReceiver,
    make_tracer: Callable[..., LangfuseTracer],
) -> None:
    tracer = make_tracer(receiver.url)
    finished: list[int] = []

    def seen(maps: list[MapProgress]) -> None:
        finished.append(max((p.done for p in maps), default=0))

    run = asyncio.create_task(
        Hush(batch_graph()).run(
            {"queries": ["fine", "stuck [[hang]]"]},
            tracer=tracer,
            progress=Progress(show=False, on_update=seen),
        )
    )
    with anyio.fail_after(10):  # the fine item has ended, the stuck one waits for its answer
        while llm_resource.in_flight < 1 or not finished or finished[-1] < 1:
            await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # root, map, two items with prompt, llm and generation each
    spans = receiver.wait_for_spans(10)
    assert len(spans) == 10
    by_name: dict[str, list[Any]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    stuck_item = by_name["llm_batch[1]"][0]
    stuck_llm = next(s for s in by_name["llm"] if s.parent_id == stuck_item.span_id)
    for span in (by_name["traced-batch"][0], by_name["llm_batch"][0], stuck_item, stuck_llm):
        assert span.attributes.get("langfuse.observation.level") == "WARNING", span.name
        assert "cancelled" in span.attributes.get("langfuse.observation.status_message", "")
    fine_item = by_name["llm_batch[0]"][0]
    assert fine_item.attributes.get("langfuse.observation.level") is None
