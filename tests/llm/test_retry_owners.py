"""One retry owner per layer: the client retries requests, the lifecycle retries nodes.

Over real HTTP to the local server: a node's retry policy never repeats an LLM call whose
transport retries ran out (neither on the node nor on a sub-graph around it), and it does
retry the node for an error the client does not retry when the user's policy names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from hush.core import END, PARENT, START, GraphNode, Hush
from hush.core.policies import RetryPolicy
from hush.providers import LLMCallError, LLMNode
from hush.testing import MockLLMServer

NO_WAIT = {"initial": 0, "jitter": 0}


def ask(resource: str, question: str, **options: Any) -> GraphNode:
    with GraphNode(name="g") as g:
        llm = LLMNode(
            name="llm",
            resource_key=resource,
            inputs={"messages": [{"role": "user", "content": question}]},
            outputs={"content": PARENT, "error": PARENT},
            **options,
        )
        START >> llm >> END
    return g


async def test_a_node_retry_never_repeats_a_call_whose_transport_retries_ran_out(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("busy", server.base_url, max_retries=5)
    always = RetryPolicy(attempts=3, retry_if=lambda e: True, **NO_WAIT)
    result = await Hush(ask(name, "busy [[fail:503]]", retry=always)).run()
    assert server.status_counts == {503: 3}
    error = result["error"]
    assert "HTTP 503" in error.message and "(after 3 attempts)" in error.message
    assert not error.retryable
    assert result["$state"].nodes["g/llm"].attempts == 3


async def test_a_sub_graph_retry_never_repeats_a_call_whose_transport_retries_ran_out(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("busy-inside", server.base_url, max_retries=1)
    with GraphNode(name="outer") as outer:
        with GraphNode(
            name="inner", retry={"attempts": 3, **NO_WAIT}, outputs={"error": PARENT}
        ) as inner:
            llm = LLMNode(
                name="llm",
                resource_key=name,
                inputs={"messages": [{"role": "user", "content": "busy [[fail:503]]"}]},
                outputs={"error": PARENT},
            )
            START >> llm >> END
        START >> inner >> END
    await Hush(outer).run()
    assert server.status_counts == {503: 2}


async def test_the_lifecycle_retries_what_the_client_does_not_when_the_policy_names_it(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("gateway", server.base_url, max_retries=3)

    def flaky_gateway(error: BaseException) -> bool:
        return isinstance(error, LLMCallError) and error.status_code == 400

    policy = RetryPolicy(attempts=2, on=LLMCallError, retry_if=flaky_gateway, **NO_WAIT)
    result = await Hush(ask(name, "hi [[fail-once:400]]", retry=policy)).run()
    assert result["error"] is None
    assert result["content"].startswith("[gpt-4o-mini] reply to: hi")
    assert server.status_counts == {400: 1, 200: 1}


async def test_the_default_policy_retries_neither_a_bad_request_nor_a_spent_call(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("plain", server.base_url, max_retries=1)
    bad = await Hush(ask(name, "bad [[fail:400]]", retry={"attempts": 3, **NO_WAIT})).run()
    assert "HTTP 400" in bad["error"].message
    assert server.status_counts == {400: 1}
    busy = await Hush(ask(name, "busy [[fail:503]]", retry={"attempts": 2, **NO_WAIT})).run()
    assert "(after 2 attempts)" in busy["error"].message
    assert server.status_counts == {400: 1, 503: 2}


async def test_a_nodes_own_bad_input_is_not_retried(
    server: MockLLMServer, register: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    name = register("plain", server.base_url)
    with GraphNode(name="g") as g:
        llm = LLMNode(
            name="llm",
            resource_key=name,
            inputs={"messages": PARENT["messages"]},
            outputs={"content": PARENT, "error": PARENT},
            retry={"attempts": 3, **NO_WAIT},
        )
        START >> llm >> END
    with caplog.at_level(logging.INFO, logger="hush.runtime"):
        result = await Hush(g).run({"messages": []})
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 0
    error = result["error"]
    assert error.type == "NodeValueError" and error.retryable is False
    assert error.is_a(ValueError) and error.is_a(TypeError)
    assert "messages must be a non-empty list" in error.message
    assert server.total_requests == 0
