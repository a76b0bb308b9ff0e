"""Resume keyed by what went in: items never mix, changes are detected, failures to save are reported."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hush import END, PARENT, START, CodeNode, Each, GraphNode, Hush, MapNode
from hush.checkpoint import CheckpointMismatchError
from hush.checkpoint.errors import FingerprintError
from hush.observability import MemoryTracer


def answer(topic: str, point: str) -> str:
    return f"{topic}: about {point}"


def outline_graph(calls: Counter[str], flaky: set[str]) -> GraphNode:
    """Topic -> an outline that differs on every call -> one answer per outline point."""
    draws = itertools.count()

    async def outline(topic: str) -> dict[str, list[str]]:
        calls[f"outline {topic}"] += 1
        n = next(draws)
        return {"points": [f"{topic}-p{n}-{k}" for k in range(3)]}

    async def write(topic: str, point: str) -> dict[str, str]:
        calls[point] += 1
        if point.endswith("-1") and topic in flaky:
            flaky.discard(topic)
            raise ConnectionError("the model was busy")
        return {"text": answer(topic, point)}

    with GraphNode(name="g") as g:
        with MapNode(name="topics", inputs={"topic": Each(PARENT["topics"])}) as topics:
            o = CodeNode(name="outline", code_fn=outline, inputs={"topic": PARENT["topic"]})
            with MapNode(
                name="points",
                inputs={"point": Each(o["points"]), "topic": PARENT["topic"]},
            ) as points:
                w = CodeNode(
                    name="write",
                    code_fn=write,
                    inputs={"topic": PARENT["topic"], "point": PARENT["point"]},
                )
                w["text"] >> PARENT["text"]
                START >> w >> END
            o["points"] >> PARENT["points"]
            points["text"] >> PARENT["texts"]
            START >> o >> points >> END
        topics["points"] >> PARENT["points"]
        topics["texts"] >> PARENT["texts"]
        START >> topics >> END
    return g


def assert_consistent(result: dict[str, Any], topics: list[str]) -> None:
    for topic, points, texts in zip(topics, result["points"], result["texts"], strict=True):
        assert texts == [answer(topic, p) for p in points]


async def test_nested_map_resume_never_mixes_items(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    topics = ["a", "b", "c"]
    engine = Hush(outline_graph(calls, flaky={"b"}))
    db = tmp_path / "c.db"
    first = await engine.run({"topics": topics}, checkpoint=db, run_id="r")
    assert first["$state"].status == "error"
    failed_point = first["points"][1][1]
    assert first["texts"][1][1] is None

    calls.clear()
    second = await engine.run({"topics": topics}, checkpoint=db, run_id="r")
    assert second["$state"].status == "ok"
    assert_consistent(second, topics)
    assert second["points"] == first["points"]
    assert calls == Counter({failed_point: 1})


async def test_resume_after_an_unrelated_sibling_failed_reuses_the_producer(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    broken = True

    async def produce(n: int) -> dict[str, list[str]]:
        calls["produce"] += 1
        await asyncio.sleep(0.05)  # the side branch fails first
        return {"rows": [f"row{calls['produce']}-{i}" for i in range(n)]}

    async def upper(row: str) -> dict[str, str]:
        calls[row] += 1
        return {"out": row.upper()}

    def side() -> dict[str, int]:
        if broken:
            raise RuntimeError("side branch down")
        return {"side": 1}

    with GraphNode(name="g") as g:
        p = CodeNode(name="produce", code_fn=produce, inputs={"n": PARENT["n"]})
        with MapNode(name="m", inputs={"row": Each(p["rows"])}) as m:
            u = CodeNode(name="upper", code_fn=upper, inputs={"row": PARENT["row"]})
            u["out"] >> PARENT["out"]
            START >> u >> END
        s = CodeNode(name="side", code_fn=side, inputs={}, outputs={"side": PARENT})
        p["rows"] >> PARENT["rows"]
        m["out"] >> PARENT["outs"]
        START >> p >> m >> END
        START >> s >> END
    engine = Hush(g)
    db = tmp_path / "c.db"
    first = await engine.run({"n": 4}, checkpoint=db, run_id="r")
    assert first["$state"].nodes["g/side"].status == "error"
    broken = False
    calls.clear()
    second = await engine.run({"n": 4}, checkpoint=db, run_id="r")
    assert second["rows"] == first["rows"]
    assert second["outs"] == [r.upper() for r in second["rows"]]
    assert calls == Counter()
    assert second["$state"].nodes["g/produce"].resumed


async def test_a_producer_that_reruns_with_a_different_list_recomputes_only_changed_items(
    tmp_path: Path,
) -> None:
    calls: Counter[str] = Counter()

    async def upper(row: str) -> dict[str, str]:
        calls[row] += 1
        return {"out": row.upper()}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"row": Each(PARENT["rows"])}) as m:
            u = CodeNode(name="upper", code_fn=upper, inputs={"row": PARENT["row"]})
            u["out"] >> PARENT["out"]
            START >> u >> END
        m["out"] >> PARENT["outs"]
        START >> m >> END
    engine = Hush(g)
    db = tmp_path / "c.db"
    await engine.run({"rows": ["a", "b", "c", "d"]}, checkpoint=db, run_id="r")
    calls.clear()
    rows = ["a", "x", "c", "b"]
    result = await engine.run({"rows": rows}, checkpoint=db, run_id="r")
    assert result["outs"] == ["A", "X", "C", "B"]
    assert calls == Counter({"x": 1}), "items are keyed by content: 'b' moved, not changed"
    assert result["$state"].iterations["g/m"].resumed == 3


def arithmetic_graph(fn: Any, constant: Any) -> GraphNode:
    with GraphNode(name="g") as g:
        n = CodeNode(
            name="n",
            code_fn=fn,
            inputs={"x": PARENT["x"], "k": constant},
            outputs={"y": PARENT},
        )
        START >> n >> END
    return g


def lambdas(double: bool) -> Any:
    return (lambda x, k: {"y": x * 2 * k}) if double else (lambda x, k: {"y": -x * k})


async def test_changed_code_is_refused_or_restarted(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    first = await Hush(arithmetic_graph(lambdas(True), 1)).run({"x": 3}, checkpoint=db, run_id="r")
    assert first["y"] == 6
    with pytest.raises(CheckpointMismatchError, match="code changed"):
        await Hush(arithmetic_graph(lambdas(False), 1)).run({"x": 3}, checkpoint=db, run_id="r")
    again = await Hush(arithmetic_graph(lambdas(False), 1)).run(
        {"x": 3}, checkpoint=db, run_id="r", on_checkpoint_mismatch="restart"
    )
    assert again["y"] == -3


async def test_changed_constant_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"

    def total(x: int, k: Decimal) -> dict[str, Decimal]:
        return {"y": x * k}

    first = await Hush(arithmetic_graph(total, Decimal("1.10"))).run(
        {"x": 2}, checkpoint=db, run_id="r"
    )
    assert first["y"] == Decimal("2.20")
    same = await Hush(arithmetic_graph(total, Decimal("1.10"))).run(
        {"x": 2}, checkpoint=db, run_id="r"
    )
    assert same["$state"].nodes["g/n"].resumed
    with pytest.raises(CheckpointMismatchError):
        await Hush(arithmetic_graph(total, Decimal("2.00"))).run(
            {"x": 2}, checkpoint=db, run_id="r"
        )


async def test_a_constant_that_cannot_be_fingerprinted_is_a_clear_error(tmp_path: Path) -> None:
    engine = Hush(arithmetic_graph(lambda x, k: {"y": x}, threading.Lock()))
    with pytest.raises(FingerprintError, match=r"g/n: input 'k' holds a lock that cannot be"):
        await engine.run({"x": 1}, checkpoint=tmp_path / "c.db", run_id="r")
    assert (await engine.run({"x": 1}))["y"] == 1


async def test_a_checkpoint_write_failure_is_reported_and_the_work_kept(tmp_path: Path) -> None:
    db = tmp_path / "c.db"

    async def work(x: int) -> dict[str, int]:
        if x == 3:
            with sqlite3.connect(db) as other:
                other.execute("DROP TABLE chunks")
        return {"y": x * 2}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=1) as m:
            n = CodeNode(name="n", code_fn=work, inputs={"x": PARENT["x"]}, outputs={"y": PARENT})
            START >> n >> END
        m["y"] >> PARENT["ys"]
        after = CodeNode(name="after", code_fn=lambda ys: {"n": len(ys)}, inputs={"ys": m["y"]})
        after["n"] >> PARENT["n"]
        START >> m >> after >> END
    tracer = MemoryTracer()
    result = await Hush(g).run({"xs": list(range(8))}, checkpoint=db, run_id="r", tracer=tracer)
    state = result["$state"]
    assert result["ys"] == [x * 2 for x in range(8)]
    assert result["n"] == 8
    assert state.nodes["g/m"].status == "ok" and state.nodes["g/after"].status == "ok"
    assert state.status == "error"
    assert [e.type for e in state.errors] == ["CheckpointWriteError"]
    assert tracer.find("g")[0]["status"] == "error"
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE probe (x)")
