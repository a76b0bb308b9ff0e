"""The checkpoint writer thread rests after a commit, gathering entries, unless someone waits
for them: fewer commits (each takes the GIL from the loop), no later durability for a
waiter; entries committed on the loop are gathered as long."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from hush.background import BackgroundWriter
from hush.checkpoint import open_checkpoint
from hush.checkpoint import writer as writer_module


def on_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every commit is made by the writer thread (none on the event loop)."""
    monkeypatch.setattr(writer_module.Writer, "idle", lambda self, commits: False)


def test_items_queued_during_a_pause_are_one_batch_and_hurry_ends_it() -> None:
    batches: list[list[str]] = []
    first_done = threading.Event()

    def handle(batch: list[str]) -> None:
        batches.append(batch)
        first_done.set()

    writer = BackgroundWriter[str](handle, name="paused", pause=600.0)
    try:
        writer.put("a")
        assert first_done.wait(30), "an item reaching an idle writer is handled at once"
        writer.put("b")
        writer.put("c")
        writer.hurry()
        assert writer.flush(30)
        assert batches == [["a"], ["b", "c"]]
        writer.put("d")
        assert writer.flush(30), "a barrier cuts a pause short"
        assert batches[-1] == ["d"]
    finally:
        assert writer.close(30)


async def test_waiting_for_a_commit_cuts_the_pause_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "PAUSE_S", 600.0)
    on_the_thread(monkeypatch)
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        await store.durable(store.queue("root/a", "d", 1))
        second = store.queue("root/b", "d", 2)
        async with asyncio.timeout(30):
            await store.durable(second)
        assert store.committed(second)
        assert store.stats.commits == 2


async def test_a_wait_asked_while_the_writer_takes_an_earlier_batch_still_cuts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer clears a hurry when it takes a batch: if it takes an earlier batch between
    a wait being asked and the awaited entry being handed over, the hand-over hurries it
    again, so the entry is not left for the writer's rest."""
    monkeypatch.setattr(writer_module, "PAUSE_S", 600.0)
    on_the_thread(monkeypatch)
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        await store.durable(store.queue("root/a", "d", 1))
        earlier = store.queue("root/b", "d", 2)
        await asyncio.sleep(0)  # handed over: it waits in the resting writer's queue

        def writer_takes_the_earlier_batch_first() -> None:
            for _ in range(10_000):
                if store.committed(earlier):
                    return
                time.sleep(0.001)

        asyncio.get_running_loop().call_soon(writer_takes_the_earlier_batch_first)
        awaited = store.queue("root/c", "d", 3)
        async with asyncio.timeout(30):
            await store.durable(awaited)
        assert store.committed(earlier) and store.committed(awaited)


async def test_entries_committed_on_the_loop_are_gathered_for_the_pause_unless_awaited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 60.0)  # no back-off on a loaded machine
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        store._writer.pause = 600.0  # a pause no test outlasts
        await store.durable(store.queue("root/a", "d", 1))
        later = [store.queue(f"root/b{i}", "d", i) for i in range(3)]
        for _ in range(20):  # loop turns: the entries stay gathered
            await asyncio.sleep(0)
        assert not store.committed(later[0])
        await store.durable(later[-1])  # a wait commits them at once, together
        assert store.stats.commits == 2 and store.stats.on_loop == 2
