"""Checkpoint and resume through the engine, with a real SQLite file."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from hush.checkpoint import CheckpointMismatchError
from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.errors import RunOptionError
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.testing import MockLLMServer

CHILD = Path(__file__).with_name("checkpoint_child.py")


def counting_graph(calls: Counter[str], fail: set[int], name: str = "g") -> GraphNode:
    async def prep(items: list[int]) -> dict[str, list[int]]:
        calls["prep"] += 1
        return {"items": items}

    async def work(item: int) -> dict[str, int]:
        calls[f"item{item}"] += 1
        if item in fail:
            raise RuntimeError(f"transient {item}")
        return {"r": item * 2}

    with GraphNode(name=name) as g:
        p = CodeNode(name="prep", code_fn=prep, inputs={"items": PARENT["items"]})
        with MapNode(name="m", inputs={"item": Each(p["items"])}, max_concurrency=4) as m:
            w = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
            w["r"] >> PARENT["r"]
            START >> w >> END
        m["r"] >> PARENT["rs"]
        m["error"] >> PARENT["errors"]
        START >> p >> m >> END
    return g


async def test_resume_skips_finished_work_and_retries_only_failed_items(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    calls: Counter[str] = Counter()
    fail = {3, 7}
    engine = Hush(counting_graph(calls, fail))
    first = await engine.run({"items": list(range(10))}, checkpoint=db, run_id="r1")
    assert [e is not None for e in first["errors"]].count(True) == 2
    assert calls["prep"] == 1 and calls["item3"] == 1

    fail.clear()
    second = await engine.run({"items": list(range(10))}, checkpoint=db, run_id="r1")
    assert second["rs"] == [i * 2 for i in range(10)]
    assert second["errors"] == [None] * 10
    assert calls["prep"] == 1
    assert calls["item3"] == 2 and calls["item7"] == 2
    assert all(calls[f"item{i}"] == 1 for i in range(10) if i not in (3, 7))
    state = second["$state"]
    assert state.iterations["g/m"].resumed == 8
    assert state.nodes["g/prep"].resumed

    third = await engine.run({"items": list(range(10))}, checkpoint=db, run_id="r1")
    assert third["rs"] == second["rs"]
    assert sum(calls.values()) == 1 + 12


async def test_changed_graph_is_refused_and_changed_inputs_recompute_only_what_changed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    calls: Counter[str] = Counter()
    await Hush(counting_graph(calls, set())).run({"items": [1, 2]}, checkpoint=db, run_id="r")
    with pytest.raises(CheckpointMismatchError, match="'r'"):
        await Hush(counting_graph(calls, set(), name="other")).run(
            {"items": [1, 2]}, checkpoint=db, run_id="r"
        )
    calls.clear()
    result = await Hush(counting_graph(calls, set())).run(
        {"items": [1, 2, 3]}, checkpoint=db, run_id="r"
    )
    assert result["rs"] == [2, 4, 6]
    assert calls == Counter({"prep": 1, "item3": 1})
    calls.clear()
    result = await Hush(counting_graph(calls, set(), name="other")).run(
        {"items": [1, 2]}, checkpoint=db, run_id="r", on_checkpoint_mismatch="restart"
    )
    assert result["rs"] == [2, 4]
    assert calls == Counter({"prep": 1, "item1": 1, "item2": 1})
    calls.clear()
    result = await Hush(counting_graph(calls, set(), name="other")).run(
        {"items": [1, 2]}, checkpoint=db, run_id="r"
    )
    assert calls == Counter(), "an unchanged graph resumes everything"
    result = await Hush(counting_graph(calls, set(), name="other")).run(
        {"items": [1, 2]}, checkpoint=db, run_id="r", restart=True
    )
    assert result["rs"] == [2, 4]
    assert calls == Counter({"prep": 1, "item1": 1, "item2": 1}), "restart=True reran all"
    with pytest.raises(RunOptionError, match="restart=True needs a checkpoint"):
        await Hush(counting_graph(calls, set())).run({"items": [1]}, restart=True)


def test_sigkill_mid_run_then_resume_gives_full_ordered_result(tmp_path: Path) -> None:
    db, out = tmp_path / "run.db", tmp_path / "out.json"
    with MockLLMServer(latency=0.01) as server:
        cmd = [sys.executable, str(CHILD), server.base_url, str(db), "kill-test", str(out)]
        kill_after = random.Random().randint(200, 1500)
        child = subprocess.Popen(cmd)
        deadline = time.monotonic() + 60
        while (
            server.total_requests < kill_after
            and child.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        assert child.poll() is None, "the child finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
        before_kill = Counter(r.body["messages"][-1]["content"] for r in server.requests if r.body)
        assert not out.exists()

        subprocess.run(cmd, check=True, timeout=120)
        result = json.loads(out.read_text())
        asked = Counter(r.body["messages"][-1]["content"] for r in server.requests if r.body)

    assert result["answers"] == [f"[gpt-4o-mini] reply to: item {i}" for i in range(2000)]
    assert result["errors"] == [None] * 2000
    # In flight at the kill: the 20 items running and at most 2 x 20 finished items
    # whose commit was under way (the map's window, SaveWindow).
    twice = [q for q, n in asked.items() if n > 1]
    assert len(twice) <= 60, f"{len(twice)} items were asked twice; at most 3 x 20 may be"
    assert set(twice) <= set(before_kill)
    assert result["resumed"] == 2000 - len(set(asked) - set(before_kill)) - len(twice)
    assert result["resumed"] >= len(before_kill) - 60
