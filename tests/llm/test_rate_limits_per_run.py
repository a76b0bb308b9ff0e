"""Each run counts its own requests, over real HTTP to the local server, even when runs
share a resource at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, PromptNode
from hush.providers.run_counters import RunCounters, counting, llm_report, resource_status
from hush.testing import MockLLMServer


def asks(resource: str) -> GraphNode:
    with GraphNode(name="asks") as g:
        with MapNode(name="each", inputs={"q": Each(PARENT["queries"])}, max_concurrency=8) as m:
            p = PromptNode(name="p", inputs={"prompt": "{q}", "q": PARENT["q"]})
            llm = LLMNode(name="llm", resource_key=resource, inputs={"messages": p["messages"]})
            llm["content"] >> PARENT["a"]
            START >> p >> llm >> END
        m["a"] >> PARENT["answers"]
        START >> m >> END
    return g


async def counted_run(engine: Hush, queries: list[str]) -> tuple[dict[str, Any], RunCounters]:
    with counting() as counters:
        result = await engine.run({"queries": queries})
    return result, counters


async def test_two_concurrent_runs_each_see_only_their_own_requests(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("together", server.base_url, max_in_flight=3)
    server.configure(latency=0.01)
    engine = Hush(asks("together"))
    (small, few), (large, many) = await asyncio.gather(
        counted_run(engine, [f"s{i}" for i in range(5)]),
        counted_run(engine, [f"l{i}" for i in range(12)]),
    )
    assert len(small["answers"]) == 5 and len(large["answers"]) == 12
    assert len(server.requests) == 17
    assert few.get("llm:together").sent == 5 and few.get("llm:together").ok == 5
    assert many.get("llm:together").sent == 12 and many.get("llm:together").ok == 12
    assert few.get("llm:together").tokens_used > 0
    report = llm_report(few)
    assert report["llm:together"]["sent"] == 5
    assert report["llm:together"]["max_in_flight"] == 3
    assert report["llm:together"]["max_concurrency"] == 3
    assert report["llm:together"]["in_flight"] == 0


async def test_a_run_started_by_a_node_counts_in_the_enclosing_run_too(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("nested", server.base_url)
    inner = Hush(asks("nested"))

    async def start_inner() -> dict[str, int]:
        with counting() as counters:
            await inner.run({"queries": ["a", "b", "c"]})
        return {"inner_sent": counters.get("llm:nested").sent}

    with GraphNode(name="outer") as g:
        llm = LLMNode(
            name="llm",
            resource_key="nested",
            inputs={"messages": [{"role": "user", "content": "outer"}]},
        )
        code = CodeNode(name="start_inner", code_fn=start_inner, inputs={})
        code["inner_sent"] >> PARENT["inner_sent"]
        START >> [llm, code] >> END
    with counting() as outer:
        result = await Hush(g).run({})
    assert result["inner_sent"] == 3
    assert outer.get("llm:nested").sent == 4


async def test_resource_status_gives_the_current_limits_of_known_limiters(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("status", server.base_url, rpm=1200, max_in_flight=2)
    await Hush(asks("status")).run({"queries": ["x"]})
    status = resource_status(["llm:status", "llm:never-used"])
    assert list(status) == ["llm:status"]
    assert status["llm:status"]["rpm_limit"] == 1200
    assert status["llm:status"]["max_in_flight"] == 2
    assert "sent" not in status["llm:status"]
