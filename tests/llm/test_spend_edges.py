"""Budgets at their edges: nested runs, and spend across kills and resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


CHILD = Path(__file__).with_name("spend_child.py")
ROOT = Path(__file__).resolve().parents[2]


def test_spend_survives_kills_with_the_work_it_paid_for(tmp_path: Path) -> None:
    """Issue 25.4: kill -9 twice mid-map under a budget, then resume: the run's cost is
    exactly what the saved answers cost, and stays within the budget."""
    n, db = 120, tmp_path / "run.db"
    with MockLLMServer(latency=0.01) as server:

        def run(
            kill_after: int | None, budget: float, items: int = n, file: Path = db
        ) -> dict[str, Any] | None:
            proc = subprocess.Popen(
                [sys.executable, str(CHILD), server.base_url, str(file), str(budget), str(items)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            assert proc.stdout is not None
            try:
                done = 0
                for line in proc.stdout:
                    if line.startswith("done"):
                        done += 1
                        if kill_after is not None and done >= kill_after:
                            proc.send_signal(signal.SIGKILL)
                            proc.wait(30)
                            return None
                    elif line.startswith("{"):
                        return dict(json.loads(line))
                raise AssertionError(proc.stderr.read() if proc.stderr else "no output")
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(30)

        probe = run(None, 1.0, 3, tmp_path / "probe.db")
        assert probe is not None
        budget = 90 * max(probe["costs"])  # about 90 of the 120 calls fit
        server.reset()
        assert run(25, budget) is None
        assert run(25, budget) is None
        final = run(None, budget)
        assert final is not None
        answered = [r for r in server.requests if r.path.endswith("/chat/completions")]
        answered = [r for r in answered if r.status == 200]

    costs = [c for c in final["costs"] if c is not None]
    saved_cost = sum(costs)
    assert final["cost"] == pytest.approx(saved_cost, rel=1e-9), (
        "the run's cost is not what its saved answers cost"
    )
    assert final["cost"] <= budget
    refused = [e for e in final["errors"] if e is not None]
    assert refused and set(refused) == {"BudgetExceededError"}, "the budget was not reached"
    asked = Counter(r.body["messages"][-1]["content"] for r in answered)
    assert len(costs) == len(final["errors"]) - len(refused)
    assert len(asked) >= len(costs), "every saved answer was answered by the server"
