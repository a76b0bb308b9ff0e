"""Graph building: references, outputs, edges, soft edges, factories, Mermaid."""

from __future__ import annotations

import pytest

from hush import PARENT
from hush.core import END, START, CodeNode, GraphDefinitionError, GraphNode, Hush, code_node


def ident(**kw: object) -> dict[str, object]:
    return dict(kw)


async def test_chained_indexing_and_nested_literals() -> None:
    with GraphNode(name="g") as g:
        src = CodeNode(name="src", code_fn=lambda: {"doc": {"tags": ["a", "b"]}}, inputs={})
        use = CodeNode(
            name="use",
            code_fn=lambda items, first, pair: {"out": (items, first, pair)},
            inputs={
                "items": PARENT["category"]["items"],
                "first": src["doc"]["tags"][0],
                "pair": {"x": PARENT["category"]["name"], "y": [src["doc"]["tags"][1], 3]},
            },
            outputs={"out": PARENT},
        )
        START >> src >> use >> END
    result = await Hush(g).run({"category": {"items": [1, 2], "name": "c"}})
    assert result["out"] == ([1, 2], "a", {"x": "c", "y": ["b", 3]})


async def test_output_forms_same_name_rename_star_and_statement() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: {"k": 1, "j": 2}, inputs={}, outputs={"k": PARENT})
        b = CodeNode(
            name="b",
            code_fn=lambda: {"content": "hi"},
            inputs={},
            outputs={"content": PARENT["answer"]},
        )
        c = CodeNode(name="c", code_fn=lambda: {"p": 1, "q": 2}, inputs={}, outputs={"*": PARENT})
        d = CodeNode(name="d", code_fn=lambda: {"z": 9}, inputs={})
        d["z"] >> PARENT["zed"]
        START >> [a, b, c, d] >> END
    result = await Hush(g).run()
    assert {k: v for k, v in result.items() if k != "$state"} == {
        "k": 1,
        "answer": "hi",
        "p": 1,
        "q": 2,
        "zed": 9,
    }


async def test_edge_forms_list_to_list_via_group_and_chains() -> None:
    order: list[str] = []

    def mk(name: str) -> CodeNode:
        async def fn() -> dict[str, str]:
            order.append(name)
            return {}

        return CodeNode(name=name, code_fn=fn, inputs={})

    with GraphNode(name="g") as g:
        a, b, c, d, e = (mk(n) for n in "abcde")
        START >> a >> [b, c] >> [d, e] >> END
    await Hush(g).run()
    assert order[0] == "a"
    assert set(order[1:3]) == {"b", "c"}
    assert set(order[3:]) == {"d", "e"}
    edges = {(s.name, t.name) for s, t, _ in g.edges}
    assert {("b", "d"), ("b", "e"), ("c", "d"), ("c", "e")} <= edges


def test_node_outside_graph_is_a_clear_error() -> None:
    with pytest.raises(
        GraphDefinitionError, match="CodeNode 'lonely' was created outside any graph"
    ):
        CodeNode(name="lonely", code_fn=lambda: {}, inputs={})


def test_bad_output_target_and_bad_options_name_the_node() -> None:
    with GraphNode(name="g"):
        with pytest.raises(
            GraphDefinitionError, match="CodeNode 'n': output 'x' must go to PARENT"
        ):
            CodeNode(name="n", code_fn=lambda: {}, inputs={}, outputs={"x": "somewhere"})
        with pytest.raises(GraphDefinitionError, match="CodeNode 't': timeout must be > 0"):
            CodeNode(name="t", code_fn=lambda: {}, inputs={}, timeout=0)
        with pytest.raises(GraphDefinitionError, match="CodeNode 'r': bad retry"):
            CodeNode(name="r", code_fn=lambda: {}, inputs={}, retry="often")  # type: ignore[arg-type]
        with pytest.raises(GraphDefinitionError, match="name 'a/b' is not valid"):
            CodeNode(name="a/b", code_fn=lambda: {}, inputs={})
        with pytest.raises(GraphDefinitionError, match="code_fn must be callable"):
            CodeNode(name="c", code_fn=42, inputs={})  # type: ignore[arg-type]


def test_edge_across_graphs_is_rejected() -> None:
    with GraphNode(name="g"):
        a = CodeNode(name="a", code_fn=lambda: {}, inputs={})
        with GraphNode(name="sub"):
            b = CodeNode(name="b", code_fn=lambda: {}, inputs={})
            with pytest.raises(GraphDefinitionError, match="joins nodes of different graphs"):
                a >> b


async def test_code_node_decorator_defaults_name_to_function() -> None:
    @code_node
    def clean(text: str) -> dict[str, str]:
        return {"text": text.strip()}

    @code_node(retry=2)
    async def shout(text: str) -> dict[str, str]:
        return {"text": text.upper()}

    with GraphNode(name="g") as g:
        c = clean(inputs={"text": PARENT["raw"]})
        s = shout(name="loud", inputs={"text": c["text"]}, outputs={"text": PARENT})
        START >> c >> s >> END
    assert c.name == "clean" and s.name == "loud" and s.retry is not None
    assert clean.fn("  x ") == {"text": "x"}
    result = await Hush(g).run({"raw": "  hi  "})
    assert result["text"] == "HI"


async def test_nested_graph_node_inputs_and_outputs() -> None:
    with GraphNode(name="outer") as g:
        pre = CodeNode(name="pre", code_fn=lambda x: {"y": x + 1}, inputs={"x": PARENT["x"]})
        with GraphNode(name="sub", inputs={"v": pre["y"]}) as sub:
            dbl = CodeNode(name="dbl", code_fn=lambda v: {"w": v * 2}, inputs={"v": PARENT["v"]})
            dbl["w"] >> PARENT["w"]
            START >> dbl >> END
        post = CodeNode(
            name="post",
            code_fn=lambda w: {"z": w + 100},
            inputs={"w": sub["w"]},
            outputs={"z": PARENT},
        )
        START >> pre >> sub >> post >> END
    result = await Hush(g).run({"x": 1})
    assert result["z"] == 104
    assert result["$state"].nodes["outer/sub/dbl"].status == "ok"


def test_mermaid_shows_nodes_edges_subgraphs_and_soft_edges() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: {}, inputs={})
        b = CodeNode(name="b", code_fn=lambda: {}, inputs={})
        with GraphNode(name="sub") as sub:
            c = CodeNode(name="c", code_fn=lambda: {}, inputs={})
            START >> c >> END
        START >> [a, b]
        [a, b] >> ~sub
        sub >> END
    text = g.to_mermaid()
    assert text.startswith("flowchart TD")
    assert 'subgraph g_sub["sub (graph)"]' in text
    assert "g_a -.-> g_sub__start" in text
    assert "g_sub__end --> g__end" in text
