"""Budgets at their edges: nested runs, and spend across kills and resumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode
from hush.testing import MockLLMServer


def asking(resource: str, *, cap: int, max_tokens: int) -> GraphNode:
    """A map asking one LLM call per question, ``cap`` at a time."""
    with GraphNode(name="asking") as graph:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=cap) as items:
            node = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                max_tokens=max_tokens,
            )
            for key in ("usage", "error"):
                node[key] >> PARENT[key]
            START >> node >> END
        items["usage"] >> PARENT["usages"]
        items["error"] >> PARENT["errors"]
        START >> items >> END
    return graph


def long_questions(n: int) -> list[str]:
    """Questions long enough that a call's real usage is close to its reservation."""
    return [f"question {i}: " + "please think about this carefully " * 8 for i in range(n)]


async def test_a_nested_run_never_holds_or_spends_more_than_its_own_budget(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    """Issue 19.8: a child request checked while another waits for the parent's room
    counts that other one's hold, so the child never holds more than it allows."""
    name = register("nested-edge", server.base_url)
    probe = await Hush(asking(name, cap=1, max_tokens=20)).run({"qs": long_questions(1)})
    per_call = probe["usages"][0]["total_tokens"]
    assert 60 <= per_call <= 150, per_call
    server.reset()
    child_budget = 300
    inner = Hush(asking(name, cap=8, max_tokens=20))

    async def ask_inside(qs: list[str]) -> dict[str, Any]:
        result = await inner.run({"qs": qs}, max_total_tokens=child_budget)
        return {"child_tokens": result["$state"].tokens, "child_errors": result["errors"]}

    with GraphNode(name="outer") as graph:
        # The slow call reserves most of the enclosing budget first, so the child's
        # requests wait for the parent's room: the moment the bug needed.
        slow = LLMNode(
            name="slow",
            resource_key=f"llm:{name}",
            inputs={"messages": [{"role": "user", "content": "slow [[sleep:0.3]]"}]},
            max_tokens=1000,
        )
        child = CodeNode(name="child", code_fn=ask_inside, inputs={"qs": PARENT["qs"]})
        child["child_tokens"] >> PARENT["child_tokens"]
        child["child_errors"] >> PARENT["child_errors"]
        slow["usage"] >> PARENT["slow_usage"]
        START >> [slow, child] >> END
    result = await Hush(graph).run({"qs": long_questions(8)}, max_total_tokens=1100)

    answered = [e for e in result["child_errors"] if e is None]
    refused = [e for e in result["child_errors"] if e is not None]
    assert answered, "no child request got through"
    assert refused and all(e.type == "BudgetExceededError" for e in refused)
    assert result["child_tokens"] <= child_budget
    assert len(answered) * per_call <= child_budget
    assert server.total_requests == len(answered) + 1
