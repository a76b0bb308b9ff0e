"""A map item's spend is saved in its own row: one meter per worker, ended per item; an
item that is not saved (it failed, or its result does not pickle) leaves its spend to the
run, never to the next item of its worker. Over real HTTP to the local server."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hush.checkpoint.chunks import saved_entries
from hush.checkpoint.handover import UNSAVED
from hush.checkpoint.sqlite_store import SPEND_PATH
from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode
from hush.providers.clients import complete
from hush.testing import MockLLMServer


def graph(resource: str, cap: int, then: Callable[..., Any]) -> GraphNode:
    """A map whose items ask one question, then run ``then(q, content)``."""
    with GraphNode(name="spend") as g:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=cap) as m:
            llm = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
            )
            after = CodeNode(
                name="after", code_fn=then, inputs={"q": PARENT["q"], "content": llm["content"]}
            )
            after["out"] >> PARENT["out"]
            llm["usage"] >> PARENT["usage"]
            START >> llm >> after >> END
        m["out"] >> PARENT["outs"]
        m["usage"] >> PARENT["usages"]
        m["error"] >> PARENT["errors"]
        START >> m >> END
    return g


def questions(n: int) -> list[str]:
    """Questions of distinct lengths, so each item's prompt tokens tell it apart."""
    return [f"question {'x' * (3 * i)} {i}?" for i in range(n)]


def item_rows(db: Path) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(path, digest, spend of the one resource) of every saved row of run ``r``."""
    with sqlite3.connect(db) as conn:
        found = []
        for path, digest, _, spend, _ in saved_entries(conn, "r"):
            spent = json.loads(spend) if spend else None
            found.append((path, digest, next(iter(spent.values())) if spent else None))
    return found


def answered(q: str, content: str) -> dict[str, Any]:
    return {"out": content}


async def test_each_items_spend_is_saved_in_its_own_row(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    name = register("own-row", server.base_url, input_cost_per_mtok=2.5, output_cost_per_mtok=10)
    db = tmp_path / "run.db"
    result = await Hush(graph(name, 4, answered)).run(
        {"qs": questions(24)}, checkpoint=db, run_id="r"
    )
    rows = [r for r in item_rows(db) if r[0].startswith("spend/items[")]
    assert len(rows) == 24
    spent = sorted((s["calls"], s["prompt_tokens"], s["completion_tokens"]) for *_, s in rows)
    usages = sorted((1, u["prompt_tokens"], u["completion_tokens"]) for u in result["usages"])
    assert spent == usages, "a row holds another item's spend, or none, or two calls"


async def test_one_workers_items_each_save_their_own_spend(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    """One worker runs every item (cap 1); a third of them fail after their call, and save
    the call's answer (a snapshot) with its spend: no row holds a neighbour's call."""
    name = register("failing", server.base_url, input_cost_per_mtok=2.5, output_cost_per_mtok=10)

    def every_third_fails(q: str, content: str) -> dict[str, Any]:
        if q.endswith((" 0?", " 3?", " 6?")):
            raise ValueError(f"no good: {q}")
        return {"out": content}

    db = tmp_path / "run.db"
    result = await Hush(graph(name, 1, every_third_fails)).run(
        {"qs": questions(8)}, checkpoint=db, run_id="r"
    )
    assert sum(e is not None for e in result["errors"]) == 3
    rows = [(path, s) for path, _, s in item_rows(db) if path.startswith("spend/items[")]
    snapshots = [s for path, s in rows if path.endswith("/llm")]
    assert len(rows) == 8 and len(snapshots) == 3
    assert all(s is not None and s["calls"] == 1 for _, s in rows), (
        "a row holds no call, or another item's call as well as its own"
    )
    assert result["$state"].llm[f"llm:{name}"]["calls"] == 8


async def test_a_workers_unsaved_items_leave_their_spend_to_the_run_not_to_a_sibling(
    server: MockLLMServer, register: Callable[..., str], tmp_path: Path
) -> None:
    """Items of one code node that asks the LLM, then fails for every other item, save
    nothing when they fail: their spend goes to the run's rest, never into the item another
    worker (the one that started theirs) is running."""
    name = register("asked", server.base_url)

    async def ask(q: str) -> dict[str, Any]:
        reply = await complete(name, [{"role": "user", "content": q}])
        if q.endswith("!"):
            raise ValueError("not this one")
        return {"out": reply.content}

    with GraphNode(name="spend") as g:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=4) as m:
            node = CodeNode(name="ask", code_fn=ask, inputs={"q": PARENT["q"]})
            node["out"] >> PARENT["out"]
            START >> node >> END
        m["error"] >> PARENT["errors"]
        START >> m >> END
    qs = [f"question {i}" + ("!" if i % 2 else "?") for i in range(24)]
    db = tmp_path / "run.db"
    result = await Hush(g).run({"qs": qs}, checkpoint=db, run_id="r")
    assert [e is not None for e in result["errors"]] == [bool(i % 2) for i in range(24)]
    rows = [s for path, _, s in item_rows(db) if path.startswith("spend/items[")]
    assert len(rows) == 12
    assert all(s is not None and s["calls"] == 1 for s in rows), (
        "an unsaved item's call went into another worker's item"
    )
    assert result["$state"].llm[f"llm:{name}"]["calls"] == 24


async def test_a_result_that_does_not_pickle_is_not_saved_but_its_spend_is(
    server: MockLLMServer,
    register: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = register("unpicklable", server.base_url)

    def locked(q: str, content: str) -> dict[str, Any]:
        return {"out": {"content": content, "lock": threading.Lock()}}

    db = tmp_path / "run.db"
    engine = Hush(graph(name, 3, locked))
    with caplog.at_level(logging.WARNING, logger="hush.checkpoint"):
        first = await engine.run({"qs": questions(6)}, checkpoint=db, run_id="r")
    assert first["errors"] == [None] * 6
    warned = [r.getMessage() for r in caplog.records if "is not saved" in r.getMessage()]
    items = [w for w in warned if re.match(r"checkpoint: spend/items\[\d+\] is not saved", w)]
    assert len(items) == 1 and "does not pickle" in items[0], warned
    unsaved = [s for path, digest, s in item_rows(db) if path == SPEND_PATH and digest == UNSAVED]
    assert len(unsaved) == 6 and all(s is not None and s["calls"] == 1 for s in unsaved)

    server.reset()
    again = await engine.run({"qs": questions(6)}, checkpoint=db, run_id="r")
    assert server.total_requests == 6, "an item whose result was not saved did not run again"
    assert again["$state"].tokens == 2 * first["$state"].tokens, (
        "what the unsaved items spent was not counted on resume"
    )
