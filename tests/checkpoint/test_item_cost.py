"""A checkpointed map item does only the work its saving needs: an item of one node is
saved whole or not at all, so its node is neither digested nor snapshotted on its own."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.checkpointing import RunCheckpoint
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


def map_graph(calls: Counter[int], steps: int, fail: int | None = None) -> GraphNode:
    """A map whose item body is a chain of ``steps`` counted nodes (failing on ``fail``)."""

    async def step(x: int) -> dict[str, int]:
        calls[x] += 1
        if x == fail:
            raise RuntimeError(f"step failed on {x}")
        return {"x": x + 1}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=2) as m:
            nodes = [CodeNode(name="s0", code_fn=step, inputs={"x": PARENT["x"]})]
            for n in range(1, steps):
                nodes.append(CodeNode(name=f"s{n}", code_fn=step, inputs={"x": nodes[-1]["x"]}))
            nodes[-1]["x"] >> PARENT["y"]
            START >> nodes[0]
            for a, b in pairwise(nodes):
                a >> b
            nodes[-1] >> END
        m["y"] >> PARENT["ys"]
        START >> m >> END
    return g


def count_snapshots(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the snapshots and node keys the run takes (the real methods still run)."""
    seen: Counter[str] = Counter()
    snapshot, key = RunCheckpoint.snapshot_of, RunCheckpoint.key

    def counted_snapshot(self: RunCheckpoint, path: str, *args: Any) -> Any:
        seen["snapshot"] += 1
        return snapshot(self, path, *args)

    def counted_key(self: RunCheckpoint, path: str, inputs: Any) -> Any:
        seen["key " + path.rsplit("/", 1)[-1]] += 1
        return key(self, path, inputs)

    monkeypatch.setattr(RunCheckpoint, "snapshot_of", counted_snapshot)
    monkeypatch.setattr(RunCheckpoint, "key", counted_key)
    return seen


async def test_an_item_of_one_node_takes_no_snapshot_and_still_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = count_snapshots(monkeypatch)
    calls: Counter[int] = Counter()
    db = tmp_path / "run.db"
    first = await Hush(map_graph(calls, steps=1, fail=3)).run(
        {"xs": [1, 2, 3]}, checkpoint=db, run_id="r"
    )
    assert first["ys"] == [2, 3, None]
    assert seen["snapshot"] == 0
    assert seen["key s0"] == 0

    calls.clear()
    again = await Hush(map_graph(calls, steps=1)).run({"xs": [1, 2, 3]}, checkpoint=db, run_id="r")
    assert again["ys"] == [2, 3, 4]
    assert calls == Counter({3: 1})
    assert again["$state"].iterations["g/m"].resumed == 2


async def test_an_item_of_several_nodes_snapshots_each_clean_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = count_snapshots(monkeypatch)
    engine = Hush(map_graph(Counter(), steps=2))
    result = await engine.run({"xs": [1, 2, 3]}, checkpoint=tmp_path / "run.db", run_id="r")
    assert result["ys"] == [3, 4, 5]
    assert seen["snapshot"] == 6
    assert seen["key s0"] == seen["key s1"] == 3
