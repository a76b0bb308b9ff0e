"""The scheduler's trampoline: ready nodes run in the task that made them ready until they
suspend (hush/core/runtime.py ``_chain``)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

import pytest

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.events import Event


def inc(v: int) -> dict[str, int]:
    return {"v": v + 1}


async def ainc(v: int) -> dict[str, int]:
    return {"v": v + 1}


def chain(n: int, *, side: bool) -> Hush:
    """``n`` sync nodes in a row; with ``side``, one more start node (so not a plain line)."""
    with GraphNode(name="chain") as g:
        prev = CodeNode(name="n0", code_fn=inc, inputs={"v": PARENT["v"]}, thread=False)
        START >> prev
        for i in range(1, n):
            node = CodeNode(name=f"n{i}", code_fn=inc, inputs={"v": prev["v"]}, thread=False)
            prev >> node
            prev = node
        prev["v"] >> PARENT["v"]
        prev >> END
        if side:
            START >> CodeNode(name="side", code_fn=ainc, inputs={"v": PARENT["v"]}) >> END
    return Hush(g)


def fan(middle: dict[str, Any], *, sink: Any = None) -> Hush:
    """``src >> [middle...] >> sink``: ``middle`` maps a name to its async function of ``v``."""

    async def total(**kw: Any) -> dict[str, Any]:
        return {"v": sorted(kw)}

    with GraphNode(name="fan") as g:
        src = CodeNode(name="src", code_fn=ainc, inputs={"v": PARENT["v"]})
        mids = [CodeNode(name=k, code_fn=fn, inputs={"v": src["v"]}) for k, fn in middle.items()]
        end = CodeNode(name="sink", code_fn=sink or total, inputs={m.name: m["v"] for m in mids})
        end["v"] >> PARENT["v"]
        START >> src >> mids >> end >> END
    return Hush(g)


@pytest.mark.parametrize("side", [False, True])
async def test_a_chain_of_10000_sync_nodes_runs_without_recursion_error(side: bool) -> None:
    result = await chain(10_000, side=side).run({"v": 0})
    assert result["v"] == 10_000
    assert not result["$state"].errors
    assert len(result["$state"].order) == 10_000 + side


async def test_a_fan_out_of_nodes_that_never_wait_starts_no_task_per_node() -> None:
    loop = asyncio.get_running_loop()
    created = 0
    default = loop.get_task_factory()

    def counting(
        loop: asyncio.AbstractEventLoop, coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any]
    ) -> asyncio.Future[Any]:
        nonlocal created
        created += 1
        if default is not None:
            return default(loop, coro)
        return asyncio.Task(coro, loop=loop)

    engine = fan({f"m{i}": ainc for i in range(200)})
    loop.set_task_factory(counting)
    try:
        result = await engine.run({"v": 0})
    finally:
        loop.set_task_factory(default)
    assert len(result["v"]) == 200
    assert created < 5, f"{created} tasks for 202 nodes that never wait"


async def test_a_node_that_suspends_inline_lets_its_siblings_run_meanwhile() -> None:
    b_ran = asyncio.Event()
    seen: list[tuple[str, str]] = []

    async def waits(v: int) -> dict[str, int]:
        async with asyncio.timeout(5):
            await b_ran.wait()
        return {"v": v}

    async def sets(v: int) -> dict[str, int]:
        b_ran.set()
        return {"v": v}

    class Recorder:
        def subscribe(self, start: Event) -> Any:
            return lambda e: seen.append((e.kind, e.name or "")) if e.kind != "progress" else None

        async def flush(self, timeout: float | None = None) -> None:
            return None

    for tracer in (None, Recorder()):
        b_ran.clear()
        seen.clear()
        result = await fan({"a": waits, "b": sets}).run({"v": 0}, tracer=tracer)
        assert not result["$state"].errors, result["$state"].errors
        assert result["v"] == ["a", "b"]
    # a started first and waited for b, which ran (start and end) before a ended
    starts = [n for kind, n in seen if kind == "node_start"]
    ends = [n for kind, n in seen if kind == "node_end"]
    assert starts.index("a") < starts.index("b")
    assert seen.index(("node_end", "b")) < seen.index(("node_end", "a"))
    assert ends[-1] == "sink"


async def test_a_timeout_entered_by_a_node_run_inline_times_out_that_node_only() -> None:
    never = asyncio.Event()

    async def slow(v: int) -> dict[str, int]:
        async with asyncio.timeout(0.01):
            await never.wait()
        return {"v": v}

    async def safe(**kw: Any) -> dict[str, Any]:
        return {"v": sorted(kw)}

    with GraphNode(name="g") as g:
        src = CodeNode(name="src", code_fn=ainc, inputs={"v": PARENT["v"]})
        a = CodeNode(name="a", code_fn=slow, inputs={"v": src["v"]})
        b = CodeNode(name="b", code_fn=ainc, inputs={"v": src["v"]})
        b["v"] >> PARENT["v"]
        START >> src >> [a, b] >> END
    result = await Hush(g).run({"v": 0})
    [error] = result["$state"].errors
    assert error.node == "g/a" and error.type == "TimeoutError"
    assert result["v"] == 2
    assert result["$state"].status_of("g/b") == "ok"


async def test_cancelling_the_run_cancels_a_node_running_inline() -> None:
    entered = asyncio.Event()
    cancelled: list[str] = []

    async def hangs(v: int) -> dict[str, int]:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("a")
            raise
        return {"v": v}

    engine = fan({"a": hangs, "b": ainc})
    run = asyncio.ensure_future(engine.run({"v": 0}))
    async with asyncio.timeout(5):
        await entered.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert cancelled == ["a"]


async def test_a_missing_sibling_output_is_that_nodes_error_also_when_traced() -> None:
    async def nothing() -> dict[str, int]:
        return {}

    async def reads(x: int) -> dict[str, int]:
        return {"y": x}

    with GraphNode(name="g") as g:
        first = CodeNode(name="a", code_fn=nothing)
        second = CodeNode(name="b", code_fn=reads, inputs={"x": first["nope"]})
        START >> first >> second >> END
    engine = Hush(g)
    events = [e async for e in engine.stream({})]
    record = events[-1].result["$state"]
    [error] = record.errors
    assert error.node == "g/b" and error.type == "NodeInputError"
    assert "'a' returned no 'nope'" in error.message
