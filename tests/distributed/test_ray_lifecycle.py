"""What the executor holds across an await ends with the run (or the executor), and it joins
only a cluster that outlives other processes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush  # noqa: E402
from hush.core.nodes.iteration import MapNode  # noqa: E402
from hush.distributed import RayExecutor  # noqa: E402
from hush.distributed.cluster import started_here  # noqa: E402

_seen = threading.local()


def count_in_thread(x: int) -> dict[str, Any]:
    """How many items this thread has run (1 in a fresh thread)."""
    _seen.n = getattr(_seen, "n", 0) + 1
    return {"y": x, "n": _seen.n}


async def wait_for(x: str) -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"y": x}


def graph(fn: Any, executor: RayExecutor, cap: int = 8) -> GraphNode:
    with GraphNode(name="g") as root:
        with MapNode(
            name="items", inputs={"x": Each(PARENT["xs"])}, max_concurrency=cap, executor=executor
        ) as items:
            node = CodeNode(name="work", code_fn=fn, inputs={"x": PARENT["x"]})
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        START >> items >> END
    return root


def executor_tasks() -> list[asyncio.Task[Any]]:
    """The tasks of ``hush.distributed`` still pending on this loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__.startswith("_Call.")  # type: ignore[union-attr]
        and not task.done()
    ]


async def test_no_call_outlives_the_run_that_made_it(executor: RayExecutor) -> None:
    """A call still reading its stream after the run could touch Ray after shutdown (at exit,
    that ended the process with status 1 and no message)."""
    for _ in range(3):
        result = await Hush(graph(count_in_thread, executor)).run({"xs": list(range(40))})
        assert result["ys"] == list(range(40))
        assert executor_tasks() == []


async def test_a_cancelled_run_ends_its_calls(cluster: str) -> None:
    with RayExecutor(workers=1, cpus_per_worker=0, items_per_worker=4) as executor:
        started = 0
        stream = Hush(graph(wait_for, executor, cap=4)).stream({"xs": ["a", "b", "c", "d"]})
        async for event in stream:
            if event.kind == "node_start" and event.name == "work":
                started += 1
                if started == 4:
                    break
        calls = executor_tasks()
        assert calls, "the items run in a call of the worker"
        await stream.aclose()
        _, pending = await asyncio.wait(calls, timeout=60)
        assert not pending, "a call kept reading its stream after its run was cancelled"
    assert ray.is_initialized(), "an executor that joined a connection leaves it open"


def test_the_cluster_of_ray_start_is_found_on_this_machine(cluster: str) -> None:
    found = started_here()
    assert found is not None and found.rsplit(":", 1)[1] == cluster.rsplit(":", 1)[1]
