"""build() reports every problem at once, naming node paths, before anything runs."""

from __future__ import annotations

import pytest

from hush.core import (
    END,
    PARENT,
    START,
    CodeNode,
    GraphBuildError,
    GraphNode,
    Hush,
    MissingInputError,
)
from hush.core.nodes.iteration.base import Each


def noop() -> dict[str, int]:
    return {}


def build_problems(graph: GraphNode) -> list[str]:
    with pytest.raises(GraphBuildError) as info:
        graph.build()
    return info.value.problems


def test_cycle_is_reported() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=noop, inputs={})
        b = CodeNode(name="b", code_fn=noop, inputs={})
        START >> a >> b >> a
        b >> END
    assert any("cycle among nodes a, b" in p for p in build_problems(g))


def test_duplicate_names() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=noop, inputs={})
        CodeNode(name="a", code_fn=noop, inputs={})
        START >> a >> END
    assert build_problems(g) == ["g/a: duplicate node name 'a' in graph 'g'"]


def test_unknown_reference_to_a_node_of_another_graph() -> None:
    with GraphNode(name="other"):
        foreign = CodeNode(name="foreign", code_fn=lambda: {"v": 1}, inputs={})
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda v: {}, inputs={"v": foreign["v"]})
        START >> a >> END
    (problem,) = build_problems(g)
    assert problem.startswith(
        "g/a: input 'v' reads foreign['v'], but 'foreign' belongs to graph 'other'"
    )


def test_reading_a_sibling_that_is_not_upstream() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: {"v": 1}, inputs={})
        b = CodeNode(name="b", code_fn=lambda v: {}, inputs={"v": a["v"]})
        START >> [a, b] >> END
    assert build_problems(g) == [
        "g/b: input 'v' reads a['v'] but 'a' is not upstream of 'b' (add a >> b)"
    ]


def test_unreachable_and_dead_end_nodes() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=noop, inputs={})
        island = CodeNode(name="island", code_fn=noop, inputs={})
        dead = CodeNode(name="dead", code_fn=noop, inputs={})
        START >> a >> END
        island >> END
        a >> dead
    problems = build_problems(g)
    assert "g/island: not reachable from START (add START >> ... >> island)" in problems
    assert "g/dead: never reaches END (add dead >> ... >> END)" in problems


def test_each_outside_iteration_node() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda xs: {}, inputs={"xs": Each(PARENT["xs"])})
        START >> a >> END
    (problem,) = build_problems(g)
    assert problem.startswith("g/a: input 'xs' uses Each(...)")


def test_inputs_function_cannot_accept_and_required_params_without_input() -> None:
    def fn(a: int, b: int, c: int = 0) -> dict[str, int]:
        return {}

    with GraphNode(name="g") as g:
        n = CodeNode(name="n", code_fn=fn, inputs={"a": 1, "zzz": 2})
        START >> n >> END
    problems = build_problems(g)
    assert any(p.startswith("g/n: input 'zzz' is not a parameter of fn(") for p in problems)
    assert any(
        p.startswith("g/n: parameter 'b' of fn(") and p.endswith("has no input") for p in problems
    )


def test_all_problems_reported_at_once_including_nested_graphs() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda x: {}, inputs={})
        with GraphNode(name="sub", inputs={"k": 1}) as sub:
            inner = CodeNode(name="inner", code_fn=lambda q: {}, inputs={"q": PARENT["missing"]})
            START >> inner
        START >> a >> sub >> END
    problems = build_problems(g)
    assert any(p.startswith("g/a: parameter 'x'") for p in problems)
    assert "g/sub/inner: never reaches END (add inner >> ... >> END)" in problems
    assert any(
        p.startswith(
            "g/sub/inner: input 'q' reads PARENT['missing'] but graph 'g/sub' has no input"
        )
        for p in problems
    )
    assert len(problems) == 3


def test_hush_builds_and_raises_before_running() -> None:
    ran = []
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: ran.append(1) or {}, inputs={})
        START >> a
    with pytest.raises(GraphBuildError, match="never reaches END"):
        Hush(g)
    assert ran == []


async def test_missing_run_input_is_a_clear_error_before_running() -> None:
    ran = []
    with GraphNode(name="g") as g:
        a = CodeNode(
            name="a", code_fn=lambda text: ran.append(1) or {}, inputs={"text": PARENT["text"]}
        )
        START >> a >> END
    with pytest.raises(
        MissingInputError,
        match=r"lack 'text', read by: g/a \(input 'text' reads PARENT\['text'\]\)",
    ):
        await Hush(g).run({"other": 1})
    assert ran == []


def test_graph_cannot_change_after_build() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=noop, inputs={})
        START >> a >> END
    g.build()
    with pytest.raises(ValueError, match="already built"), g:
        CodeNode(name="late", code_fn=noop, inputs={})


def test_an_executor_that_is_not_one_is_named() -> None:
    from hush.core.errors import GraphDefinitionError
    from hush.core.nodes.iteration import MapNode
    from hush.core.refs import Each

    with pytest.raises(GraphDefinitionError, match="'m': executor must be an item executor"):
        MapNode(name="m", inputs={"x": Each([1])}, executor="ray")  # type: ignore[arg-type]


async def test_a_run_executor_that_is_not_one_is_named() -> None:
    from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
    from hush.core.errors import RunOptionError

    with GraphNode(name="g") as graph:
        node = CodeNode(name="n", code_fn=lambda: {"v": 1}, outputs={"v": PARENT})
        START >> node >> END
    with pytest.raises(RunOptionError, match="executor must be an item executor"):
        await Hush(graph).run({}, executor=object())
