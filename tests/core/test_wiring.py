"""Build-time wiring checks, and iteration edge cases a user will write."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from hush import (
    END,
    PARENT,
    START,
    BranchNode,
    CodeNode,
    Each,
    GraphBuildError,
    GraphNode,
    Hush,
    MapNode,
    WhileLoopNode,
)
from hush.core import GraphDefinitionError


def noop(**_: Any) -> dict[str, Any]:
    return {"v": 1}


def test_two_parallel_writers_of_one_key_fail_to_build() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=noop, inputs={}, outputs={"v": PARENT["result"]})
        b = CodeNode(name="b", code_fn=noop, inputs={}, outputs={"v": PARENT["result"]})
        START >> [a, b] >> END
    with pytest.raises(GraphBuildError) as info:
        g.build()
    (problem,) = info.value.problems
    assert problem.startswith("g/b: writes PARENT['result'] like 'a', and the two can run at")


def test_ordered_writers_and_writers_in_branch_arms_build() -> None:
    with GraphNode(name="g") as g:
        first = CodeNode(name="first", code_fn=noop, inputs={}, outputs={"v": PARENT["r"]})
        br = BranchNode(name="br", cases={"x > 0": "pos"}, default="neg", inputs={"x": PARENT["x"]})
        pos = CodeNode(name="pos", code_fn=noop, inputs={})
        pos2 = CodeNode(name="pos2", code_fn=noop, inputs={}, outputs={"v": PARENT["r"]})
        neg = CodeNode(name="neg", code_fn=noop, inputs={}, outputs={"v": PARENT["r"]})
        START >> first >> br >> [pos, neg]
        pos >> pos2
        [pos2, neg] >> ~END
    g.build()


def test_a_long_chain_of_writers_of_one_key_builds() -> None:
    with GraphNode(name="g") as g:
        prev = CodeNode(name="n0", code_fn=noop, inputs={}, outputs={"v": PARENT["text"]})
        START >> prev
        for i in range(1, 2000):
            node = CodeNode(name=f"n{i}", code_fn=noop, inputs={}, outputs={"v": PARENT["text"]})
            prev >> node
            prev = node
        prev >> END
    g.build()


def test_map_output_no_body_node_writes_fails_to_build() -> None:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}) as m:
            n = CodeNode(name="n", code_fn=noop, inputs={}, outputs={"v": PARENT["answer"]})
            START >> n >> END
        m["answr"] >> PARENT["answers"]
        reader = CodeNode(name="r", code_fn=noop, inputs={"a": m["anwser"]})
        START >> m >> reader >> END
    with pytest.raises(GraphBuildError) as info:
        g.build()
    assert info.value.problems == [
        "g/m: output 'answr' is written to PARENT['answers'] but no node inside 'm' writes that "
        "key to PARENT (they write: answer)",
        "g/r: input 'a' reads m['anwser'] but no node inside 'm' writes that key to PARENT "
        "(they write: answer)",
    ]


def test_bare_parent_as_an_input_fails_to_build() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=noop, inputs={"state": PARENT})
        b = CodeNode(name="b", code_fn=noop, inputs={"args": {"all": [PARENT]}})
        START >> a >> b >> END
    with pytest.raises(GraphBuildError) as info:
        g.build()
    assert info.value.problems == [
        "g/a: input 'state' is PARENT itself; read one key of it, such as PARENT['key']",
        "g/b: input 'args' holds PARENT itself",
    ]


def test_hush_of_a_map_or_an_inner_graph_is_a_clear_error() -> None:
    with MapNode(name="m", inputs={"x": Each([1, 2])}) as m:
        n = CodeNode(name="n", code_fn=noop, inputs={})
        START >> n >> END
    with pytest.raises(TypeError, match="not the MapNode 'm': put it inside"):
        Hush(m)
    with GraphNode(name="g") as g, GraphNode(name="inner") as inner:
        k = CodeNode(name="k", code_fn=noop, inputs={})
        START >> k >> END
    assert g.nodes["inner"] is inner
    with pytest.raises(TypeError, match="'inner' is a node of graph 'g'; run the root graph"):
        Hush(inner)


def test_a_pathological_condition_names_the_node() -> None:
    with (
        GraphNode(name="g"),
        pytest.raises(GraphDefinitionError, match=r"BranchNode 'br': condition 'not not"),
    ):
        BranchNode(name="br", cases={"not " * 10000 + "x": "a"}, inputs={"x": 1})
    with (
        GraphNode(name="g2"),
        pytest.raises(GraphDefinitionError, match=r"nested too deeply|too many nested parentheses"),
    ):
        BranchNode(name="br", cases={"(" * 300 + "x" + ")" * 300: "a"}, inputs={"x": 1})


class LyingLength:
    """Claims ten items and yields three."""

    def __len__(self) -> int:
        return 10

    def __iter__(self) -> Iterator[int]:
        return iter([1, 2, 3])


async def test_an_iterable_whose_len_lies_is_not_padded() -> None:
    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}) as m:
            n = CodeNode(name="n", code_fn=lambda x: {"y": x}, inputs={"x": PARENT["x"]})
            n["y"] >> PARENT["y"]
            START >> n >> END
        m["y"] >> PARENT["ys"]
        START >> m >> END
    result = await Hush(g).run({"xs": LyingLength()})
    assert result["ys"] == [1, 2, 3]
    assert result["$state"].iterations["g/m"].total == 3


def star_map() -> GraphNode:
    async def work(x: int) -> dict[str, int]:
        if x < 0:
            raise ValueError("negative")
        return {"double": 2 * x, "square": x * x}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}) as m:
            n = CodeNode(name="n", code_fn=work, inputs={"x": PARENT["x"]}, outputs={"*": PARENT})
            START >> n >> END
        m["double"] >> PARENT["doubles"]
        total = CodeNode(
            name="total",
            code_fn=lambda squares: {"sum": sum(s or 0 for s in squares)},
            inputs={"squares": m["square"]},
            outputs={"sum": PARENT},
        )
        START >> m >> total >> END
    return g


@pytest.mark.parametrize(
    ("xs", "doubles", "total"),
    [([], [], 0), ([-1, -2], [None, None], 0), ([1, -1, 3], [2, None, 6], 10)],
)
async def test_a_star_map_returns_lists_even_when_no_item_succeeds(
    xs: list[int], doubles: list[Any], total: int
) -> None:
    result = await Hush(star_map()).run({"xs": xs})
    assert result["doubles"] == doubles
    assert result["sum"] == total
    assert result["$state"].nodes["g/m"].status == "ok"
    assert len(result["$state"].nodes["g/m"].outputs["error"]) == len(xs)


def test_while_loop_and_graph_outputs_are_checked_at_build() -> None:
    with GraphNode(name="g") as g:
        with WhileLoopNode(name="loop", condition="n < 3", inputs={"n": PARENT["n"]}) as loop:
            step = CodeNode(name="step", code_fn=lambda n: {"n": n + 1}, inputs={"n": PARENT["n"]})
            step["n"] >> PARENT["n"]
            START >> step >> END
        loop["iterations"] >> PARENT["iterations"]
        loop["n"] >> PARENT["n"]
        loop["count"] >> PARENT["count"]
        START >> loop >> END
    with pytest.raises(GraphBuildError, match="output 'count' is written to PARENT"):
        g.build()


BUILD_PROBE = """
import json, sys, time, tracemalloc
from hush.core import END, PARENT, START, CodeNode, GraphNode

def inc(v):
    return {"v": v + 1}

n = int(sys.argv[1])
tracemalloc.start()
t = time.perf_counter()
with GraphNode(name="chain") as g:
    prev = CodeNode(name="n0", code_fn=inc, inputs={"v": PARENT["v"]})
    START >> prev
    for i in range(1, n):
        node = CodeNode(name=f"n{i}", code_fn=inc, inputs={"v": prev["v"]})
        prev >> node
        prev = node
    prev["v"] >> PARENT["v"]
    prev >> END
g.build()
elapsed = time.perf_counter() - t
print(json.dumps({"peak": tracemalloc.get_traced_memory()[1], "seconds": elapsed}))
"""


def test_a_4000_node_chain_builds_in_linear_memory() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BUILD_PROBE, "4000"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    peak = json.loads(out.stdout)["peak"]
    assert peak < 80 * 2**20, f"building a 4,000-node chain peaked at {peak / 2**20:.0f} MB"
