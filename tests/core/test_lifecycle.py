"""The node-attempt lifecycle through the public API: exceptions, timeouts, retries, threads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, MapNode, RetryPolicy
from hush.core import GraphDefinitionError
from hush.observability import MemoryTracer


def map_graph(work: Any, *, cap: int = 4, **node_options: Any) -> GraphNode:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=cap) as m:
            n = CodeNode(name="n", code_fn=work, inputs={"x": PARENT["x"]}, **node_options)
            n["y"] >> PARENT["y"]
            START >> n >> END
        m["y"] >> PARENT["ys"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


async def cancelled_elsewhere() -> None:
    """Await a future that something else cancelled: raises CancelledError here."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


async def test_cancelled_error_in_one_item_is_that_items_error() -> None:
    async def work(x: int) -> dict[str, int]:
        if x == 2:
            await cancelled_elsewhere()
        await asyncio.sleep(0)
        return {"y": x * 10}

    result = await Hush(map_graph(work)).run({"xs": [0, 1, 2, 3, 4]})
    state = result["$state"]
    assert result["ys"] == [0, 10, None, 30, 40]
    assert [e is None for e in result["errors"]] == [True, True, False, True, True]
    assert result["errors"][2].type == "NodeCancelledError"
    assert result["errors"][2].node == "g/m[2]/n"
    assert "CancelledError" in result["errors"][2].traceback
    assert state.status == "error"
    assert [e.node for e in state.errors] == ["g/m[2]/n"]


async def test_cancelled_error_at_top_level_is_a_node_error_not_a_cancelled_run() -> None:
    async def bad() -> dict[str, int]:
        await cancelled_elsewhere()
        return {}

    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=bad, inputs={})
        b = CodeNode(name="b", code_fn=lambda: {"v": 1}, inputs={}, outputs={"v": PARENT})
        START >> [a, b] >> END
    result = await Hush(g).run()
    assert result["v"] == 1
    assert result["$state"].status == "error"
    assert result["$state"].nodes["g/a"].error.type == "NodeCancelledError"


async def test_cancelled_error_item_is_not_saved_and_reruns_on_resume(tmp_path: Path) -> None:
    broken = {2}
    calls: list[int] = []

    async def work(x: int) -> dict[str, int]:
        calls.append(x)
        if x in broken:
            await cancelled_elsewhere()
        return {"y": x * 10}

    engine = Hush(map_graph(work))
    db = tmp_path / "c.db"
    first = await engine.run({"xs": [0, 1, 2, 3]}, checkpoint=db, run_id="r")
    assert first["ys"] == [0, 10, None, 30]
    broken.clear()
    calls.clear()
    second = await engine.run({"xs": [0, 1, 2, 3]}, checkpoint=db, run_id="r")
    assert second["ys"] == [0, 10, 20, 30]
    assert calls == [2]
    assert second["$state"].iterations["g/m"].resumed == 3


async def test_cancelling_the_run_cancels_every_node_and_leaves_no_task() -> None:
    started = asyncio.Event()
    running = 0
    finished_cleanly = 0

    async def work(x: int) -> dict[str, int]:
        nonlocal running, finished_cleanly
        running += 1
        if running == 3:
            started.set()
        try:
            await asyncio.sleep(30)
        finally:
            running -= 1
            finished_cleanly += 1
        return {"y": x}

    tracer = MemoryTracer()
    task = asyncio.create_task(
        Hush(map_graph(work, cap=3)).run({"xs": [1, 2, 3, 4]}, tracer=tracer)
    )
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert running == 0 and finished_cleanly == 3
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []
    statuses = {r["name"]: r.get("status") for r in tracer.records}
    assert statuses["g"] == "cancelled"
    assert statuses["m"] == "cancelled"
    assert [statuses[f"m[{i}]"] for i in range(3)] == ["cancelled"] * 3
    assert len([r for r in tracer.records if r["name"] == "n"]) == 3


async def test_timeout_starts_when_the_attempt_holds_its_slot() -> None:
    inside = 0
    peak = 0

    async def work(x: int) -> dict[str, int]:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.1)
        inside -= 1
        return {"y": x}

    result = await Hush(map_graph(work, cap=20, timeout=0.5)).run(
        {"xs": list(range(20))}, max_concurrency=2
    )
    assert result["errors"] == [None] * 20
    assert result["ys"] == list(range(20))
    assert peak == 2


async def test_timeout_bounds_each_attempt() -> None:
    async def slow(x: int) -> dict[str, int]:
        await asyncio.sleep(5)
        return {"y": x}

    start = time.monotonic()
    result = await Hush(map_graph(slow, timeout=0.2)).run({"xs": [1]})
    assert time.monotonic() - start < 2
    error = result["errors"][0]
    assert (error.type, error.message) == ("NodeTimeoutError", "timed out after 0.2s")


def counting(fail: BaseException | None = None, *, returns: Any = None) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def fn() -> Any:
        calls.append(1)
        if fail is not None:
            raise fail
        return returns

    return fn, calls


@pytest.mark.parametrize(
    ("fn_calls", "retry", "attempts"),
    [
        (counting(ConnectionError("flaky")), 3, 3),
        (counting(returns="not a dict"), 3, 1),
        (counting(ConnectionError("flaky")), RetryPolicy(attempts=3, retry_if=lambda e: False), 1),
        (counting(KeyError("k")), RetryPolicy(attempts=4, on=(ConnectionError,)), 1),
        (counting(KeyError("k")), {"attempts": 2, "initial": 0}, 2),
    ],
)
async def test_retry_only_retries_what_is_retryable(
    fn_calls: tuple[Any, list[int]], retry: Any, attempts: int
) -> None:
    fn, calls = fn_calls
    policy = RetryPolicy.coerce(retry)
    assert policy is not None
    retry = policy.model_copy(update={"initial": 0, "jitter": 0})
    with GraphNode(name="g") as g:
        n = CodeNode(name="n", code_fn=fn, inputs={}, retry=retry, thread=False)
        START >> n >> END
    state = (await Hush(g).run())["$state"]
    assert len(calls) == attempts
    assert state.nodes["g/n"].attempts == attempts
    assert state.nodes["g/n"].status == "error"


def test_unknown_retry_fields_and_bad_option_types_are_clear_errors() -> None:
    with GraphNode(name="g"):
        with pytest.raises(GraphDefinitionError, match=r"CodeNode 'a': bad retry: bogus: Extra"):
            CodeNode(name="a", code_fn=lambda: {}, retry={"bogus": 1})
        with pytest.raises(GraphDefinitionError, match=r"CodeNode 'b': timeout must be a number"):
            CodeNode(name="b", code_fn=lambda: {}, timeout="5")  # type: ignore[arg-type]
        with pytest.raises(GraphDefinitionError, match=r"CodeNode 'c': timeout must be > 0"):
            CodeNode(name="c", code_fn=lambda: {}, timeout=float("nan"))
        with pytest.raises(GraphDefinitionError, match=r"MapNode 'd': max_concurrency must be"):
            MapNode(name="d", inputs={"x": Each([1])}, max_concurrency="5")  # type: ignore[arg-type]
        with pytest.raises(GraphDefinitionError, match=r"CodeNode 'e': thread must be a bool"):
            CodeNode(name="e", code_fn=lambda: {}, thread="no")  # type: ignore[arg-type]


async def test_bad_run_options_are_clear_errors() -> None:
    with GraphNode(name="g") as g:
        n = CodeNode(name="n", code_fn=lambda: {}, inputs={})
        START >> n >> END
    engine = Hush(g)
    for options, message in [
        ({"max_concurrency": "5"}, "max_concurrency must be a positive int, got str '5'"),
        ({"flush_timeout": "5"}, "flush_timeout must be a number"),
        ({"run_id": 7}, "run_id must be a non-empty string"),
        ({"on_checkpoint_mismatch": "restat"}, "on_checkpoint_mismatch must be 'error' or"),
        ({"tags": "nightly"}, "tags must be a list of strings"),
        ({"progress": "yes"}, "progress must be True, False or None"),
        ({"checkpoint": 3}, "checkpoint must be a file path"),
    ]:
        with pytest.raises(TypeError, match=message):
            await engine.run(**options)


async def test_a_timed_out_sync_attempt_finishes_before_the_retry_starts() -> None:
    lock = threading.Lock()
    inside = 0
    peak = 0
    calls = 0

    def slow() -> dict[str, int]:
        nonlocal inside, peak, calls
        with lock:
            inside += 1
            calls += 1
            peak = max(peak, inside)
        time.sleep(0.3)
        with lock:
            inside -= 1
        return {"y": 1}

    with GraphNode(name="g") as g:
        n = CodeNode(
            name="n",
            code_fn=slow,
            inputs={},
            timeout=0.05,
            retry={"attempts": 3, "initial": 0, "jitter": 0},
        )
        START >> n >> END
    state = (await Hush(g).run())["$state"]
    assert state.nodes["g/n"].error.type == "NodeTimeoutError"
    assert state.nodes["g/n"].attempts == 3
    assert calls == 3
    assert peak == 1


def test_keyboard_interrupt_stops_the_run_and_keeps_finished_work(tmp_path: Path) -> None:
    script = tmp_path / "interrupt.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from hush import GraphNode, CodeNode, MapNode, Each, PARENT, START, END, Hush\n"
        "calls = []\n"
        "async def work(x):\n"
        "    calls.append(x)\n"
        "    if x == 5 and os.environ.get('BOOM'):\n"
        "        raise KeyboardInterrupt\n"
        "    return {'y': x}\n"
        "with GraphNode(name='g') as g:\n"
        "    with MapNode(name='m', inputs={'x': Each(PARENT['xs'])}, max_concurrency=1) as m:\n"
        "        n = CodeNode(name='n', code_fn=work, inputs={'x': PARENT['x']}, outputs={'y': PARENT})\n"
        "        START >> n >> END\n"
        "    m['y'] >> PARENT['ys']\n"
        "    START >> m >> END\n"
        "try:\n"
        "    r = asyncio.run(Hush(g).run({'xs': list(range(10))}, checkpoint=sys.argv[1], run_id='r'))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', calls)\n"
        "else:\n"
        "    print('done', calls, r['ys'])\n"
    )
    db = str(tmp_path / "c.db")

    def run(**env: str) -> str:
        out = subprocess.run(
            [sys.executable, str(script), db],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        return out.stdout.strip()

    assert run(BOOM="1") == "interrupted [0, 1, 2, 3, 4, 5]"
    assert run() == "done [5, 6, 7, 8, 9] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
