"""The engine's edges: a root timeout, empty ``"*"`` maps, what a run opens before it
starts, misspelled inputs, absurd options and conditions, and a slow ``stream()`` reader."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from hush.checkpoint import CheckpointMismatchError
from hush.checkpoint.reader import list_runs
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.call import NodeCall
from hush.core.conditions import MAX_DEPTH, MAX_REPEAT
from hush.core.errors import (
    GraphBuildError,
    GraphDefinitionError,
    MissingInputError,
    RunOptionError,
)
from hush.core.events import Event
from hush.core.nodes.base import BaseNode
from hush.core.nodes.flow.branch_node import BranchNode
from hush.core.nodes.iteration import MapNode, WhileLoopNode
from hush.core.nodes.iteration.base import Each
from hush.observability import MemoryTracer


class CountingTracer(MemoryTracer):
    """A memory tracer that also counts the runs it was told about (``run_start``)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[Event] = []

    def subscribe(self, start: Event) -> Any:
        self.starts.append(start)
        return super().subscribe(start)


# 1. A timeout on the root graph


async def test_a_root_graph_timeout_cancels_its_nodes_and_is_the_run_error() -> None:
    cancelled = asyncio.Event()

    async def slow() -> dict[str, int]:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"late": 1}

    async def quick() -> dict[str, int]:
        return {"early": 1}

    with GraphNode(name="g", timeout=0.05) as g:
        a = CodeNode(name="quick", code_fn=quick, outputs={"early": PARENT})
        b = CodeNode(name="slow", code_fn=slow, outputs={"late": PARENT})
        START >> a >> b >> END
    tracer = MemoryTracer()
    result = await Hush(g).run(tracer=tracer)
    state = result["$state"]
    assert cancelled.is_set()
    assert state.status == "error"
    assert [(e.node, e.type, e.message) for e in state.errors] == [
        ("g", "NodeTimeoutError", "timed out after 0.05s")
    ]
    assert state.unhandled == state.errors
    assert result["early"] == 1 and "late" not in result
    assert [r["status"] for r in tracer.find("slow")] == ["cancelled"]
    assert [r["status"] for r in tracer.find("g", kind="run")] == ["error"]


async def test_a_run_cut_by_its_timeout_resumes_with_a_longer_one(tmp_path: Path) -> None:
    calls = {"quick": 0, "slow": 0}

    def graph(timeout: float) -> GraphNode:
        async def quick() -> dict[str, int]:
            calls["quick"] += 1
            return {"early": 1}

        async def slow() -> dict[str, int]:
            calls["slow"] += 1
            await asyncio.sleep(0.2)
            return {"late": 2}

        with GraphNode(name="g", timeout=timeout) as g:
            a = CodeNode(name="quick", code_fn=quick, outputs={"early": PARENT})
            b = CodeNode(name="slow", code_fn=slow, outputs={"late": PARENT})
            START >> a >> b >> END
        return g

    ck = tmp_path / "runs.db"
    cut = await Hush(graph(0.05)).run(checkpoint=ck, run_id="r")
    assert cut["$state"].errors[0].type == "NodeTimeoutError"
    done = await Hush(graph(30)).run(checkpoint=ck, run_id="r")
    assert done["$state"].status == "ok"
    assert (done["early"], done["late"]) == (1, 2)
    assert done["$state"].nodes["g/quick"].resumed
    assert calls == {"quick": 1, "slow": 2}


def test_a_root_graph_retry_is_refused_with_a_message() -> None:
    with GraphNode(name="g", retry=3) as g:
        START >> CodeNode(name="a", code_fn=lambda: {}) >> END
    with pytest.raises(GraphBuildError, match="g: retry= on the root graph cannot be applied"):
        Hush(g)


# 2. A map whose body and whose map both write "*"


def star_map_graph() -> GraphNode:
    def body(item: int) -> dict[str, Any]:
        if item < 0:
            raise ValueError("negative")
        return {"answer": item * 2, "label": f"#{item}"}

    def after(answer: list[Any], label: list[Any]) -> dict[str, Any]:
        return {"seen": (list(answer), list(label))}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, outputs={"*": PARENT}) as m:
            b = CodeNode(
                name="b", code_fn=body, inputs={"item": PARENT["item"]}, outputs={"*": PARENT}
            )
            START >> b >> END
        d = CodeNode(
            name="after",
            code_fn=after,
            inputs={"answer": PARENT["answer"], "label": PARENT["label"]},
            outputs={"seen": PARENT},
        )
        START >> m >> d >> END
    return g


@pytest.mark.parametrize(
    ("items", "answers", "labels"),
    [
        ([], [], []),
        ([-1, -2], [None, None], [None, None]),
        ([1, -1], [2, None], ["#1", None]),
    ],
    ids=["empty", "all-failed", "one-failed"],
)
async def test_a_star_map_over_a_star_body_gives_lists_downstream(
    items: list[int], answers: list[Any], labels: list[Any]
) -> None:
    result = await Hush(star_map_graph()).run({"items": items})
    assert result["$state"].nodes["g/after"].status == "ok"
    assert result["seen"] == (answers, labels)
    assert result["answer"] == answers and result["label"] == labels


async def test_a_star_map_leaves_run_inputs_read_after_it_alone() -> None:
    def after(label: str) -> dict[str, Any]:
        return {"seen": label}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, outputs={"*": PARENT}) as m:
            b = CodeNode(
                name="b",
                code_fn=lambda item: {"answer": item},
                inputs={"item": PARENT["item"]},
                outputs={"*": PARENT},
            )
            START >> b >> END
        d = CodeNode(
            name="after", code_fn=after, inputs={"label": PARENT["label"]}, outputs={"*": PARENT}
        )
        START >> m >> d >> END
    result = await Hush(g).run({"items": [], "label": "given"})
    assert result["seen"] == "given"


# 3. Nothing is opened or announced before the last option check


async def test_an_unusable_cache_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    with GraphNode(name="g") as g:
        START >> CodeNode(name="a", code_fn=lambda: {"x": 1}, outputs={"x": PARENT}) >> END
    tracer = CountingTracer()
    checkpoint = tmp_path / "runs.db"
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(RunOptionError, match="cache: cannot open"):
        await Hush(g).run(
            tracer=tracer, checkpoint=checkpoint, run_id="r1", cache=tmp_path / "a-file" / "c.db"
        )
    await tracer.flush()
    assert tracer.starts == [] and tracer.records == []
    assert not checkpoint.exists() or [r.status for r in list_runs(checkpoint)] == []
    result = await Hush(g).run(tracer=tracer, checkpoint=checkpoint, run_id="r1")
    assert result["x"] == 1
    assert [r.status for r in list_runs(checkpoint)] == ["ok"]
    assert len(tracer.starts) == 1


async def test_a_checkpoint_that_cannot_open_leaves_no_run_announced(tmp_path: Path) -> None:
    def graph(value: int) -> GraphNode:
        with GraphNode(name="g") as g:
            n = CodeNode(name="a", code_fn=lambda: {"x": value}, outputs={"x": PARENT})
            START >> n >> END
        return g

    checkpoint, cache = tmp_path / "runs.db", tmp_path / "cache.db"
    await Hush(graph(1)).run(checkpoint=checkpoint, run_id="r1", cache=cache)
    tracer = CountingTracer()
    with GraphNode(name="g") as changed:
        n = CodeNode(name="b", code_fn=lambda: {"x": 2}, outputs={"x": PARENT})
        START >> n >> END
    with pytest.raises(CheckpointMismatchError):
        await Hush(changed).run(tracer=tracer, checkpoint=checkpoint, run_id="r1", cache=cache)
    assert tracer.starts == []
    assert open_files(cache) == 0, "the cache the run opened was not closed"
    assert [r.status for r in list_runs(checkpoint)] == ["ok"]
    again = await Hush(graph(1)).run(checkpoint=checkpoint, run_id="r1", cache=cache)
    assert again["x"] == 1 and again["$state"].nodes["g/a"].resumed


def open_files(path: Path) -> int:
    """How many descriptors of this process have ``path`` open."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc to count open files")
    count = 0
    for fd in fds.iterdir():
        try:
            count += Path(os.readlink(fd)) == path
        except OSError:
            continue
    return count


async def test_run_end_follows_run_start_when_the_run_is_cancelled() -> None:
    started = asyncio.Event()

    async def hang() -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        return {}

    with GraphNode(name="g") as g:
        START >> CodeNode(name="hang", code_fn=hang) >> END
    tracer = CountingTracer()
    task = asyncio.create_task(Hush(g).run(tracer=tracer))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await tracer.flush()
    assert len(tracer.starts) == 1
    assert [r["status"] for r in tracer.find("g", kind="run")] == ["cancelled"]


# 4. A misspelled run input


def query_graph() -> GraphNode:
    with GraphNode(name="g") as g:
        n = CodeNode(
            name="ask",
            code_fn=lambda query: {"a": query},
            inputs={"query": PARENT["query"]},
            outputs={"a": PARENT},
        )
        START >> n >> END
    return g


async def test_a_misspelled_input_names_the_missing_and_the_unexpected_key() -> None:
    with pytest.raises(MissingInputError) as caught:
        await Hush(query_graph()).run({"qeury": "why?", "zzz": 1})
    message = str(caught.value)
    assert "lack 'query'" in message
    assert "got unexpected 'qeury' (did you mean 'query'?), 'zzz'" in message


async def test_extra_inputs_alone_are_accepted() -> None:
    result = await Hush(query_graph()).run({"query": "why?", "extra": 1})
    assert result["a"] == "why?"


# 5. Absurd caps, options and conditions


async def test_a_huge_map_cap_starts_no_more_workers_than_items() -> None:
    peak = 0

    async def work(item: int) -> dict[str, int]:
        nonlocal peak
        peak = max(peak, len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        return {"r": item}

    def items() -> Iterator[int]:
        yield from range(10)

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=10**6) as m:
            n = CodeNode(name="n", code_fn=work, inputs={"item": PARENT["item"]})
            n["r"] >> PARENT["r"]
            START >> n >> END
        m["r"] >> PARENT["r"]
        START >> m >> END
    baseline = len(asyncio.all_tasks())
    result = await Hush(g).run({"items": items()})
    assert result["r"] == list(range(10))
    assert peak - baseline <= 10


async def test_workers_start_as_items_arrive_up_to_the_cap() -> None:
    running = 0
    peak = 0
    release = asyncio.Event()

    async def work(item: int) -> dict[str, int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 4:
            release.set()
        await release.wait()
        running -= 1
        return {"r": item}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=4) as m:
            n = CodeNode(name="n", code_fn=work, inputs={"item": PARENT["item"]})
            n["r"] >> PARENT["r"]
            START >> n >> END
        m["r"] >> PARENT["r"]
        START >> m >> END
    result = await Hush(g).run({"items": iter(range(50))})
    assert result["r"] == list(range(50)) and peak == 4


@pytest.mark.parametrize(
    "condition",
    [
        "x" + "+x" * 999,
        "-" * 80 + "x > 1",
        "not " * 80 + "x",
        "'a' * 3000000000 == s",
        "3000000000 * 'a' == s",
        "[0] * 10 == s",
        "'%999999999d' % x == s",
    ],
    ids=[
        "long-sum",
        "deep-minus",
        "deep-not",
        "repeat-str",
        "repeat-str-right",
        "repeat-list",
        "format",
    ],
)
@pytest.mark.parametrize("kind", ["branch", "while"])
def test_an_absurd_condition_is_refused_naming_the_node(condition: str, kind: str) -> None:
    with pytest.raises(GraphDefinitionError) as caught, GraphNode(name="g"):
        if kind == "branch":
            BranchNode(
                name="route",
                cases={condition: "a"},
                default="b",
                inputs={"x": PARENT["x"], "s": PARENT["s"]},
            )
        else:
            WhileLoopNode(
                name="route", condition=condition, inputs={"x": 0, "s": ""}, max_iterations=2
            )
    message = str(caught.value)
    assert "'route'" in message
    assert any(word in message for word in ("nested", "repeats", "formats")), message


async def test_a_condition_may_not_repeat_an_input_beyond_the_bound() -> None:
    def graph() -> GraphNode:
        with GraphNode(name="g") as g:
            with WhileLoopNode(
                name="loop",
                condition="s * n != ''",
                inputs={"s": PARENT["s"], "n": PARENT["n"]},
                max_iterations=1,
            ) as loop:
                START >> CodeNode(name="step", code_fn=lambda: {}) >> END
            loop["error"] >> PARENT["error"]
            START >> loop >> END
        return g

    result = await Hush(graph()).run({"s": "ab", "n": MAX_REPEAT})
    assert "repeats a str of 2" in str(result["$state"].errors[0].message)
    fine = await Hush(graph()).run({"s": "ab", "n": 3})
    assert fine["$state"].errors[0].type == "MaxIterationsError"


def test_ordinary_arithmetic_in_conditions_still_works() -> None:
    from hush.core.conditions import Condition

    assert Condition("x * 2 > 3 and n % 2 == 0")({"x": 2, "n": 4})
    assert Condition("s * 2 == 'abab'")({"s": "ab"})
    assert Condition(" + ".join(["x"] * (MAX_DEPTH - 4)) + " > 0")({"x": 1})


NONSENSE: list[Any] = [-1, 0, math.inf, math.nan, True, 1.5, "4", None.__class__]


@pytest.mark.parametrize("value", NONSENSE, ids=repr)
async def test_a_nonsense_run_max_concurrency_is_named(value: Any) -> None:
    with pytest.raises(RunOptionError, match="max_concurrency must be a positive int"):
        await Hush(query_graph()).run({"query": "q"}, max_concurrency=value)


@pytest.mark.parametrize("value", NONSENSE, ids=repr)
def test_a_nonsense_map_cap_is_named_with_its_node(value: Any) -> None:
    with (
        pytest.raises(GraphDefinitionError, match="MapNode 'm': max_concurrency"),
        GraphNode(name="g"),
    ):
        MapNode(name="m", inputs={"x": Each([1])}, max_concurrency=value)


@pytest.mark.parametrize("value", [-1, 0, math.inf, math.nan, True, "4"], ids=repr)
def test_a_nonsense_timeout_is_named_with_its_node(value: Any) -> None:
    with pytest.raises(GraphDefinitionError, match="CodeNode 'c': timeout"), GraphNode(name="g"):
        CodeNode(name="c", code_fn=lambda: {}, timeout=value)


@pytest.mark.parametrize("value", [0, -3, True, 2.5, "9"], ids=repr)
async def test_a_nonsense_stream_buffer_is_named(value: Any) -> None:
    with pytest.raises(RunOptionError, match="buffer must be a positive int"):
        async for _ in Hush(query_graph()).stream({"query": "q"}, buffer=value):
            pass


# 6. A slow stream() consumer


class Talker(BaseNode):
    """Streams ``tokens`` token events, as an LLM node does, then returns."""

    def __init__(self, name: str, tokens: int, **kwargs: Any) -> None:
        self.tokens = tokens
        super().__init__(name, **kwargs)

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        for i in range(self.tokens):
            call.token(f"t{i} ")
            await asyncio.sleep(0)
        return {"said": inputs["item"]}


def talking_map(items: int, tokens: int) -> GraphNode:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=4) as m:
            t = Talker("talk", tokens, inputs={"item": PARENT["item"]})
            t["said"] >> PARENT["said"]
            START >> t >> END
        m["said"] >> PARENT["said"]
        START >> m >> END
    assert items > 0
    return g


async def _idle(turns: int) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_consumer_that_stops_reading_holds_the_run_back() -> None:
    items, buffer = 300, 20
    engine = Hush(talking_map(items, tokens=0))
    received: list[Event] = []
    emitted = 0

    class Emitted(MemoryTracer):
        def subscribe(self, start: Event) -> Any:
            inner = super().subscribe(start)

            def count(event: Event) -> None:
                nonlocal emitted
                emitted += 1
                inner(event)

            return count

    stream = engine.stream({"items": list(range(items))}, buffer=buffer, tracer=Emitted())
    async with aclosing(stream) as events:
        async for event in events:
            received.append(event)
            if len(received) == 1:
                await _idle(3000)
                waiting = emitted - len(received)
                assert waiting <= buffer + 3 * 4, waiting
        assert received[-1].kind == "run_end"
    ends = [e for e in received if e.kind == "node_end" and e.name == "talk"]
    assert len(ends) == items
    assert received[-1].result is not None
    assert received[-1].result["said"] == list(range(items))
    assert received[-1].result["$state"].dropped_tokens == 0


async def test_token_events_beyond_the_buffer_are_dropped_and_counted() -> None:
    items, tokens, buffer = 20, 50, 30
    engine = Hush(talking_map(items, tokens=tokens))
    received: list[Event] = []
    async with aclosing(engine.stream({"items": list(range(items))}, buffer=buffer)) as events:
        async for event in events:
            received.append(event)
            if len(received) == 1:
                await _idle(3000)
    end = received[-1]
    assert end.kind == "run_end" and end.result is not None
    dropped = end.result["$state"].dropped_tokens
    got = sum(1 for e in received if e.kind == "token")
    assert dropped > 0
    assert got + dropped == items * tokens
    assert sum(1 for e in received if e.kind == "node_end" and e.name == "talk") == items
    assert end.result["said"] == list(range(items))
