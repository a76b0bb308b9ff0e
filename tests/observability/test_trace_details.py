"""What traces show of tool calls, cached tokens, long values and sampled maps, decoded from
the OTLP requests the loopback receiver got."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import graphs
import pytest
from cached_usage_server import CachedUsageServer
from otlp_receiver import OtlpReceiver, ReceivedSpan

from hush.core import END, PARENT, START, GraphNode, Hush
from hush.core.nodes import CodeNode
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.observability import LangfuseTracer, OTLPTracer
from hush.providers import LLMNode, get_registry
from hush.testing import MockLLMServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def llm_graph(resource: str, **options: Any) -> Hush:
    with GraphNode(name="ask") as g:
        llm = LLMNode(
            name="answer", resource_key=resource, inputs={"messages": PARENT["messages"]}, **options
        )
        llm["content"] >> PARENT["content"]
        llm["usage"] >> PARENT["usage"]
        llm["cost"] >> PARENT["cost"]
        START >> llm >> END
    return Hush(g)


def generation(spans: list[ReceivedSpan]) -> dict[str, Any]:
    (found,) = [s for s in spans if s.attributes.get("hush.kind") == "generation"]
    return found.attributes


async def test_a_tool_call_reply_is_the_output_and_the_tools_are_part_of_the_input(
    llm_resource: MockLLMServer,
    receiver: OtlpReceiver,
    make_tracer: Callable[..., LangfuseTracer],
) -> None:
    engine = llm_graph("traced", tools=[WEATHER], tool_choice="auto")
    messages = [{"role": "user", "content": "Weather in Paris? [[tool:get_weather]]"}]
    await engine.run({"messages": messages}, tracer=OTLPTracer(receiver.url), run_id="tool-oi")
    phoenix = generation(receiver.wait_for_spans(3))
    receiver.spans.clear()
    await engine.run({"messages": messages}, tracer=make_tracer(receiver.url), run_id="tool-lf")
    langfuse = generation(receiver.wait_for_spans(3))

    call = "llm.output_messages.0.message.tool_calls.0.tool_call.function"
    assert phoenix[f"{call}.name"] == "get_weather"
    assert json.loads(phoenix[f"{call}.arguments"]).keys() == {"city"}
    assert json.loads(phoenix["llm.tools.0.tool.json_schema"]) == WEATHER
    assert "tools" not in json.loads(phoenix["llm.invocation_parameters"])
    output = json.loads(langfuse["langfuse.observation.output"])
    assert output["tool_calls"][0]["function"]["name"] == "get_weather"
    assert output["role"] == "assistant" and output["content"] is None
    given = json.loads(langfuse["langfuse.observation.input"])
    assert given == {"messages": messages, "tools": [WEATHER]}
    parameters = json.loads(langfuse["langfuse.observation.model.parameters"])
    assert parameters["tool_choice"] == "auto"


@pytest.fixture
async def cached_resource() -> Any:
    async with CachedUsageServer() as server:
        get_registry().register(
            "llm:cached",
            {
                "base_url": server.base_url,
                "api_key": "sk-cached",
                "model": "gpt-4o-mini",
                "input_cost_per_mtok": 2.0,
                "cached_input_cost_per_mtok": 0.5,
                "output_cost_per_mtok": 8.0,
            },
        )
        yield server
        get_registry().unregister("llm:cached")


async def test_cached_and_reasoning_tokens_reach_usage_spans_and_cost(
    cached_resource: CachedUsageServer,
    receiver: OtlpReceiver,
    make_tracer: Callable[..., LangfuseTracer],
) -> None:
    engine = llm_graph("cached")
    messages = [{"role": "user", "content": "a long shared prefix"}]
    result = await engine.run(
        {"messages": messages}, tracer=OTLPTracer(receiver.url), run_id="cached-oi"
    )
    phoenix = generation(receiver.wait_for_spans(3))
    receiver.spans.clear()
    await engine.run({"messages": messages}, tracer=make_tracer(receiver.url), run_id="cached-lf")
    langfuse = generation(receiver.wait_for_spans(3))

    assert result["usage"]["cached_tokens"] == 800
    assert result["usage"]["reasoning_tokens"] == 20
    cost = (200 * 2.0 + 800 * 0.5 + 50 * 8.0) / 1e6  # cached prompt tokens at their own price
    assert result["cost"] == pytest.approx(cost)
    assert phoenix["llm.token_count.prompt"] == 1_000
    assert phoenix["llm.token_count.prompt_details.cache_read"] == 800
    assert phoenix["llm.token_count.completion_details.reasoning"] == 20
    assert phoenix["llm.cost.total"] == pytest.approx(cost)
    usage = json.loads(langfuse["langfuse.observation.usage_details"])
    assert usage == {
        "input": 200,
        "input_cached_tokens": 800,
        "output": 30,
        "output_reasoning_tokens": 20,
        "total": 1_050,
    }
    assert json.loads(langfuse["langfuse.observation.cost_details"]) == {
        "total": pytest.approx(cost)
    }


def trivial_graph() -> Hush:
    async def work(item: int) -> dict[str, int]:
        return {"result": item}

    with GraphNode(name="short") as g:
        n = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
        n["result"] >> PARENT["result"]
        START >> n >> END
    return Hush(g)


async def test_values_over_langfuses_limit_are_cut_with_a_marker_and_one_warning(
    receiver: OtlpReceiver,
    make_tracer: Callable[..., LangfuseTracer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="hush")
    tracer = make_tracer(receiver.url, max_field_chars=1_000)
    await trivial_graph().run(
        {"item": "z" * 5_000},
        tracer=tracer,
        run_id="long-values",
        user_id="u" * 250,
        tags=["t" * 300, "short"],
        metadata={"note": "n" * 500, "ok": "fine"},
    )
    spans = receiver.wait_for_spans(2)

    for span in spans:
        attributes = span.attributes
        tags = attributes["langfuse.trace.tags"]
        assert tags[1] == "short" and len(tags[0]) == 200
        assert tags[0].startswith("ttt") and tags[0].endswith("[truncated 300 chars]")
        assert len(attributes["user.id"]) == 200
        note = attributes["langfuse.trace.metadata.note"]
        assert len(note) == 200 and note.endswith("[truncated 502 chars]")
        assert attributes["langfuse.trace.metadata.ok"] == '"fine"'
        given = attributes["langfuse.observation.input"]
        assert "[truncated" in given and len(given) < 1_100
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "truncated" in warnings[0]


FAILING = {13, 57, 99, 150, 188}


def sampled_map() -> Hush:
    async def work(item: int) -> dict[str, int]:
        if item in FAILING:
            raise ValueError(f"item {item} is bad")
        return {"result": item}

    with GraphNode(name="sampled") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=20) as m:
            n = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
            n["result"] >> PARENT["result"]
            START >> n >> END
        m["result"] >> PARENT["results"]
        START >> m >> END
    return Hush(g)


@pytest.fixture
def quiet_map_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.CRITICAL, logger="hush.core")
    yield


async def test_sampling_keeps_a_share_of_items_and_every_failed_one_deterministically(
    receiver: OtlpReceiver, quiet_map_errors: None
) -> None:
    engine = sampled_map()
    kept: list[set[str]] = []
    for _ in range(2):
        receiver.spans.clear()
        tracer = OTLPTracer(receiver.url, sample=0.1)
        await engine.run({"items": list(range(200))}, tracer=tracer, run_id="sampled-run")
        tracer.close()
        spans = receiver.wait_for_spans(10)
        kinds = [s.attributes["hush.kind"] for s in spans]
        assert kinds.count("run") == 1 and kinds.count("map") == 1
        items = {s.name for s in spans if s.attributes["hush.kind"] == "item"}
        nodes = [s for s in spans if s.attributes["hush.kind"] == "node"]
        assert len(nodes) == len(items), "an item kept is kept with its nodes"
        ids = {s.span_id for s in spans}
        assert all(s.parent_id in ids for s in spans if s.parent_id), "no orphaned span"
        kept.append(items)

    assert kept[0] == kept[1], "the same run id keeps the same items"
    assert {f"m[{i}]" for i in FAILING} <= kept[0]
    assert 10 <= len(kept[0] - {f"m[{i}]" for i in FAILING}) <= 32  # 10% of 195, hashed


async def test_sample_must_be_a_share(receiver: OtlpReceiver) -> None:
    for bad in (1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="sample must be a number between 0 and 1"):
            OTLPTracer(receiver.url, sample=bad)  # type: ignore[arg-type]


def nested_map() -> Hush:
    return graphs.nested_map()


async def test_a_failure_in_a_nested_item_keeps_the_items_around_it(
    receiver: OtlpReceiver, quiet_map_errors: None
) -> None:
    table = [list(range(row * 10, row * 10 + 10)) for row in range(10)]
    tracer = OTLPTracer(receiver.url, sample=0.0)
    await nested_map().run({"rows": table}, tracer=tracer, run_id="nested-sampled")
    tracer.close()
    spans = receiver.wait_for_spans(10)

    items = sorted(s.name for s in spans if s.attributes["hush.kind"] == "item")
    assert items == ["cells[7]", "rows[7]"], "only the failed cell and the row holding it"
    ids = {s.span_id for s in spans}
    assert all(s.parent_id in ids for s in spans if s.parent_id), "no orphaned span"
    maps = [s for s in spans if s.attributes["hush.kind"] == "map"]
    assert {s.name for s in maps} == {"rows", "cells"}
