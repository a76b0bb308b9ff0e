"""A map's workers go on while earlier items are committed, within a bounded window: with
the writer stuck, a map of cap C finishes at most 3 x C items (C running, 2 x C being
committed) and then waits; nothing finished is lost once the writer goes on."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.checkpointing import UNCOMMITTED_PER_WORKER
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each

CAP = 2
ITEMS = 40


async def test_a_stuck_writer_stops_a_map_after_its_window_and_loses_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    started: list[int] = []
    window_full = asyncio.Event()
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    bound = CAP + UNCOMMITTED_PER_WORKER * CAP

    async def work(item: int) -> dict[str, int]:
        if not started:  # the first item takes SQLite's write lock: no commit gets through
            blocker.execute("BEGIN IMMEDIATE")
        started.append(item)
        if len(started) == bound:
            window_full.set()
        await asyncio.sleep(0)
        return {"r": item * 2}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=CAP) as m:
            w = CodeNode(name="work", code_fn=work, inputs={"item": PARENT["item"]})
            w["r"] >> PARENT["r"]
            START >> w >> END
        m["r"] >> PARENT["rs"]
        START >> m >> END

    run = asyncio.create_task(
        Hush(g).run({"items": list(range(ITEMS))}, checkpoint=db, run_id="stuck")
    )
    await window_full.wait()
    for _ in range(200):  # let the workers go as far as they can; the writer cannot move
        await asyncio.sleep(0)
    assert len(started) == bound, f"{len(started)} items started with no commit possible"
    assert not run.done()

    blocker.execute("ROLLBACK")
    blocker.close()
    result = await run
    assert result["rs"] == [i * 2 for i in range(ITEMS)]
    ran = len(started)
    again = await Hush(g).run({"items": list(range(ITEMS))}, checkpoint=db, run_id="stuck")
    assert again["rs"] == result["rs"]
    assert len(started) == ran, "every finished item was committed: none runs again"
