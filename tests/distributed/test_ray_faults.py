"""Ray faults on a cluster started with ``ray start`` (see conftest): workers killed by PID
mid-map, mid-request and after the first LLM call; budgets across workers; code the
workers cannot import."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from hush import Budget, Progress  # noqa: E402
from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush  # noqa: E402
from hush.core.nodes.iteration import MapNode  # noqa: E402
from hush.core.progress import MapProgress  # noqa: E402
from hush.distributed import RayExecutor  # noqa: E402
from hush.providers import LLMNode, get_registry  # noqa: E402
from hush.testing import MockLLMConfig, MockLLMServer  # noqa: E402


def slow_double(x: int, log: str) -> dict[str, Any]:
    """About 15 ms of work, then one line in ``log`` (how many times items really ran)."""
    time.sleep(0.015)
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return {"y": x * 2}


@pytest.mark.twice
async def test_two_workers_killed_mid_map_cost_only_their_items_in_flight(
    executor: RayExecutor, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    with GraphNode(name="killed") as graph:
        with MapNode(
            name="items",
            inputs={"x": Each(PARENT["xs"]), "log": str(log)},
            max_concurrency=32,
            executor=executor,
        ) as items:
            node = CodeNode(
                name="work", code_fn=slow_double, inputs={"x": PARENT["x"], "log": PARENT["log"]}
            )
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        items["error"] >> PARENT["errors"]
        START >> items >> END

    victims = executor.worker_pids()
    killed: list[int] = []

    def kill_at(progress: list[MapProgress]) -> None:
        done = sum(p.done for p in progress)
        due = 1 if done >= 30 else 0
        due += 1 if done >= 90 else 0
        while len(killed) < min(due, len(victims)):
            pid = victims[len(killed)]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = await Hush(graph).run(
        {"xs": list(range(200))}, progress=Progress(show=False, on_update=kill_at)
    )
    assert killed == victims and len(killed) == 2, "both workers were killed mid-map"
    assert result["ys"] == [x * 2 for x in range(200)]
    assert result["errors"] == [None] * 200
    ran = log.read_text().split()
    assert set(map(int, ran)) == set(range(200))
    assert len(ran) - 200 <= 32, "more than the items in flight ran twice"
    assert not set(executor.worker_pids()) & set(victims), "the dead workers were replaced"


def die_once(content: str, marker: str) -> dict[str, Any]:
    """Kill this worker the first time any item gets here (after its LLM call)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return {"answer": content}
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def llm_graph(executor: RayExecutor, key: str, *, after: Any = None, cap: int = 12) -> GraphNode:
    with GraphNode(name="llm") as graph:
        with MapNode(
            name="asks",
            inputs={"q": Each(PARENT["qs"]), "marker": PARENT["marker"]},
            max_concurrency=cap,
            executor=executor,
        ) as asks:
            llm = LLMNode(
                name="llm",
                resource_key=key,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
            )
            if after is None:
                llm["content"] >> PARENT["answer"]
                START >> llm >> END
            else:
                code = CodeNode(
                    name="after",
                    code_fn=after,
                    inputs={"content": llm["content"], "marker": PARENT["marker"]},
                )
                code["answer"] >> PARENT["answer"]
                START >> llm >> code >> END
        asks["answer"] >> PARENT["answers"]
        asks["error"] >> PARENT["errors"]
        START >> asks >> END
    return graph


@pytest.mark.twice
async def test_the_first_llm_callers_death_leaves_the_others_calls_working(
    io_executor: RayExecutor, tmp_path: Path
) -> None:
    async with MockLLMServer(MockLLMConfig(latency=0.05)) as server:
        get_registry().register(
            "llm:ray-first", {"base_url": server.base_url, "model": "gpt-4o-mini", "rpm": 6000}
        )
        try:
            graph = llm_graph(io_executor, "ray-first", after=die_once)
            qs = [f"question {i}" for i in range(12)]
            result = await Hush(graph).run({"qs": qs, "marker": str(tmp_path / "died")})
        finally:
            get_registry().unregister("llm:ray-first")
    assert (tmp_path / "died").exists(), "the first caller was killed"
    assert result["errors"] == [None] * 12
    assert all(a and q in a for a, q in zip(result["answers"], qs, strict=True))


@pytest.mark.twice
async def test_a_worker_dying_with_a_request_in_flight_does_not_stall_max_concurrency_1(
    io_executor: RayExecutor, tmp_path: Path
) -> None:
    async with MockLLMServer(MockLLMConfig(latency=0.4)) as server:
        get_registry().register(
            "llm:ray-one",
            {"base_url": server.base_url, "model": "gpt-4o-mini", "max_in_flight": 1},
        )
        try:
            graph = llm_graph(io_executor, "ray-one", cap=4)
            victims = io_executor.worker_pids()
            qs = [f"question {i}" for i in range(4)]
            run = asyncio.ensure_future(Hush(graph).run({"qs": qs, "marker": ""}))
            while server.in_flight == 0 and not run.done():
                await asyncio.sleep(0.01)
            for pid in victims:  # the one holding the only permit is among them
                os.kill(pid, signal.SIGKILL)
            result = await asyncio.wait_for(run, 120)  # a hang guard, not a time limit
        finally:
            get_registry().unregister("llm:ray-one")
    assert result["errors"] == [None] * 4
    assert all(a and q in a for a, q in zip(result["answers"], qs, strict=True))
    assert server.peak_in_flight == 1


@pytest.mark.twice
async def test_max_total_tokens_holds_across_workers(io_executor: RayExecutor) -> None:
    async with MockLLMServer(MockLLMConfig(latency=0.05)) as server:
        get_registry().register(
            "llm:ray-budget",
            {"base_url": server.base_url, "model": "gpt-4o-mini", "rpm": 6000},
        )
        try:
            graph = llm_graph(io_executor, "ray-budget", cap=16)
            qs = [f"question {i}: " + "tell me more " * 20 for i in range(24)]
            result = await Hush(graph).run(
                {"qs": qs, "marker": ""}, budget=Budget(max_total_tokens=600)
            )
        finally:
            get_registry().unregister("llm:ray-budget")
    spent = result["$state"].llm["llm:ray-budget"]
    answered = sum(e is None for e in result["errors"])
    refused = [e for e in result["errors"] if e is not None]
    assert spent["total_tokens"] <= 600, spent
    assert 0 < answered < 24 and spent["calls"] == answered == server.status_counts[200]
    assert refused and all(e.type == "BudgetExceededError" for e in refused)
    assert "token budget of 600 reached" in refused[0].message


async def test_llm_requests_in_workers_count_in_the_drivers_state_llm(
    io_executor: RayExecutor,
) -> None:
    """The same per-run counts as a local run: each request, answer, retry and error once."""
    for executor in (None, io_executor):
        async with MockLLMServer(MockLLMConfig(error_rate_503=0.25, seed=3)) as server:
            get_registry().register(
                "llm:ray-counted",
                {"base_url": server.base_url, "model": "gpt-4o-mini", "rpm": 6000},
            )
            try:
                graph = llm_graph(executor, "ray-counted")  # type: ignore[arg-type]
                qs = [f"question {i}" for i in range(16)]
                result = await Hush(graph).run({"qs": qs, "marker": ""})
            finally:
                get_registry().unregister("llm:ray-counted")
        statuses = server.status_counts
        counts = result["$state"].llm["llm:ray-counted"]
        where = "on Ray" if executor else "locally"
        assert result["errors"] == [None] * 16, where
        assert counts["sent"] == sum(statuses.values()), (where, counts, statuses)
        assert counts["ok"] == statuses[200] == 16, (where, counts)
        assert counts["errors"] == statuses[503] > 0, (where, counts, statuses)
        assert counts["retries"] == counts["sent"] - 16, (where, counts)
        assert counts["tokens_used"] > 0, (where, counts)


MODULE = """
def shout(x):
    return {"y": str(x).upper()}
"""


@pytest.mark.twice
async def test_code_the_workers_cannot_import_fails_each_item_readably(
    executor: RayExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Importable here only: the workers' path was fixed when the executor joined.
    (tmp_path / "driver_only_code.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from driver_only_code import shout  # type: ignore[import-not-found]

    with GraphNode(name="lost") as graph:
        with MapNode(name="items", inputs={"x": Each(PARENT["xs"])}, executor=executor) as items:
            node = CodeNode(name="shout", code_fn=shout, inputs={"x": PARENT["x"]})
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        items["error"] >> PARENT["errors"]
        START >> items >> END
    try:
        result = await Hush(graph).run({"xs": ["a", "b", "c"]})
    finally:
        sys.modules.pop("driver_only_code", None)
    assert result["ys"] == [None, None, None]
    errors = result["errors"]
    assert [e.node for e in errors] == [f"lost/items[{i}]" for i in range(3)]
    for error in errors:
        assert error.type == "ModuleNotFoundError"
        assert error.message.startswith("No module named 'driver_only_code'"), error.message
        assert "runtime_env" in error.message
        assert len(f"{error.type}: {error.message}") < 600
        assert "\x1b" not in error.message and "ItemRunner" not in error.message


def wait_for_driver(content: str, marker: str) -> dict[str, Any]:
    """Finish only once the driver has seen this item's tokens (it creates ``marker``)."""
    deadline = time.monotonic() + 60  # a hang guard: without live events it never comes
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"answer": content if os.path.exists(marker) else None}


async def test_tokens_stream_from_a_worker_while_its_item_runs(
    io_executor: RayExecutor, tmp_path: Path
) -> None:
    marker = tmp_path / "seen"
    async with MockLLMServer(MockLLMConfig()) as server:
        get_registry().register(
            "llm:ray-live", {"base_url": server.base_url, "model": "gpt-4o-mini"}
        )
        try:
            with GraphNode(name="live") as graph:
                with MapNode(
                    name="asks",
                    inputs={"q": Each(PARENT["qs"]), "marker": str(marker)},
                    executor=io_executor,
                ) as asks:
                    llm = LLMNode(
                        name="llm",
                        resource_key="ray-live",
                        stream=True,
                        inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                    )
                    code = CodeNode(
                        name="after",
                        code_fn=wait_for_driver,
                        inputs={"content": llm["content"], "marker": PARENT["marker"]},
                    )
                    code["answer"] >> PARENT["answer"]
                    START >> llm >> code >> END
                asks["answer"] >> PARENT["answers"]
                START >> asks >> END
            tokens = 0
            result = None
            async for event in Hush(graph).stream({"qs": ["hello there"]}):
                if event.kind == "token":
                    tokens += 1
                    marker.touch()
                elif event.kind == "run_end":
                    result = event.result
        finally:
            get_registry().unregister("llm:ray-live")
    assert tokens > 0
    assert result is not None and result["answers"][0] and "hello there" in result["answers"][0]


async def test_the_response_cache_answers_worker_calls_across_runs(
    io_executor: RayExecutor, tmp_path: Path
) -> None:
    cache = tmp_path / "answers.db"
    async with MockLLMServer(MockLLMConfig(latency=0.01)) as server:
        get_registry().register(
            "llm:ray-cache", {"base_url": server.base_url, "model": "gpt-4o-mini", "rpm": 6000}
        )
        try:
            graph = llm_graph(io_executor, "ray-cache", cap=8)
            qs = [f"question {i}" for i in range(8)]
            first = await Hush(graph).run({"qs": qs, "marker": ""}, cache=str(cache))
            sent = server.total_requests
            again = await Hush(graph).run({"qs": qs, "marker": ""}, cache=str(cache))
        finally:
            get_registry().unregister("llm:ray-cache")
    assert first["errors"] == again["errors"] == [None] * 8
    assert sent == 8 and server.total_requests == 8, "the second run was answered by the cache"
    assert again["answers"] == first["answers"]
    spent = again["$state"].llm["llm:ray-cache"]
    assert spent["cached"] == 8 and spent["calls"] == 0
