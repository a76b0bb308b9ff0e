"""A map's workers go on while earlier items are committed, within a bounded window: with
the writer stuck, a map of cap C finishes at most 3 x C items (C running, 2 x C being
committed) and then waits; nothing finished is lost once the writer goes on. The window's
rule is also checked alone, against a stand-in for the one thing it reads of the store: the
watermark of committed entry numbers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.checkpointing import UNCOMMITTED_PER_WORKER, SaveWindow
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


class Watermark:
    """``committed(n)`` of a store whose entries up to ``done`` are committed."""

    def __init__(self) -> None:
        self.done = 0
        self.asked = 0

    def committed(self, number: int) -> bool:
        self.asked += 1
        return number <= self.done


class Checkpoint:
    def __init__(self) -> None:
        self.store = Watermark()

    def saved(self, path: str, number: int) -> Any:
        return ("wait for", number)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(1, 3), st.integers(0, 40)), max_size=60))
def test_a_worker_waits_exactly_when_more_than_the_window_is_uncommitted(
    workers: int, steps: list[tuple[int, int]]
) -> None:
    """Items finish with increasing numbers (gaps: other saves) and commits catch up by
    jumps; ``finished`` asks to wait, for the oldest over the window, exactly when more than
    ``2 * workers`` finished items are not committed."""
    checkpoint = Checkpoint()
    window = SaveWindow(checkpoint, "g/map", workers)  # type: ignore[arg-type]
    size = UNCOMMITTED_PER_WORKER * workers
    finished: list[int] = []
    number = 0
    for gap, commits in steps:
        number += gap
        finished.append(number)
        checkpoint.store.done = max(checkpoint.store.done, number - commits)
        uncommitted = [n for n in finished if n > checkpoint.store.done]
        expected = ("wait for", uncommitted[-size - 1]) if len(uncommitted) > size else None
        assert window.finished(number) == expected


def test_the_window_asks_about_commits_a_few_times_per_hundred_items() -> None:
    """Steady state of a busy map: each commit covers the items finished since the one
    before; the committed prefix is dropped at once, not one item at a time."""
    checkpoint = Checkpoint()
    window = SaveWindow(checkpoint, "g/map", 100)
    for number in range(1, 20_001):
        if number % 120 == 0:
            checkpoint.store.done = number - 60
        assert window.finished(number) is None
    assert checkpoint.store.asked < 20_000 * 0.1
