"""The checkpoint writer rests after a commit, gathering entries, unless someone waits for
them: fewer commits (each takes the GIL from the loop), no later durability for a waiter."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from hush.background import BackgroundWriter
from hush.checkpoint import open_checkpoint
from hush.checkpoint import writer as writer_module


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
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        await store.durable(store.queue("root/a", "d", 1))
        second = store.queue("root/b", "d", 2)
        async with asyncio.timeout(30):
            await store.durable(second)
        assert store.committed(second)
        assert store.stats.commits == 2
