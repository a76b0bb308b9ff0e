"""LLMNode(resource_key=[...], weights=[...]): calls spread over resources by weight."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from hush.core import END, PARENT, START, GraphDefinitionError, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, get_limiter, get_registry
from hush.providers.breaker import THRESHOLD
from hush.testing import MockLLMServer


def spread_graph(keys: list[str], concurrency: int = 4, **options: Any) -> GraphNode:
    with GraphNode(name="spread") as graph:
        with MapNode(
            name="calls",
            inputs={"q": Each(PARENT["questions"])},
            max_concurrency=concurrency,
            outputs={"model": PARENT, "resource": PARENT, "content": PARENT},
        ) as calls:
            llm = LLMNode(
                name="llm",
                resource_key=keys,
                inputs={"messages": [{"role": "user", "content": "hello"}]},
                outputs={"model": PARENT, "resource": PARENT, "content": PARENT},
                **options,
            )
            START >> llm >> END
        START >> calls >> END
    return graph


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_forty_calls_over_two_resources_reach_both_by_weight(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    a = register("pool-a", server.base_url, model="model-a")
    b = register("pool-b", server.base_url, model="model-b")
    result = await Hush(spread_graph([a, b], weights=[3, 1])).run({"questions": list(range(40))})
    assert result["$state"].errors == []
    assert Counter(result["resource"]) == {f"llm:{a}": 30, f"llm:{b}": 10}
    assert Counter(result["model"]) == {"model-a": 30, "model-b": 10}
    assert Counter(r.body["model"] for r in server.requests) == {"model-a": 30, "model-b": 10}


async def test_the_chosen_resource_is_in_the_trace(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    a = register("trace-a", server.base_url, model="model-a")
    b = register("trace-b", server.base_url, model="model-b")
    events = [
        e.llm
        async for e in Hush(spread_graph([a, b])).stream({"questions": list(range(4))})
        if e.llm
    ]
    assert Counter((c.resource, c.model) for c in events) == {
        (f"llm:{a}", "model-a"): 2,
        (f"llm:{b}", "model-b"): 2,
    }


async def test_a_failed_call_is_traced_with_the_resource_it_failed_on(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    a = register("fail-a", server.base_url, model="model-a")
    b = register("fail-b", server.base_url, model="model-b")
    with GraphNode(name="g") as graph:
        with MapNode(
            name="calls", inputs={"q": Each(PARENT["questions"])}, max_concurrency=1
        ) as calls:
            llm = LLMNode(
                name="llm",
                resource_key=[a, b],
                inputs={"messages": [{"role": "user", "content": "[[fail:400]]"}]},
            )
            START >> llm >> END
        START >> calls >> END
    events = [e.llm async for e in Hush(graph).stream({"questions": [1, 2]}) if e.llm]
    assert {(c.resource, c.model) for c in events} == {
        (f"llm:{a}", "model-a"),
        (f"llm:{b}", "model-b"),
    }
    assert all(c.error and "HTTP 400" in c.error for c in events)


async def test_a_rate_limited_resource_is_passed_over(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    async with MockLLMServer(rpm=1, rate_limit_headers="on_429") as strict:
        a = register("limited-a", strict.base_url, model="model-a", rpm=None, max_retries=0)
        b = register("limited-b", server.base_url, model="model-b")
        result = await Hush(spread_graph([a, b], concurrency=1)).run({"questions": list(range(20))})
        assert result["$state"].errors == []
        assert strict.status_counts == {200: 1, 429: 1}
    assert Counter(result["model"]) == {"model-a": 1, "model-b": 19}


async def test_an_open_circuit_resource_is_passed_over(
    server: MockLLMServer, register: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    a = register("down-a", closed_port_url(), model="model-a", max_retries=0)
    b = register("down-b", server.base_url, model="model-b")
    with caplog.at_level(logging.INFO, logger="hush.providers.client"):
        result = await Hush(spread_graph([a, b], concurrency=1)).run({"questions": list(range(30))})
    fell_back = [r for r in caplog.records if "falling back" in r.getMessage()]
    assert len(fell_back) == THRESHOLD
    assert result["$state"].errors == []
    assert Counter(result["model"]) == {"model-b": 30}
    limiter = get_limiter(f"llm:{a}", get_registry().get_llm(a))
    assert limiter.readiness() == "refused"
    assert limiter.stats().sent == THRESHOLD


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"resource_key": ["a", "b"], "weights": [1]}, "weights has 1 numbers for 2 resources"),
        ({"resource_key": ["a", "b"], "weights": [1, 0]}, "weights are positive numbers, got 0"),
        ({"resource_key": ["a", "b"], "weights": "11"}, "weights must be a list of numbers"),
        ({"resource_key": "a", "weights": [1]}, "weights need a list of resource_key"),
        ({"resource_key": ["a", "a"]}, "resource_key names a resource twice"),
        ({"resource_key": []}, "resource_key must be a non-empty string or a non-empty list"),
        ({"resource_key": ["a", ""]}, "resource_key entries are non-empty strings"),
    ],
)
def test_bad_pools_are_errors_naming_the_node(options: dict[str, Any], problem: str) -> None:
    with GraphNode(name="g"), pytest.raises(GraphDefinitionError) as info:
        LLMNode(name="llm", inputs={"messages": []}, **options)
    assert str(info.value).startswith("LLMNode 'llm': ")
    assert problem in str(info.value)
