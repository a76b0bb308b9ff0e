"""Where a batch is committed: on the event loop while the writer is idle and the commit is
quick (no hand-off to a thread that a busy loop starves of the GIL), by the writer thread
when a commit could hold the loop (a slow disk, a large batch, another connection's write
lock) or the thread still holds an earlier batch."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import hush.checkpoint.writer as writer_module
from hush.checkpoint import open_checkpoint


def finishes_without_suspending(coro: Coroutine[Any, Any, None]) -> bool:
    """Whether ``coro`` returns on its first step (it never gives the loop a turn)."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def test_a_slow_commit_sends_the_commits_after_it_to_the_thread_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 0.0)  # every commit counts as slow
    monkeypatch.setattr(writer_module, "INLINE_BACKOFF_S", 0.2)
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        first = store.queue("root/a", "d", 1)
        assert finishes_without_suspending(store.durable(first)), "the first is committed here"
        second = store.queue("root/b", "d", 2)
        assert not finishes_without_suspending(store.durable(second)), "the next goes to the thread"
        await store.durable(second)
        assert store.stats.on_loop == 1
        await asyncio.sleep(0.25)
        third = store.queue("root/c", "d", 3)
        assert finishes_without_suspending(store.durable(third)), "after the back-off, here again"
        assert store.stats.on_loop == 2
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        assert [store.load(f"root/{p}", "d") for p in "abc"] == [1, 2, 3]


async def test_a_large_batch_is_committed_by_the_thread(tmp_path: Path) -> None:
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        big = store.queue("root/big", "d", b"x" * (writer_module.INLINE_MAX_BYTES + 1))
        assert not finishes_without_suspending(store.durable(big))
        await store.durable(big)
        small = store.queue("root/small", "d", 1)
        assert finishes_without_suspending(store.durable(small))
        assert store.stats.on_loop == 1
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        assert store.load("root/small", "d") == 1 and len(store.load("root/big", "d")) > 1


async def test_a_batch_after_one_the_thread_holds_waits_for_it(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        held = store.queue("root/a", "d", 1)
        first = asyncio.create_task(store.durable(held))  # busy here: handed to the thread
        await asyncio.sleep(0.01)
        blocker.execute("ROLLBACK")
        after = store.queue("root/b", "d", 2)  # the thread may not have committed 'a' yet
        await store.durable(after)
        await first
        blocker.close()
        assert store.committed(held) and store.committed(after)
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM chunks").fetchone()[0]
    async with await open_checkpoint(db, "r", "fp") as store:
        assert (store.load("root/a", "d"), store.load("root/b", "d")) == (1, 2)
    assert rows >= 1


async def test_a_map_whose_commits_are_made_on_the_loop_resumes_with_nothing_to_run(
    tmp_path: Path,
) -> None:
    from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
    from hush.core.nodes.iteration import MapNode
    from hush.core.nodes.iteration.base import Each

    ran: list[int] = []

    async def body(x: int) -> dict[str, int]:
        ran.append(x)
        await asyncio.sleep(0)
        return {"y": x * 2}

    with GraphNode(name="g") as g:
        with MapNode(name="m", inputs={"x": Each(PARENT["xs"])}, max_concurrency=20) as m:
            n = CodeNode(name="body", code_fn=body, inputs={"x": PARENT["x"]})
            n["y"] >> PARENT["y"]
            START >> n >> END
        m["y"] >> PARENT["ys"]
        START >> m >> END
    db = tmp_path / "run.db"
    first = await Hush(g).run({"xs": list(range(2000))}, checkpoint=db, run_id="r")
    assert first["ys"] == [x * 2 for x in range(2000)] and len(ran) == 2000
    saved = sqlite3.connect(db).execute("SELECT coalesce(sum(entries), 0) FROM chunks")
    assert saved.fetchone()[0] == 2001, "every item's result is in the file, and the map's"
    ran.clear()
    again = await Hush(g).run({"xs": list(range(2000))}, checkpoint=db, run_id="r")
    assert again["ys"] == first["ys"] and ran == [], "nothing ran again"
