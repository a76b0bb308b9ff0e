"""BranchNode, safe conditions, skip propagation and soft joins."""

from __future__ import annotations

import pytest

from hush.core import (
    END,
    PARENT,
    START,
    BranchNode,
    CodeNode,
    GraphBuildError,
    GraphDefinitionError,
    GraphNode,
    Hush,
)
from hush.core.conditions import Condition, ConditionError
from hush.core.nodes.flow.branch_node import BranchNode as BranchFromModule


def grading_graph() -> GraphNode:
    with GraphNode(name="grade") as g:
        branch = BranchNode(
            name="route",
            cases={"score >= 90": "excellent", "score >= 50 and not late": "pass"},
            default="fail",
            inputs={"score": PARENT["score"], "late": PARENT["late"]},
        )
        excellent = CodeNode(name="excellent", code_fn=lambda: {"grade": "A"}, inputs={})
        passed = CodeNode(name="pass", code_fn=lambda: {"grade": "C"}, inputs={})
        fail = CodeNode(name="fail", code_fn=lambda: {"grade": "F"}, inputs={})
        after_pass = CodeNode(
            name="after_pass", code_fn=lambda g: {"note": g + "!"}, inputs={"g": passed["grade"]}
        )
        merge = CodeNode(
            name="merge",
            code_fn=lambda a, b, c: {"grade": a or b or c},
            inputs={"a": excellent["grade"], "b": after_pass["note"], "c": fail["grade"]},
            outputs={"grade": PARENT},
        )
        START >> branch >> [excellent, passed, fail]
        passed >> after_pass
        [excellent, after_pass, fail] >> ~merge
        merge >> END
    return g


@pytest.mark.parametrize(
    ("score", "late", "grade", "ran"),
    [
        (95, False, "A", "excellent"),
        (60, False, "C!", "pass"),
        (60, True, "F", "fail"),
        (10, False, "F", "fail"),
    ],
)
async def test_exactly_one_target_runs_and_skip_flows_to_soft_join(
    score: int, late: bool, grade: str, ran: str
) -> None:
    result = await Hush(grading_graph()).run({"score": score, "late": late})
    state = result["$state"]
    assert result["grade"] == grade
    targets = ["excellent", "pass", "fail"]
    assert [state.nodes[f"grade/{t}"].status for t in targets] == [
        "ok" if t == ran else "skipped" for t in targets
    ]
    assert state.nodes["grade/after_pass"].status == ("ok" if ran == "pass" else "skipped")
    assert state.nodes["grade/merge"].status == "ok"
    assert state.nodes["grade/route"].outputs["target"] == ran


async def test_soft_join_to_end_and_callable_cases() -> None:
    with GraphNode(name="g") as g:
        branch = BranchFromModule(
            name="b",
            cases={lambda kind: kind == "x": "x_path"},
            default="y_path",
            inputs={"kind": PARENT["kind"]},
        )
        x = CodeNode(name="x_path", code_fn=lambda: {"v": "x"}, inputs={}, outputs={"v": PARENT})
        y = CodeNode(name="y_path", code_fn=lambda: {"v": "y"}, inputs={}, outputs={"v": PARENT})
        START >> branch >> [x, y]
        [x, y] >> ~END
    engine = Hush(g)
    assert (await engine.run({"kind": "x"}))["v"] == "x"
    assert (await engine.run({"kind": "z"}))["v"] == "y"


async def test_hard_join_after_branch_is_skipped() -> None:
    with GraphNode(name="g") as g:
        branch = BranchNode(
            name="b", cases={"n > 0": "pos"}, default="neg", inputs={"n": PARENT["n"]}
        )
        pos = CodeNode(name="pos", code_fn=lambda: {}, inputs={})
        neg = CodeNode(name="neg", code_fn=lambda: {}, inputs={})
        join = CodeNode(name="join", code_fn=lambda: {}, inputs={})
        START >> branch >> [pos, neg] >> join >> END
    state = (await Hush(g).run({"n": 1}))["$state"]
    assert state.nodes["g/join"].status == "skipped"


async def test_no_match_without_default_is_the_branch_error() -> None:
    with GraphNode(name="g") as g:
        branch = BranchNode(name="b", cases={"n > 0": "pos"}, inputs={"n": PARENT["n"]})
        pos = CodeNode(name="pos", code_fn=lambda: {}, inputs={})
        START >> branch >> pos >> END
    state = (await Hush(g).run({"n": -1}))["$state"]
    assert state.nodes["g/b"].error.type == "NoBranchMatchedError"
    assert state.nodes["g/pos"].status == "skipped"


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("__import__('os').system('x')", "Call"),
        ("score.real > 1", "Attribute"),
        ("items[0] > 1", "Subscript"),
        ("(lambda: 1)()", "Call"),
        ("[x for x in y]", "ListComp"),
        ("2 ** 99999", "Pow"),
        ("score >", "not a valid expression"),
    ],
)
def test_unsafe_conditions_rejected(expr: str, why: str) -> None:
    with pytest.raises(ConditionError, match=why):
        Condition(expr)


def test_condition_features() -> None:
    cond = Condition("label in ['a', 'b'] and (n + 1) * 2 > 4 or flag is None")
    assert cond({"label": "a", "n": 2, "flag": 1})
    assert not cond({"label": "c", "n": 2, "flag": 1})
    assert cond({"label": "c", "n": 0, "flag": None})
    assert cond.names == {"label", "n", "flag"}


def test_branch_build_errors() -> None:
    with GraphNode(name="g") as g:
        branch = BranchNode(
            name="b", cases={"score > 1": "here", "other > 2": "ghost"}, inputs={"score": 1}
        )
        here = CodeNode(name="here", code_fn=lambda: {}, inputs={})
        elsewhere = CodeNode(name="elsewhere", code_fn=lambda: {}, inputs={})
        START >> branch >> elsewhere >> END
        START >> here >> END
    with pytest.raises(GraphBuildError) as info:
        g.build()
    problems = info.value.problems
    assert "g/b: condition other > 2 uses ['other'], which are not inputs" in problems
    assert "g/b: routes to 'ghost', which is not a node of 'g'" in problems
    assert "g/b: routes to 'here' but has no edge to it (add b >> here)" in problems
    with (
        GraphNode(name="h"),
        pytest.raises(GraphDefinitionError, match="BranchNode 'bad': condition"),
    ):
        BranchNode(name="bad", cases={"open('x')": "t"}, inputs={})
