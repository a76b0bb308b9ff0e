"""``Hush.run``'s options: ten of them, small checked objects, and the old keywords still
accepted with a ``DeprecationWarning`` naming the new spelling."""

from __future__ import annotations

import asyncio
import inspect
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import hush
from hush import Budget, Checkpoint, Labels, Progress
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.errors import RunOptionError
from hush.core.events import Event
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.core.progress import MapProgress

NEW_OPTIONS = [
    "run_id",
    "tracer",
    "labels",
    "checkpoint",
    "budget",
    "cache",
    "progress",
    "max_running_nodes",
    "executor",
    "raise_on_error",
]


def one_node() -> GraphNode:
    with GraphNode(name="g") as g:
        START >> CodeNode(name="a", code_fn=lambda: {"x": 1}, outputs={"x": PARENT}) >> END
    return g


def counted_map(calls: Counter[str]) -> GraphNode:
    def work(item: int) -> dict[str, int]:
        calls[f"item{item}"] += 1
        return {"y": item * 2}

    with GraphNode(name="counted") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}) as m:
            node = CodeNode(name="w", code_fn=work, inputs={"item": PARENT["item"]})
            node["y"] >> PARENT["y"]
            START >> node >> END
        m["y"] >> PARENT["ys"]
        START >> m >> END
    return g


async def run_start_of(engine: Hush, **options: Any) -> Event:
    async for event in engine.stream({}, **options):
        if event.kind == "run_start":
            return event
    raise AssertionError("no run_start")


def test_run_shows_exactly_the_ten_options() -> None:
    parameters = list(inspect.signature(Hush.run).parameters)
    assert parameters == ["self", "inputs", *NEW_OPTIONS]
    assert inspect.iscoroutinefunction(Hush.run)


def test_hush_exports_the_nodes_a_user_writes_and_the_option_classes() -> None:
    for name in hush.__all__:
        assert getattr(hush, name) is not None, name
    for name in ("LLMNode", "PromptNode", "ParserNode", "EmbeddingNode", "RerankNode", "MapNode"):
        assert name in hush.__all__
    assert {"Labels", "Checkpoint", "Budget", "Progress"} <= set(hush.__all__)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Labels(user_id=3), "user_id must be a string, got int 3"),
        (lambda: Labels(tags="a"), "tags must be a list of strings, got str 'a'"),
        (lambda: Labels(metadata=[1]), "metadata must be a dict"),
        (lambda: Checkpoint(3), "checkpoint must be a file path, got int 3"),
        (
            lambda: Checkpoint("x.db", on_mismatch="keep"),
            "on_mismatch must be 'error' or 'restart'",
        ),
        (lambda: Checkpoint("x.db", restart="yes"), "restart must be True or False"),
        (lambda: Budget(max_cost=-1), "max_cost must be a number of USD >= 0, got int -1"),
        (lambda: Budget(max_cost=math.nan), "max_cost must be a number of USD >= 0"),
        (lambda: Budget(max_total_tokens=1.5), "max_total_tokens must be an int >= 0"),
        (lambda: Budget(), "Budget\\(\\) sets no limit"),
        (lambda: Progress(show="yes"), "progress must be True, False or None"),
        (lambda: Progress(on_update=3), "progress on_update must be callable"),
    ],
)
def test_an_option_object_checks_its_values_when_made(make: Any, message: str) -> None:
    with pytest.raises(RunOptionError, match=message):
        make()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("labels", {"user_id": "u"}, "labels must be a Labels"),
        ("budget", 1.0, "budget must be a Budget"),
        ("progress", 3, "progress must be True, False or None, a callable, or a Progress"),
        ("max_running_nodes", 0, "max_running_nodes must be a positive int, got int 0"),
        ("max_running_nodes", True, "max_running_nodes must be a positive int"),
        ("raise_on_error", "yes", "raise_on_error must be True or False"),
        ("tracer", object(), "tracer must be a tracer"),
        ("run_id", "", "run_id must be a non-empty string"),
        ("checkpoint", 3, "checkpoint must be a file path"),
    ],
)
async def test_a_wrong_run_option_is_named_before_anything_runs(
    option: str, value: Any, message: str
) -> None:
    ran = []
    with GraphNode(name="g") as g:
        START >> CodeNode(name="a", code_fn=lambda: ran.append(1) or {}) >> END
    with pytest.raises(RunOptionError, match=message):
        await Hush(g).run({}, **{option: value})
    assert ran == []


async def test_labels_reach_run_start_under_both_spellings() -> None:
    engine = Hush(one_node())
    new = await run_start_of(
        engine, labels=Labels(user_id="u", session_id="s", tags=["t"], metadata={"k": 1})
    )
    with pytest.warns(DeprecationWarning, match=r"user_id= is deprecated, use labels=Labels"):
        old = await run_start_of(engine, user_id="u", session_id="s", tags=["t"], metadata={"k": 1})
    expected = {"user_id": "u", "session_id": "s", "tags": ["t"], "metadata": {"k": 1}}
    assert new.metadata == old.metadata == expected


async def test_a_checkpoint_path_resumes_and_checkpoint_restart_starts_over(
    tmp_path: Path,
) -> None:
    calls: Counter[str] = Counter()
    engine, db = Hush(counted_map(calls)), tmp_path / "run.db"
    first = await engine.run({"items": [1, 2]}, checkpoint=db, run_id="r")
    again = await engine.run({"items": [1, 2]}, checkpoint=str(db), run_id="r")
    assert first["ys"] == again["ys"] == [2, 4]
    assert calls == Counter({"item1": 1, "item2": 1}), "the second run resumed everything"
    await engine.run({"items": [1, 2]}, checkpoint=Checkpoint(db, restart=True), run_id="r")
    assert calls == Counter({"item1": 2, "item2": 2}), "restart=True ran everything again"


async def test_progress_takes_a_callable_or_a_progress_object() -> None:
    engine = Hush(counted_map(Counter()))
    seen: list[list[MapProgress]] = []
    wrapped: list[list[MapProgress]] = []
    await engine.run({"items": [1, 2, 3]}, progress=seen.append)
    await engine.run({"items": [1, 2, 3]}, progress=Progress(show=False, on_update=wrapped.append))
    for updates in (seen, wrapped):
        assert updates and updates[-1][0].done == 3


async def test_max_running_nodes_caps_leaf_nodes_across_the_run() -> None:
    running, peak = 0, 0

    async def leaf() -> dict[str, int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(5):
            await asyncio.sleep(0)
        running -= 1
        return {}

    with GraphNode(name="fan") as g:
        leaves = [CodeNode(name=f"n{i}", code_fn=leaf) for i in range(6)]
        START >> leaves >> END
    engine = Hush(g)
    await engine.run({})
    assert peak > 2, "without a cap the leaves overlap"
    peak = 0
    await engine.run({}, max_running_nodes=2)
    assert peak == 2
    peak = 0
    with pytest.warns(
        DeprecationWarning, match="max_concurrency= is deprecated, use max_running_nodes"
    ):
        await engine.run({}, max_concurrency=1)
    assert peak == 1


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 2, "max_running_nodes": 2},
        {"user_id": "u", "labels": Labels(user_id="v")},
        {"max_cost": 1.0, "budget": Budget(max_cost=1.0)},
        {"restart": True, "checkpoint": Checkpoint("x.db")},
        {"on_checkpoint_mismatch": "restart", "checkpoint": Checkpoint("x.db")},
        {"on_progress": print, "progress": Progress()},
    ],
    ids=lambda o: "+".join(o),
)
async def test_an_option_given_in_both_spellings_is_refused(options: dict[str, Any]) -> None:
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(RunOptionError, match="same option; give only"),
    ):
        await Hush(one_node()).run({}, **options)


async def test_old_keywords_warn_once_per_call_naming_each_new_spelling(tmp_path: Path) -> None:
    updates: list[Any] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await Hush(one_node()).run(
            checkpoint=tmp_path / "c.db",
            restart=True,
            on_checkpoint_mismatch="restart",
            on_progress=updates.append,
            progress=False,
            flush_timeout=1.0,
        )
    assert result["x"] == 1
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    text = str(warning.message)
    for new in ("Checkpoint(path, restart=True)", "Progress(on_update=", "flush_timeout"):
        assert new in text
    assert warning.filename == __file__, "the warning points at the caller"


async def test_an_old_keyword_with_a_misspelt_one_is_still_a_type_error() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="'max_runing_nodes'"):
        await Hush(one_node()).run({}, max_concurrency=2, max_runing_nodes=2)
    with pytest.raises(TypeError, match="max_runing_nodes"):
        await Hush(one_node()).run({}, max_runing_nodes=2)


async def test_stream_and_run_sync_take_the_same_options(tmp_path: Path) -> None:
    engine = Hush(one_node())
    events = [e.kind async for e in engine.stream({}, labels=Labels(user_id="u"), progress=False)]
    assert events[0] == "run_start" and events[-1] == "run_end"
    with pytest.raises(RunOptionError, match="max_running_nodes must be a positive int"):
        async for _ in engine.stream({}, max_running_nodes=-1):
            pass

    def blocking() -> dict[str, Any]:
        return engine.run_sync({}, checkpoint=Checkpoint(tmp_path / "s.db"), run_id="s")

    result = await asyncio.to_thread(blocking)
    assert result["x"] == 1 and result["$state"].status == "ok"
