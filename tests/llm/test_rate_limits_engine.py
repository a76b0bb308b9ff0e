"""Per-resource limits through the engine: shared across maps and runs, never stalling others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, PromptNode
from hush.testing import MockLLMServer


def two_maps(resource: str) -> GraphNode:
    with GraphNode(name="two-maps") as g:
        maps = []
        for name in ("left", "right"):
            with MapNode(name=name, inputs={"q": Each(PARENT["queries"])}, max_concurrency=50) as m:
                p = PromptNode(name="p", inputs={"prompt": f"{name} {{q}}", "q": PARENT["q"]})
                llm = LLMNode(name="llm", resource_key=resource, inputs={"messages": p["messages"]})
                llm["content"] >> PARENT["a"]
                START >> p >> llm >> END
            m["a"] >> PARENT[f"{name}_answers"]
            maps.append(m)
        START >> maps >> END
    return g


async def test_in_flight_limit_is_shared_by_two_maps_and_two_concurrent_runs(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("shared", server.base_url, max_in_flight=4)
    server.configure(latency=0.02)
    engine = Hush(two_maps("shared"))
    queries = [f"q{i}" for i in range(20)]
    r1, r2 = await asyncio.gather(
        engine.run({"queries": queries}), engine.run({"queries": queries})
    )
    assert r2["right_answers"] == [f"[gpt-4o-mini] reply to: right q{i}" for i in range(20)]
    assert server.peak_in_flight == 4
    assert len(server.requests) == 80
    assert r1["left_answers"] == [f"[gpt-4o-mini] reply to: left q{i}" for i in range(20)]
    stats = r1["$state"].llm["llm:shared"]
    assert stats["max_in_flight"] == stats["max_concurrency"] == 4
    assert stats["sent"] == r2["$state"].llm["llm:shared"]["sent"] == 40


async def test_limited_resource_never_stalls_code_nodes_or_other_resources(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    register("slow", server.base_url, rpm=60, max_in_flight=1)
    register("fast", server.base_url)
    code_done = anyio.Event()
    fast_done = anyio.Event()

    async def code() -> dict[str, int]:
        code_done.set()
        return {}

    with GraphNode(name="g") as g:
        with MapNode(
            name="throttled", inputs={"q": Each(PARENT["queries"])}, max_concurrency=10
        ) as m:
            llm = LLMNode(
                name="llm",
                resource_key="slow",
                inputs={"messages": [{"role": "user", "content": "x"}]},
            )
            START >> llm >> END
        c = CodeNode(name="code", code_fn=code, inputs={})
        f = LLMNode(
            name="fast_llm",
            resource_key="fast",
            inputs={"messages": [{"role": "user", "content": "fast"}]},
        )
        marker = CodeNode(
            name="marker",
            code_fn=lambda content: fast_done.set() or {},
            inputs={"content": f["content"]},
        )
        START >> [m, c, f]
        f >> marker
        [m, c, marker] >> END

    async def watch() -> None:
        with anyio.fail_after(5):
            await code_done.wait()
            await fast_done.wait()
        slow_sent = sum(
            1 for r in server.requests if r.body and r.body["messages"][-1]["content"] == "x"
        )
        assert slow_sent <= 2, (
            "the fast resource and the code node finished while the slow one was still queued"
        )
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await Hush(g).run({"queries": list(range(10))})
    assert code_done.is_set() and fast_done.is_set()
