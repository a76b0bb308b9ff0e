"""Scheduling, errors, policies and cancellation, checked with events and counters."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush, RetryPolicy, RunError


async def test_unrelated_branches_overlap() -> None:
    a_started, b_started = anyio.Event(), anyio.Event()

    async def a() -> dict[str, str]:
        a_started.set()
        with anyio.fail_after(5):
            await b_started.wait()
        return {"v": "a"}

    async def b() -> dict[str, str]:
        b_started.set()
        with anyio.fail_after(5):
            await a_started.wait()
        return {"v": "b"}

    with GraphNode(name="g") as g:
        na = CodeNode(name="a", code_fn=a, inputs={})
        nb = CodeNode(name="b", code_fn=b, inputs={})
        START >> [na, nb] >> END
    result = await Hush(g).run()
    assert result["$state"].status == "ok"


async def test_successor_starts_without_waiting_for_unrelated_slow_branch() -> None:
    release_slow = anyio.Event()
    fast_done = anyio.Event()

    async def slow() -> dict[str, int]:
        with anyio.fail_after(5):
            await release_slow.wait()
        return {}

    async def fast() -> dict[str, int]:
        return {"v": 1}

    async def after_fast(v: int) -> dict[str, int]:
        fast_done.set()
        release_slow.set()
        return {}

    with GraphNode(name="g") as g:
        s = CodeNode(name="slow", code_fn=slow, inputs={})
        f = CodeNode(name="fast", code_fn=fast, inputs={})
        af = CodeNode(name="after_fast", code_fn=after_fast, inputs={"v": f["v"]})
        START >> [s, f]
        f >> af
        [s, af] >> END
    await Hush(g).run()
    assert fast_done.is_set()


async def test_node_never_starts_before_all_hard_predecessors_finish() -> None:
    finished: set[str] = set()
    violations: list[str] = []

    def make(name: str, spins: int, needs: set[str]) -> CodeNode:
        async def fn() -> dict[str, str]:
            if not needs <= finished:
                violations.append(name)
            for _ in range(spins):
                await anyio.sleep(0)
            finished.add(name)
            return {}

        return CodeNode(name=name, code_fn=fn, inputs={})

    with GraphNode(name="g") as g:
        a = make("a", 5, set())
        b = make("b", 1, set())
        c = make("c", 9, set())
        d = make("d", 0, {"a", "b", "c"})
        e = make("e", 2, {"a", "b", "c", "d"})
        START >> [a, b, c] >> d >> e >> END
    await Hush(g).run()
    assert violations == []
    assert finished == {"a", "b", "c", "d", "e"}


async def test_blocking_sync_functions_run_in_parallel_threads() -> None:
    barrier = threading.Barrier(10, timeout=5)

    def blocking() -> dict[str, int]:
        barrier.wait()
        time.sleep(0.3)
        return {"thread": threading.get_ident()}

    with GraphNode(name="g") as g:
        nodes = [CodeNode(name=f"s{i}", code_fn=blocking, inputs={}) for i in range(10)]
        START >> nodes >> END
    start = time.perf_counter()
    result = await Hush(g).run()
    elapsed = time.perf_counter() - start
    assert result["$state"].errors == []
    assert elapsed < 2.0


async def test_failing_node_does_not_stop_unrelated_siblings_and_successors_skip() -> None:
    def boom() -> dict[str, int]:
        raise ValueError("kaput")

    with GraphNode(name="g") as g:
        bad = CodeNode(name="bad", code_fn=boom, inputs={})
        after_bad = CodeNode(name="after_bad", code_fn=lambda v: {}, inputs={"v": bad["x"]})
        good = CodeNode(name="good", code_fn=lambda: {"v": 1}, inputs={}, outputs={"v": PARENT})
        START >> [bad, good]
        bad >> after_bad >> END
        good >> END
    result = await Hush(g).run()
    state = result["$state"]
    assert result["v"] == 1
    assert state.nodes["g/bad"].status == "error"
    assert state.nodes["g/bad"].error.type == "ValueError"
    assert "kaput" in state.nodes["g/bad"].error.traceback
    assert state.nodes["g/after_bad"].status == "skipped"
    assert state.nodes["g/good"].status == "ok"
    assert state.status == "error"
    assert [e.node for e in state.errors] == ["g/bad"]


async def test_error_handler_runs_and_reads_the_error() -> None:
    def boom(x: int) -> dict[str, int]:
        raise KeyError("missing thing")

    with GraphNode(name="g") as g:
        risky = CodeNode(name="risky", code_fn=boom, inputs={"x": 1})
        handler = CodeNode(
            name="handler",
            code_fn=lambda err, value: {"msg": f"{err.type}: {err.message}", "value": value},
            inputs={"err": risky["error"], "value": risky["result"]},
            outputs={"*": PARENT},
        )
        START >> risky >> handler >> END
    result = await Hush(g).run()
    assert result["msg"] == "KeyError: 'missing thing'"
    assert result["value"] is None
    assert result["$state"].nodes["g/handler"].status == "ok"


async def test_error_output_is_none_on_success() -> None:
    with GraphNode(name="g") as g:
        ok = CodeNode(name="ok", code_fn=lambda: {"v": 1}, inputs={})
        check = CodeNode(
            name="check",
            code_fn=lambda e: {"e": e},
            inputs={"e": ok["error"]},
            outputs={"e": PARENT},
        )
        START >> ok >> check >> END
    assert (await Hush(g).run())["e"] is None


async def test_non_dict_return_is_that_nodes_error_naming_it() -> None:
    with GraphNode(name="g") as g:
        n = CodeNode(name="listy", code_fn=lambda: [1, 2], inputs={})
        START >> n >> END
    state = (await Hush(g).run())["$state"]
    err = state.nodes["g/listy"].error
    assert err.type == "NodeReturnError"
    assert "CodeNode 'listy' returned list" in err.message


async def test_missing_declared_output_is_the_nodes_error() -> None:
    with GraphNode(name="g") as g:
        n = CodeNode(name="n", code_fn=lambda: {"a": 1}, inputs={}, outputs={"b": PARENT})
        START >> n >> END
    err = (await Hush(g).run())["$state"].nodes["g/n"].error
    assert (
        "output 'b' is mapped to PARENT['b'] but the node returned no 'b' (it returned: a)"
        in err.message
    )


async def test_raise_on_error_carries_every_error() -> None:
    def boom(n: int) -> dict[str, int]:
        raise RuntimeError(f"fail {n}")

    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=boom, inputs={"n": 1})
        b = CodeNode(name="b", code_fn=boom, inputs={"n": 2})
        START >> [a, b] >> END
    with pytest.raises(RunError) as info:
        await Hush(g).run(raise_on_error=True)
    assert sorted(e.message for e in info.value.errors) == ["fail 1", "fail 2"]
    assert info.value.result["$state"].status == "error"


async def test_state_has_run_id_timings_and_order() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: {"v": 1}, inputs={})
        b = CodeNode(name="b", code_fn=lambda v: {"w": v}, inputs={"v": a["v"]})
        START >> a >> b >> END
    state = (await Hush(g).run(run_id="r-1"))["$state"]
    assert state.run_id == "r-1" and state["run_id"] == "r-1"
    assert state.order == ["g/a", "g/b"]
    rec = state.nodes["g/b"]
    assert rec.outputs == {"w": 1} and rec.attempts == 1
    assert rec.started is not None and rec.ended is not None and rec.ended >= rec.started
    assert state.nodes["g/a"].ended <= rec.started
    assert state.duration is not None


async def test_retry_with_backoff_then_success() -> None:
    calls = 0

    async def flaky() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("transient")
        return {"v": calls}

    with GraphNode(name="g") as g:
        n = CodeNode(
            name="flaky",
            code_fn=flaky,
            inputs={},
            retry=RetryPolicy(attempts=4, initial=0.001, jitter=0.001),
            outputs={"v": PARENT},
        )
        START >> n >> END
    result = await Hush(g).run()
    assert result["v"] == 3
    assert result["$state"].nodes["g/flaky"].attempts == 3


async def test_retry_only_listed_exceptions() -> None:
    calls = 0

    async def wrong() -> dict[str, int]:
        nonlocal calls
        calls += 1
        raise ValueError("not retried")

    with GraphNode(name="g") as g:
        n = CodeNode(
            name="n",
            code_fn=wrong,
            inputs={},
            retry={"attempts": 5, "initial": 0, "jitter": 0, "on": ConnectionError},
        )
        START >> n >> END
    state = (await Hush(g).run())["$state"]
    assert calls == 1
    assert state.nodes["g/n"].error.type == "ValueError"


async def test_timeout_per_attempt_and_retry_after_timeout() -> None:
    calls = 0

    async def slow_then_fast() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(30)
        return {"v": calls}

    with GraphNode(name="g") as g:
        n = CodeNode(
            name="n",
            code_fn=slow_then_fast,
            inputs={},
            timeout=0.05,
            retry={"attempts": 2, "initial": 0, "jitter": 0},
            outputs={"v": PARENT},
        )
        hung = CodeNode(name="hung", code_fn=lambda: anyio.sleep(30), inputs={}, timeout=0.05)
        START >> [n, hung] >> END
    result = await Hush(g).run()
    assert result["v"] == 2
    err = result["$state"].nodes["g/hung"].error
    assert err.type == "NodeTimeoutError" and err.message == "timed out after 0.05s"


async def test_cancellation_stops_running_nodes_and_leaves_no_task() -> None:
    started = anyio.Event()
    cancelled = 0

    async def forever() -> dict[str, int]:
        nonlocal cancelled
        started.set()
        try:
            await anyio.sleep(60)
        except BaseException:
            cancelled += 1
            raise
        return {}

    with GraphNode(name="g") as g:
        nodes = [CodeNode(name=f"n{i}", code_fn=forever, inputs={}) for i in range(5)]
        sync_node = CodeNode(name="sync", code_fn=lambda: time.sleep(0.2) or {}, inputs={})
        START >> [*nodes, sync_node] >> END
    engine = Hush(g)
    before = set(asyncio.all_tasks())
    task = asyncio.ensure_future(engine.run())
    with anyio.fail_after(5):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError), anyio.fail_after(2):
        await task
    await asyncio.sleep(0)
    assert cancelled == 5
    assert set(asyncio.all_tasks()) == before


async def test_concurrent_runs_on_one_engine_share_nothing() -> None:
    async def echo(x: int) -> dict[str, int]:
        for _ in range(x % 4):
            await anyio.sleep(0)
        return {"y": x * 10}

    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=echo, inputs={"x": PARENT["x"]})
        b = CodeNode(
            name="b", code_fn=lambda y: {"z": y + 1}, inputs={"y": a["y"]}, outputs={"z": PARENT}
        )
        START >> a >> b >> END
    engine = Hush(g)
    results = await asyncio.gather(*(engine.run({"x": i}) for i in range(50)))
    assert [r["z"] for r in results] == [i * 10 + 1 for i in range(50)]
    assert len({r["$state"].run_id for r in results}) == 50


def test_run_sync_for_scripts() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(
            name="a",
            code_fn=lambda x: {"y": x + 1},
            inputs={"x": PARENT["x"]},
            outputs={"y": PARENT},
        )
        START >> a >> END
    assert Hush(g).run_sync({"x": 1})["y"] == 2


async def test_run_sync_inside_a_running_loop_says_to_await() -> None:
    with GraphNode(name="nb") as g:
        a = CodeNode(name="a", code_fn=lambda: {"y": 1}, outputs={"y": PARENT})
        START >> a >> END
    with pytest.raises(RuntimeError, match=r"run_sync\(\) of graph 'nb'.*await engine.run"):
        Hush(g).run_sync()
