"""MapNode, ForLoopNode, WhileLoopNode and run-wide caps, with gauges instead of sleeps."""

from __future__ import annotations

import random
from collections.abc import Iterator

import anyio
import pytest

from hush.core import END, PARENT, START, CodeNode, GraphBuildError, GraphNode, Hush
from hush.core.nodes.iteration import ForLoopNode, MapNode, WhileLoopNode
from hush.core.nodes.iteration.base import Each
from tests.conftest import CapProbe, Gauge


def map_graph(fn: object, cap: int, *, extra_inputs: dict[str, object] | None = None) -> GraphNode:
    inputs: dict[str, object] = {"item": Each(PARENT["items"])}
    inputs.update(extra_inputs or {})
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs=inputs, max_concurrency=cap) as m:
            node_inputs = {k: PARENT[k] for k in inputs}
            n = CodeNode(name="work", code_fn=fn, inputs=node_inputs)  # type: ignore[arg-type]
            n["result"] >> PARENT["result"]
            START >> n >> END
        m["result"] >> PARENT["results"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


async def test_map_cap_is_reached_and_never_exceeded() -> None:
    probe = CapProbe(target=7)

    async def work(item: int) -> dict[str, int]:
        await probe.visit()
        return {"result": item}

    result = await Hush(map_graph(work, cap=7)).run({"items": list(range(50))})
    assert probe.gauge.peak == 7
    assert result["results"] == list(range(50))


async def test_order_is_preserved_under_random_delays() -> None:
    rng = random.Random(7)
    delays = [rng.randint(0, 20) for _ in range(200)]

    async def work(item: int) -> dict[str, int]:
        for _ in range(delays[item]):
            await anyio.sleep(0)
        return {"result": item * 3}

    result = await Hush(map_graph(work, cap=16)).run({"items": list(range(200))})
    assert result["results"] == [i * 3 for i in range(200)]
    assert result["errors"] == [None] * 200


async def test_zip_and_broadcast() -> None:
    with GraphNode(name="g") as g:
        with MapNode(
            name="m",
            inputs={"a": Each(PARENT["xs"]), "b": Each(["p", "q", "r"]), "k": PARENT["k"]},
        ) as m:
            n = CodeNode(
                name="n",
                code_fn=lambda a, b, k: {"out": f"{a}{b}{k}"},
                inputs={"a": PARENT["a"], "b": PARENT["b"], "k": PARENT["k"]},
            )
            n["out"] >> PARENT["out"]
            START >> n >> END
        m["out"] >> PARENT["outs"]
        START >> m >> END
    result = await Hush(g).run({"xs": [1, 2, 3], "k": "!"})
    assert result["outs"] == ["1p!", "2q!", "3r!"]


async def test_unequal_lengths_are_a_clear_error() -> None:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"a": Each(PARENT["xs"]), "b": Each(PARENT["ys"])}) as m:
            n = CodeNode(
                name="n", code_fn=lambda a, b: {}, inputs={"a": PARENT["a"], "b": PARENT["b"]}
            )
            START >> n >> END
        START >> m >> END
    state = (await Hush(g).run({"xs": [1, 2], "ys": [1, 2, 3]}))["$state"]
    err = state.nodes["g/m"].error
    assert err.message == "Each inputs of MapNode 'm' have unequal lengths: 'a' has 2, 'b' has 3"


async def test_each_over_a_string_is_rejected() -> None:
    g = map_graph(lambda item: {"result": item}, cap=2)
    state = (await Hush(g).run({"items": "abc"}))["$state"]
    assert (
        "must be a list or another iterable of items, got str" in state.nodes["g/m"].error.message
    )


async def test_failure_isolation_errors_aligned_with_items() -> None:
    async def work(item: int) -> dict[str, int]:
        if item % 4 == 1:
            raise ValueError(f"bad {item}")
        return {"result": item}

    result = await Hush(map_graph(work, cap=3)).run({"items": list(range(10))})
    assert result["results"] == [0, None, 2, 3, 4, None, 6, 7, 8, None]
    errs = result["errors"]
    assert [i for i, e in enumerate(errs) if e is not None] == [1, 5, 9]
    assert errs[5].message == "bad 5" and errs[5].node == "g/m[5]/work"
    state = result["$state"]
    assert state.nodes["g/m"].status == "ok"
    counters = state.iterations["g/m"]
    assert (counters.total, counters.done, counters.failed, counters.running) == (10, 10, 3, 0)


async def test_map_without_each_is_a_build_error() -> None:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": PARENT["x"]}) as m:
            n = CodeNode(name="n", code_fn=lambda x: {}, inputs={"x": PARENT["x"]})
            START >> n >> END
        START >> m >> END
    with pytest.raises(GraphBuildError, match=r"g/m: has no Each\(\.\.\.\) input"):
        g.build()


async def test_for_loop_never_overlaps_and_keeps_order() -> None:
    gauge = Gauge()
    seen: list[int] = []

    async def work(item: int) -> dict[str, int]:
        async with gauge.hold():
            seen.append(item)
            await anyio.sleep(0)
            await anyio.sleep(0)
        return {"result": item}

    with GraphNode(name="g") as g:
        with ForLoopNode(name="loop", inputs={"item": Each(PARENT["items"])}) as loop:
            n = CodeNode(name="n", code_fn=work, inputs={"item": PARENT["item"]})
            n["result"] >> PARENT["result"]
            START >> n >> END
        loop["result"] >> PARENT["results"]
        START >> loop >> END
    result = await Hush(g).run({"items": list(range(20))})
    assert gauge.peak == 1
    assert seen == list(range(20))
    assert result["results"] == list(range(20))


async def test_while_loop_feeds_outputs_back_and_stops() -> None:
    with GraphNode(name="g") as g:
        with WhileLoopNode(
            name="loop",
            condition="count < 5",
            inputs={"count": PARENT["start"], "acc": []},
            max_iterations=10,
        ) as loop:
            step = CodeNode(
                name="step",
                code_fn=lambda count, acc: {"count": count + 1, "acc": [*acc, count]},
                inputs={"count": PARENT["count"], "acc": PARENT["acc"]},
                outputs={"*": PARENT},
            )
            START >> step >> END
        loop["acc"] >> PARENT["acc"]
        loop["iterations"] >> PARENT["iterations"]
        START >> loop >> END
    result = await Hush(g).run({"start": 2})
    assert result["acc"] == [2, 3, 4]
    assert result["iterations"] == 3


async def test_while_loop_past_max_iterations_is_a_clear_error() -> None:
    with GraphNode(name="g") as g:
        with WhileLoopNode(
            name="spin", condition=lambda n: n >= 0, inputs={"n": 0}, max_iterations=4
        ) as loop:
            step = CodeNode(
                name="step",
                code_fn=lambda n: {"n": n + 1},
                inputs={"n": PARENT["n"]},
                outputs={"n": PARENT},
            )
            START >> step >> END
        START >> loop >> END
    state = (await Hush(g).run())["$state"]
    err = state.nodes["g/spin"].error
    assert err.type == "MaxIterationsError"
    assert "still true after max_iterations=4" in err.message
    assert state.iterations["g/spin"].done == 4


def test_while_condition_with_call_or_attribute_is_rejected() -> None:
    from hush.core import GraphDefinitionError

    with GraphNode(name="g"):
        with pytest.raises(GraphDefinitionError, match="uses Call, which is not allowed"):
            WhileLoopNode(name="w", condition="len(x) < 3", inputs={"x": []})
        with pytest.raises(GraphDefinitionError, match="uses Attribute"):
            WhileLoopNode(name="w2", condition="x.__class__", inputs={"x": []})


def nested_graph(outer_cap: int, inner_cap: int, leaf: object) -> GraphNode:
    with GraphNode(name="g") as g:
        with MapNode(
            name="outer", inputs={"row": Each(PARENT["rows"])}, max_concurrency=outer_cap
        ) as outer:
            with MapNode(
                name="inner", inputs={"x": Each(PARENT["row"])}, max_concurrency=inner_cap
            ) as inner:
                n = CodeNode(name="leaf", code_fn=leaf, inputs={"x": PARENT["x"]})  # type: ignore[arg-type]
                n["y"] >> PARENT["y"]
                START >> n >> END
            inner["y"] >> PARENT["ys"]
            START >> inner >> END
        outer["ys"] >> PARENT["table"]
        START >> outer >> END
    return g


async def test_nested_maps_reach_product_of_caps() -> None:
    probe = CapProbe(target=50)

    async def leaf(x: int) -> dict[str, int]:
        await probe.visit()
        return {"y": x + 1}

    rows = [[r * 10 + c for c in range(10)] for r in range(8)]
    result = await Hush(nested_graph(5, 10, leaf)).run({"rows": rows})
    assert probe.gauge.peak == 50
    assert result["table"] == [[v + 1 for v in row] for row in rows]


async def test_run_wide_cap_bounds_leaves_across_nesting() -> None:
    probe = CapProbe(target=7)

    async def leaf(x: int) -> dict[str, int]:
        await probe.visit()
        return {"y": x}

    rows = [[r * 10 + c for c in range(10)] for r in range(8)]
    result = await Hush(nested_graph(5, 10, leaf)).run({"rows": rows}, max_concurrency=7)
    assert probe.gauge.peak == 7
    assert result["table"] == rows


async def test_run_cap_smaller_than_map_caps_with_inner_cap_one_never_deadlocks() -> None:
    async def leaf(x: int) -> dict[str, int]:
        await anyio.sleep(0)
        return {"y": x}

    rows = [list(range(5)) for _ in range(6)]
    with anyio.fail_after(10):
        result = await Hush(nested_graph(6, 1, leaf)).run({"rows": rows}, max_concurrency=1)
    assert result["table"] == rows


async def test_items_are_pulled_lazily_in_flight_bounded_by_cap() -> None:
    pulled = 0
    finished = 0
    max_ahead = 0

    def items() -> Iterator[int]:
        nonlocal pulled, max_ahead
        for i in range(500):
            pulled += 1
            max_ahead = max(max_ahead, pulled - finished)
            yield i

    async def work(item: int) -> dict[str, int]:
        nonlocal finished
        await anyio.sleep(0)
        finished += 1
        return {"result": item}

    result = await Hush(map_graph(work, cap=8)).run({"items": items()})
    assert result["results"] == list(range(500))
    assert max_ahead <= 8


async def test_map_over_100000_items_completes() -> None:
    async def work(item: int) -> dict[str, int]:
        return {"result": item}

    result = await Hush(map_graph(work, cap=100)).run({"items": range(100_000)})
    assert len(result["results"]) == 100_000
    assert result["results"][-1] == 99_999
    assert result["$state"].iterations["g/m"].done == 100_000
