"""Edges of the lifecycle found in review: snapshots, retries of containers, threads, odd errors."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hush import END, PARENT, START, BranchNode, CodeNode, Each, GraphNode, Hush, MapNode
from hush.checkpoint import CheckpointMismatchError
from hush.core import RetryPolicy


def one_item_map(first: Any, second: Any, *, first_writes: dict[str, Any]) -> GraphNode:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}) as m:
            a = CodeNode(name="a", code_fn=first, inputs={"x": PARENT["x"]}, outputs=first_writes)
            b = CodeNode(name="b", code_fn=second, inputs={"v": a["v"]}, outputs={"out": PARENT})
            START >> a >> b >> END
        m["out"] >> PARENT["out"]
        START >> m >> END
    return g


async def test_a_saved_node_inside_an_item_is_what_it_returned_when_it_finished(
    tmp_path: Path,
) -> None:
    failing = True

    def load(x: int) -> dict[str, list[Any]]:
        return {"v": [x]}

    def send(v: list[Any]) -> dict[str, list[Any]]:
        v.append("header")  # builds its payload in place, then fails
        if failing:
            raise ConnectionError("transient")
        return {"out": list(v)}

    engine = Hush(one_item_map(load, send, first_writes={}))
    db = tmp_path / "c.db"
    await engine.run({"xs": [1]}, checkpoint=db, run_id="r")
    failing = False
    resumed = await engine.run({"xs": [1]}, checkpoint=db, run_id="r")
    assert resumed["out"] == [[1, "header"]] == (await engine.run({"xs": [1]}))["out"]


async def test_a_node_inside_an_item_is_keyed_by_the_inputs_it_ran_with(tmp_path: Path) -> None:
    failing = True

    def inc(x: int) -> dict[str, int]:
        return {"v": x + 1, "x": x + 1}

    def check(v: int) -> dict[str, int]:
        if failing:
            raise ConnectionError("transient")
        return {"out": v}

    engine = Hush(one_item_map(inc, check, first_writes={"x": PARENT}))
    db = tmp_path / "c.db"
    await engine.run({"xs": [1, 10]}, checkpoint=db, run_id="r")
    failing = False
    resumed = await engine.run({"xs": [2, 11]}, checkpoint=db, run_id="r")
    assert resumed["out"] == [3, 12]


async def test_a_retried_graph_starts_again_from_its_inputs() -> None:
    calls = 0

    def flaky(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("transient")
        return {"y": x}

    with GraphNode(name="g") as g:
        with GraphNode(
            name="sub", inputs={"x": PARENT["x"]}, retry={"attempts": 2, "initial": 0, "jitter": 0}
        ) as sub:
            a = CodeNode(name="inc", code_fn=lambda x: {"x": x + 1}, inputs={"x": PARENT["x"]})
            a["x"] >> PARENT["x"]
            b = CodeNode(name="flaky", code_fn=flaky, inputs={"x": PARENT["x"]})
            b["y"] >> PARENT["y"]
            START >> a >> b >> END
        sub["y"] >> PARENT["y"]
        START >> sub >> END
    assert (await Hush(g).run({"x": 1}))["y"] == 2


def sync_map(work: Any, n: int, **options: Any) -> Hush:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=n) as m:
            node = CodeNode(name="n", code_fn=work, inputs={"x": PARENT["x"]}, **options)
            node["y"] >> PARENT["y"]
            START >> node >> END
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return Hush(g)


async def test_a_sync_timeout_counts_from_when_its_thread_starts() -> None:
    def work(x: int) -> dict[str, int]:
        time.sleep(0.2)
        return {"y": x}

    # 60 items, but anyio runs at most 40 threads: 20 wait 0.2 s for a thread first.
    result = await sync_map(work, 60, timeout=0.3).run({"xs": list(range(60))})
    assert result["errors"] == [None] * 60


async def test_a_sync_retry_never_waits_for_a_call_that_never_started() -> None:
    def work(x: int) -> dict[str, int]:
        time.sleep(0.3)
        return {"y": x}

    engine = sync_map(work, 45, timeout=0.1, retry={"attempts": 2, "initial": 0, "jitter": 0})
    result = await asyncio.wait_for(engine.run({"xs": list(range(45))}), 20)
    assert all(e is not None and e.type == "NodeTimeoutError" for e in result["errors"])


async def test_a_retried_container_waits_for_threads_left_running_inside_it() -> None:
    lock = threading.Lock()
    inside = peak = 0

    def slow() -> dict[str, int]:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.3)
        with lock:
            inside -= 1
        return {"y": 1}

    with GraphNode(name="g") as g:
        with GraphNode(
            name="sub", timeout=0.1, retry={"attempts": 3, "initial": 0, "jitter": 0}
        ) as sub:
            n = CodeNode(name="slow", code_fn=slow, inputs={}, outputs={"y": PARENT})
            START >> n >> END
        START >> sub >> END
    state = (await Hush(g).run())["$state"]
    assert state.nodes["g/sub"].attempts == 3
    assert peak == 1


async def test_a_container_retries_only_what_its_policy_names() -> None:
    calls = 0

    def flaky() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("reset by peer")
        return {"y": 1}

    def build(on: Any) -> GraphNode:
        with GraphNode(name="g") as g:
            policy = RetryPolicy(attempts=2, initial=0, jitter=0, on=on)
            with GraphNode(name="sub", retry=policy) as sub:
                n = CodeNode(name="flaky", code_fn=flaky, inputs={}, outputs={"y": PARENT})
                START >> n >> END
            START >> sub >> END
        return g

    assert (await Hush(build(ConnectionError)).run())["$state"].status == "ok"
    calls = 0
    assert (await Hush(build(KeyError)).run())["$state"].status == "error"


async def test_an_each_iterable_raising_cancelled_error_fails_the_map() -> None:
    def rows() -> Any:
        yield 1
        yield 2
        raise asyncio.CancelledError()

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=4) as m:
            n = CodeNode(name="n", code_fn=lambda x: {"y": x}, inputs={"x": PARENT["x"]})
            START >> n >> END
        START >> m >> END
    state = (await Hush(g).run({"xs": rows()}))["$state"]
    assert state.status == "error"
    assert "raised CancelledError while iterated" in state.nodes["g/m"].error.message


class Abort(BaseException):
    """A library's own BaseException (not a cancellation nor an exit)."""


async def test_a_base_exception_raised_by_a_node_is_its_error() -> None:
    async def bad(x: int) -> dict[str, int]:
        raise Abort("library abort")

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each([1, 2])}) as m:
            n = CodeNode(name="bad", code_fn=bad, inputs={"x": PARENT["x"]})
            START >> n >> END
        top = CodeNode(name="top", code_fn=bad, inputs={"x": 0})
        ok = CodeNode(name="ok", code_fn=lambda: {"s": 1}, inputs={}, outputs={"s": PARENT})
        START >> [m, top, ok]
        [m, top, ok] >> END
    result = await Hush(g).run()
    assert result["s"] == 1
    assert [e.type for e in result["$state"].errors].count("Abort") == 3


async def test_inputs_that_cannot_be_digested_only_cost_their_save(tmp_path: Path) -> None:
    def deep(n: int) -> list[Any]:
        v: list[Any] = []
        for _ in range(n):
            v = [v]
        return v

    with GraphNode(name="g") as g:
        mk = CodeNode(name="mk", code_fn=lambda: {"tree": deep(5000)}, inputs={})
        use = CodeNode(name="use", code_fn=lambda tree: {"ok": True}, inputs={"tree": mk["tree"]})
        use["ok"] >> PARENT["ok"]
        START >> mk >> use >> END
    result = await Hush(g).run(checkpoint=tmp_path / "c.db", run_id="r")
    assert result["ok"] is True
    assert result["$state"].status == "ok"


async def test_a_decorated_function_is_fingerprinted_by_what_it_wraps(tmp_path: Path) -> None:
    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            return fn(**kwargs)

        return wrapper

    def graph(negate: bool) -> GraphNode:
        body = (lambda x: {"y": -x}) if negate else (lambda x: {"y": 2 * x})
        with GraphNode(name="g") as g:
            n = CodeNode(name="n", code_fn=logged(body), inputs={"x": PARENT["x"]})
            n["y"] >> PARENT["y"]
            START >> n >> END
        return g

    db = tmp_path / "c.db"
    assert (await Hush(graph(False)).run({"x": 5}, checkpoint=db, run_id="r"))["y"] == 10
    with pytest.raises(CheckpointMismatchError):
        await Hush(graph(True)).run({"x": 5}, checkpoint=db, run_id="r")


def test_writers_in_branch_arms_joined_softly_build() -> None:
    def w() -> dict[str, int]:
        return {"v": 1}

    with GraphNode(name="g") as g:
        outer = BranchNode(name="outer", cases={"k > 0": "left"}, default="right", inputs={"k": 1})
        left = CodeNode(name="left", code_fn=lambda: {}, inputs={})
        right = CodeNode(name="right", code_fn=w, inputs={}, outputs={"v": PARENT})
        inner = BranchNode(name="inner", cases={"k > 1": "u1"}, default="u2", inputs={"k": 1})
        u1 = CodeNode(name="u1", code_fn=lambda: {}, inputs={})
        u2 = CodeNode(name="u2", code_fn=lambda: {}, inputs={})
        j = CodeNode(name="j", code_fn=w, inputs={}, outputs={"v": PARENT})
        START >> outer >> [left, right]
        left >> inner >> [u1, u2]
        [u1, u2] >> ~j
        [j, right] >> ~END
    g.build()
