"""Map items are resumed by their content: an inserted, removed or reordered row costs only
itself; duplicates keep answers of their own."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


def rows_graph(calls: Counter[str], *, fail: set[str] | None = None) -> GraphNode:
    """Per row: an expensive step (counted), then a step that fails for rows in ``fail``."""
    failing = fail if fail is not None else set()

    async def expensive(row: str) -> dict[str, str]:
        calls[row] += 1
        return {"answer": f"{row}#{calls[row]}"}

    async def check(answer: str, row: str) -> dict[str, str]:
        calls[f"check {row}"] += 1
        if row in failing:
            raise RuntimeError(f"check failed for {row}")
        return {"checked": answer.upper()}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"row": Each(PARENT["rows"])}, max_concurrency=3) as m:
            e = CodeNode(name="expensive", code_fn=expensive, inputs={"row": PARENT["row"]})
            c = CodeNode(
                name="check", code_fn=check, inputs={"answer": e["answer"], "row": PARENT["row"]}
            )
            c["checked"] >> PARENT["out"]
            START >> e >> c >> END
        m["out"] >> PARENT["outs"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


def expensive_calls(calls: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in calls.items() if not k.startswith("check ")})


async def test_a_row_inserted_at_the_front_reruns_only_itself(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    engine = Hush(rows_graph(calls))
    db = tmp_path / "run.db"
    rows = ["a", "b", "c", "d", "e"]
    first = await engine.run({"rows": rows}, checkpoint=db, run_id="r")
    assert first["outs"] == ["A#1", "B#1", "C#1", "D#1", "E#1"]

    calls.clear()
    resumed = await engine.run({"rows": ["new", *rows]}, checkpoint=db, run_id="r")
    assert resumed["outs"] == ["NEW#1", "A#1", "B#1", "C#1", "D#1", "E#1"]
    assert expensive_calls(calls) == Counter({"new": 1})
    assert resumed["$state"].iterations["g/m"].resumed == 5


async def test_removed_and_reordered_rows_cost_nothing(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    engine = Hush(rows_graph(calls))
    db = tmp_path / "run.db"
    await engine.run({"rows": ["a", "b", "c", "d", "e"]}, checkpoint=db, run_id="r")
    calls.clear()
    resumed = await engine.run({"rows": ["e", "c", "a"]}, checkpoint=db, run_id="r")
    assert resumed["outs"] == ["E#1", "C#1", "A#1"]
    assert calls == Counter()


async def test_duplicates_keep_their_own_answers_and_only_extra_ones_run(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    engine = Hush(rows_graph(calls))
    db = tmp_path / "run.db"
    first = await engine.run({"rows": ["a", "b", "a"]}, checkpoint=db, run_id="r")
    assert sorted(first["outs"]) == ["A#1", "A#2", "B#1"]

    calls.clear()
    resumed = await engine.run({"rows": ["a", "a", "a", "b"]}, checkpoint=db, run_id="r")
    assert resumed["outs"][:2] == [first["outs"][0], first["outs"][2]], "k-th a, k-th answer"
    assert resumed["outs"][3] == "B#1"
    assert expensive_calls(calls) == Counter({"a": 1}), "only the third 'a' is new"


async def test_a_failed_item_keeps_its_finished_steps_wherever_it_moves(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    fail = {"b"}
    engine = Hush(rows_graph(calls, fail=fail))
    db = tmp_path / "run.db"
    first = await engine.run({"rows": ["a", "b", "c"]}, checkpoint=db, run_id="r")
    assert first["errors"][1] is not None

    fail.clear()
    calls.clear()
    resumed = await engine.run({"rows": ["c", "new", "b", "a"]}, checkpoint=db, run_id="r")
    assert resumed["outs"] == ["C#1", "NEW#1", "B#1", "A#1"]
    assert expensive_calls(calls) == Counter({"new": 1}), "b's finished step was reused"
    assert calls["check b"] == 1


async def test_items_of_a_nested_map_are_keyed_by_content_at_every_level(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    async def word(w: str) -> dict[str, str]:
        calls[w] += 1
        return {"w": w.upper()}

    with GraphNode(name="g") as g:
        with MapNode(name="outer", inputs={"words": Each(PARENT["groups"])}) as outer:
            with MapNode(name="inner", inputs={"w": Each(PARENT["words"])}) as inner:
                n = CodeNode(name="word", code_fn=word, inputs={"w": PARENT["w"]})
                n["w"] >> PARENT["w"]
                START >> n >> END
            inner["w"] >> PARENT["ws"]
            START >> inner >> END
        outer["ws"] >> PARENT["out"]
        START >> outer >> END
    engine = Hush(g)
    db = tmp_path / "run.db"
    await engine.run({"groups": [["a", "b"], ["c"]]}, checkpoint=db, run_id="r")
    calls.clear()
    result = await engine.run({"groups": [["new"], ["c"], ["a", "b"]]}, checkpoint=db, run_id="r")
    assert result["out"] == [["NEW"], ["C"], ["A", "B"]]
    assert calls == Counter({"new": 1})


async def test_a_while_loop_resumes_its_iterations(tmp_path: Path) -> None:
    from hush.core.nodes.iteration import WhileLoopNode

    calls: Counter[int] = Counter()
    stop: dict[str, Any] = {"at": 3}

    async def step(n: int) -> dict[str, int]:
        calls[n] += 1
        if n == stop["at"]:
            raise RuntimeError("interrupted")
        return {"n": n + 1}

    with GraphNode(name="g") as g:
        with WhileLoopNode(
            name="loop", inputs={"n": PARENT["n"]}, condition="n < 5", max_iterations=10
        ) as loop:
            s = CodeNode(name="step", code_fn=step, inputs={"n": PARENT["n"]})
            s["n"] >> PARENT["n"]
            START >> s >> END
        loop["n"] >> PARENT["n"]
        START >> loop >> END
    engine = Hush(g)
    db = tmp_path / "run.db"
    first = await engine.run({"n": 0}, checkpoint=db, run_id="r")
    assert first["$state"].status == "error"
    stop["at"] = -1
    calls.clear()
    second = await engine.run({"n": 0}, checkpoint=db, run_id="r")
    assert second["n"] == 5
    assert calls == Counter({3: 1, 4: 1})
