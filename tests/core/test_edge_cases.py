"""Regressions for edge cases found in review: branches, handlers, retries, resume, zips, inputs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hush.core import (
    END,
    PARENT,
    START,
    BranchNode,
    CodeNode,
    GraphBuildError,
    GraphNode,
    Hush,
    MissingInputError,
)
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


async def test_branch_only_skips_its_case_targets() -> None:
    with GraphNode(name="g") as g:
        br = BranchNode(name="br", cases={"n > 0": "pos"}, default="neg", inputs={"n": PARENT["n"]})
        pos = CodeNode(name="pos", code_fn=lambda: {}, inputs={})
        neg = CodeNode(name="neg", code_fn=lambda: {}, inputs={})
        log = CodeNode(
            name="log",
            code_fn=lambda t: {"t": t},
            inputs={"t": br["target"]},
            outputs={"t": PARENT},
        )
        START >> br >> [pos, neg, log]
        [pos, neg] >> ~END
        log >> END
    result = await Hush(g).run({"n": 1})
    assert result["t"] == "pos"
    assert result["$state"].nodes["g/neg"].status == "skipped"


def test_error_handler_must_be_a_direct_successor() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: {}, inputs={})
        b = CodeNode(name="b", code_fn=lambda: {}, inputs={})
        h = CodeNode(name="h", code_fn=lambda e: {}, inputs={"e": a["error"]})
        START >> a >> b >> h >> END
    with pytest.raises(
        GraphBuildError,
        match=r"g/h: reads a\['error'\] but an error handler must be a direct successor",
    ):
        g.build()


async def test_retried_container_keeps_only_the_last_attempts_errors() -> None:
    calls = 0

    def flaky() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("transient")
        return {"y": 2}

    with GraphNode(name="g") as g:
        with GraphNode(name="sub", retry={"attempts": 2, "initial": 0, "jitter": 0}) as sub:
            f = CodeNode(name="f", code_fn=flaky, inputs={}, outputs={"y": PARENT})
            START >> f >> END
        sub["y"] >> PARENT["y"]
        START >> sub >> END
    result = await Hush(g).run(raise_on_error=True)
    assert result["y"] == 2
    assert result["$state"].errors == []
    assert result["$state"].status == "ok"


async def test_map_retry_over_a_one_shot_iterator_is_a_clear_error() -> None:
    import anyio

    hung: set[int] = set()

    async def work(x: int) -> dict[str, int]:
        if x == 3 and x not in hung:
            hung.add(x)
            await anyio.sleep(30)
        return {"y": x}

    def on_timeout_retry(xs: object) -> GraphNode:
        with GraphNode(name="g") as g:
            with MapNode(
                name="m",
                inputs={"x": Each(PARENT["xs"])},
                timeout=0.3,
                retry={"attempts": 2, "initial": 0, "jitter": 0},
            ) as m:
                n = CodeNode(name="n", code_fn=work, inputs={"x": PARENT["x"]})
                n["y"] >> PARENT["y"]
                START >> n >> END
            m["y"] >> PARENT["ys"]
            START >> m >> END
        return g

    def gen() -> Iterator[int]:
        yield from range(6)

    state = (await Hush(on_timeout_retry(None)).run({"xs": gen()}))["$state"]
    err = state.nodes["g/m"].error
    assert err.type == "NodeInputError"
    assert "cannot retry over Each input 'x': it is a one-shot iterator" in err.message
    hung.clear()
    result = await Hush(on_timeout_retry(None)).run({"xs": list(range(6))})
    assert result["ys"] == list(range(6))
    assert result["$state"].nodes["g/m"].attempts == 2


async def test_unequal_lengths_with_an_iterator_is_a_clear_error() -> None:
    def gen() -> Iterator[int]:
        yield from range(3)

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"a": Each(PARENT["a"]), "b": Each(PARENT["b"])}) as m:
            n = CodeNode(
                name="n", code_fn=lambda a, b: {}, inputs={"a": PARENT["a"], "b": PARENT["b"]}
            )
            START >> n >> END
        START >> m >> END
    state = (await Hush(g).run({"a": gen(), "b": [1, 2, 3, 4]}))["$state"]
    err = state.nodes["g/m"].error
    assert err.type == "NodeInputError"
    assert (
        err.message
        == "Each inputs of MapNode 'm' have unequal lengths: 'a' ran out after 3 items, 'b' had more"
    )


async def test_resume_never_mixes_a_handlers_stale_output_with_a_fresh_result(
    tmp_path: Path,
) -> None:
    calls: Counter[str] = Counter()
    down = True

    def fetch() -> dict[str, str]:
        calls["fetch"] += 1
        if down:
            raise ConnectionError("down")
        return {"data": "real"}

    def handle(error: object) -> dict[str, str]:
        calls["handle"] += 1
        return {"note": "fallback" if error is not None else "fine"}

    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=fetch, inputs={}, outputs={"data": PARENT})
        h = CodeNode(
            name="h", code_fn=handle, inputs={"error": a["error"]}, outputs={"note": PARENT}
        )
        START >> a >> h >> END
    engine = Hush(g)
    first = await engine.run(checkpoint=tmp_path / "c.db", run_id="r")
    assert first["note"] == "fallback"
    down = False
    second = await engine.run(checkpoint=tmp_path / "c.db", run_id="r")
    assert (second["data"], second["note"]) == ("real", "fine")
    assert calls == Counter({"fetch": 2, "handle": 2})


async def test_star_writer_exempts_only_readers_downstream_of_it() -> None:
    with GraphNode(name="g") as g:
        a = CodeNode(name="a", code_fn=lambda: {"x": 1}, inputs={}, outputs={"*": PARENT})
        b = CodeNode(name="b", code_fn=lambda q: {}, inputs={"q": PARENT["query"]})
        START >> [a, b] >> END
    with pytest.raises(MissingInputError, match="'query'"):
        await Hush(g).run({})


async def test_bad_run_and_engine_arguments_are_clear_errors() -> None:
    with GraphNode(name="g") as g:
        n = CodeNode(name="n", code_fn=lambda: {}, inputs={})
        START >> n >> END
    engine = Hush(g)
    with pytest.raises(ValueError, match="max_concurrency must be a positive int, got int 0"):
        await engine.run(max_concurrency=0)
    with pytest.raises(TypeError, match="inputs must be a dict, got list"):
        await engine.run([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Hush\\(\\) takes a GraphNode, got CodeNode"):
        Hush(n)  # type: ignore[arg-type]


def test_bad_map_cap_names_the_node() -> None:
    from hush.core import GraphDefinitionError

    with (
        GraphNode(name="g"),
        pytest.raises(
            GraphDefinitionError, match="MapNode 'm': max_concurrency must be a positive int"
        ),
    ):
        MapNode(name="m", inputs={"x": Each([1])}, max_concurrency=0)
