"""Entries are numbered as they are queued; waiting for a committed one does not suspend, and
only a caller that must wait is woken (by the writer, once its entry is committed)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from hush.checkpoint import CheckpointWriteError, open_checkpoint
from hush.checkpoint.commits import Commits


def finishes_without_suspending(coro: Coroutine[Any, Any, None]) -> bool:
    """Whether ``coro`` returns on its first step (it never gives the loop a turn)."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def test_a_committed_entry_is_waited_for_without_a_suspension(tmp_path: Path) -> None:
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        numbers = [store.queue(f"root/m[{i}]", "d", {"i": i}) for i in range(5)]
        assert numbers == sorted(numbers) and len(set(numbers)) == 5
        assert not store.committed(numbers[-1]), "nothing is committed within the same turn"
        assert not finishes_without_suspending(store.durable(numbers[0]))
        await store.durable(numbers[-1])
        assert all(store.committed(n) for n in numbers), "entries commit in their order"
        assert store.stats.commits == 1, "the loop turn's entries are one commit"
        assert finishes_without_suspending(store.durable(numbers[0]))
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        assert [store.load(f"root/m[{i}]", "d") for i in range(5)] == [{"i": i} for i in range(5)]


async def test_a_wait_for_a_file_another_connection_writes_suspends_the_waiter_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    async with await open_checkpoint(db, "r", "fp") as store:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: no commit can get through
        number = store.queue("root/m[0]", "d", {"i": 0})
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        waiting = asyncio.create_task(store.durable(number))
        while ticks < 50:  # the loop turns: the commit does not wait for the lock on it
            await asyncio.sleep(0)
        assert not waiting.done() and not store.committed(number)
        blocker.execute("ROLLBACK")
        blocker.close()
        await waiting
        ticker.cancel()
        assert store.committed(number)
    async with await open_checkpoint(db, "r", "fp") as store:
        assert store.load("root/m[0]", "d") == {"i": 0}


async def test_waiters_are_woken_by_the_commit_of_their_own_entry() -> None:
    commits = Commits()
    first, second = commits.number(), commits.number()
    woken: list[int] = []

    async def wait(number: int) -> None:
        await commits.wait(number)
        woken.append(number)

    tasks = [asyncio.create_task(wait(n)) for n in (second, first)]
    await asyncio.sleep(0)
    commits.advance(first)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert woken == [first]
    commits.advance(second)
    await asyncio.gather(*tasks)
    assert woken == [first, second]


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    commits = Commits()
    number = commits.number()
    cancelled = commits.waiter(number)
    kept = commits.waiter(number)
    cancelled.cancel()
    commits.advance(number)
    await kept
    assert cancelled.cancelled()


async def test_a_failed_writer_fails_only_the_entries_it_did_not_commit() -> None:
    commits = Commits()
    saved, lost = commits.number(), commits.number()
    commits.advance(saved)
    waiter = commits.waiter(lost)
    commits.fail(lambda: CheckpointWriteError("disk gone"))
    with pytest.raises(CheckpointWriteError, match="disk gone"):
        await waiter
    await commits.wait(saved)
    with pytest.raises(CheckpointWriteError, match="disk gone"):
        await commits.wait(commits.number())


async def test_a_write_failure_reaches_whoever_waits_for_an_entry(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    store = await open_checkpoint(db, "r", "fp")
    await store.flush()
    with sqlite3.connect(db) as other:
        other.execute("DROP TABLE chunks")
    number = store.queue("root/a", "d", 1)
    with pytest.raises(CheckpointWriteError, match="'r'"):
        async with asyncio.timeout(30):
            await store.durable(number)
    with pytest.raises(CheckpointWriteError):
        await store.aclose()
