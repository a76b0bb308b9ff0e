"""Where a batch is committed: on the event loop while the writer is idle and the commit is
quick (no hand-off to a thread that a busy loop starves of the GIL), by the writer thread
when a commit could hold the loop (a slow disk, a large batch, another connection's write
lock) or the thread still holds an earlier batch."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import hush.checkpoint.writer as writer_module
from hush.checkpoint import open_checkpoint
from hush.checkpoint.schema import BUSY_TIMEOUT_S


async def test_a_slow_commit_sends_the_commits_after_it_to_the_thread_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 0.0)  # every commit counts as slow
    monkeypatch.setattr(writer_module, "INLINE_BACKOFF_S", 0.2)
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        await store.durable(store.queue("root/a", "d", 1))
        assert store.stats.on_loop == 1, "the first is committed on the loop"
        await store.durable(store.queue("root/b", "d", 2))
        assert (store.stats.commits, store.stats.on_loop) == (2, 1), "the next by the thread"
        await asyncio.sleep(0.25)
        await store.durable(store.queue("root/c", "d", 3))
        assert store.stats.on_loop == 2, "after the back-off, on the loop again"
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        assert [store.load(f"root/{p}", "d") for p in "abc"] == [1, 2, 3]


async def test_a_large_batch_is_committed_by_the_thread(tmp_path: Path) -> None:
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        await store.durable(
            store.queue("root/big", "d", b"x" * (writer_module.INLINE_MAX_BYTES + 1))
        )
        assert (store.stats.commits, store.stats.on_loop) == (1, 0)
        await store.durable(store.queue("root/small", "d", 1))
        assert (store.stats.commits, store.stats.on_loop) == (2, 1)
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


async def test_a_large_bookkeeping_batch_is_committed_by_the_thread(tmp_path: Path) -> None:
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        await store.durable(store.queue("$big", "k", b"x" * (2 * writer_module.INLINE_MAX_BYTES)))
        assert (store.stats.commits, store.stats.on_loop) == (1, 0)


def saved_paths(db: Path) -> set[str]:
    from hush.checkpoint import load_entries

    return set(load_entries(db, "r"))


def test_entries_gathered_when_the_loop_stops_are_committed_when_the_writer_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-over of entries gathered after a commit waits for the rest of the writer's
    pause; a loop that stops first never runs it, and the writer takes them as it closes
    (at interpreter exit, or when the store is collected) without the store being closed."""
    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 60.0)  # no back-off on a loaded machine
    db = tmp_path / "run.db"

    async def main() -> Any:
        store = await open_checkpoint(db, "r", "fp")
        store._writer.pause = 600.0  # the hand-over of 'b' waits longer than the loop runs
        await store.durable(store.queue("root/a", "d", 1))
        store.queue("root/b", "d", 2)
        for _ in range(5):
            await asyncio.sleep(0)
        return store

    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(main())
    loop.close()
    assert saved_paths(db) == {"root/a"}, "'b' is still gathered"
    store._writer.shutdown(30.0)  # what the store's finalizer and interpreter exit do
    assert saved_paths(db) == {"root/a", "root/b"}


def test_a_store_used_on_a_second_loop_hands_over_what_the_first_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 60.0)  # no back-off on a loaded machine
    db = tmp_path / "run.db"

    async def first() -> tuple[Any, int]:
        store = await open_checkpoint(db, "r", "fp")
        store._writer.pause = 600.0
        await store.durable(store.queue("root/a", "d", 1))
        return store, store.queue("root/b", "d", 2)

    store, b = asyncio.run(first())
    store._writer.pause = 0.0

    async def second() -> tuple[bool, bool]:
        c = store.queue("root/c", "d", 3)
        with anyio.move_on_after(10):  # nobody waits: the hand-over is this loop's own
            while not store.committed(c):
                await asyncio.sleep(0.001)
        seen = store.committed(b), store.committed(c)
        await store.aclose()
        return seen

    assert asyncio.run(second()) == (True, True)


async def test_an_interrupt_after_a_commit_on_the_loop_does_not_save_the_batch_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "run.db"
    store = await open_checkpoint(db, "r", "fp")
    wal = store._writer.run_file.wal
    noted = wal.committed
    interrupted: list[int] = []

    def interrupt_once() -> None:  # Ctrl-C right after the commit, as the WAL is noted
        if not interrupted:
            interrupted.append(1)
            raise KeyboardInterrupt
        noted()

    monkeypatch.setattr(wal, "committed", interrupt_once)
    number = store.queue("root/a", "d", 1)
    with pytest.raises(KeyboardInterrupt):
        store._submit_pending()
    assert store.committed(number)
    await store.aclose()
    rows = sqlite3.connect(db).execute("SELECT count(*), sum(entries) FROM chunks").fetchone()
    assert rows == (1, 1), "the batch was committed once"


async def test_an_interrupt_during_a_commit_on_the_loop_leaves_the_busy_timeout_and_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "run.db"
    store = await open_checkpoint(db, "r", "fp")
    run_file = store._writer.run_file
    stored = run_file.store

    def interrupted(batch: Any) -> Any:  # Ctrl-C as the loop's commit starts
        monkeypatch.setattr(run_file, "store", stored)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_file, "store", interrupted)
    number = store.queue("root/a", "d", 1)
    with pytest.raises(KeyboardInterrupt):
        store._submit_pending()
    await asyncio.wait_for(store.durable(number), 30)  # the thread committed it
    assert not run_file.zeroed, "the thread's commit ran with the busy timeout back"
    await store.aclose()
    assert saved_paths(db) == {"root/a"}
    assert not run_file.zeroed, "the connection got its busy timeout back"


async def test_a_fan_of_nodes_finishing_together_shares_its_commits(tmp_path: Path) -> None:
    """Each node waits for its result's commit before its successors start; the nodes that
    finish in one loop turn share one commit (a commit per node cost a fan of 300 trivial
    nodes 73 ms against 43)."""
    from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush

    async def plus(x: int, k: int) -> dict[str, int]:
        return {"y": x + k}

    with GraphNode(name="g") as g:
        for k in range(50):
            node = CodeNode(name=f"n{k}", code_fn=plus, inputs={"x": PARENT["x"], "k": k})
            START >> node >> END
    db = tmp_path / "run.db"
    await Hush(g).run({"x": 1}, checkpoint=db, run_id="fan")
    conn = sqlite3.connect(db)
    chunks, results = conn.execute("SELECT count(*), sum(entries) FROM chunks").fetchone()
    conn.close()
    assert results == 50
    assert chunks <= 5, f"{chunks} commits for 50 nodes that finished together"


async def test_a_wait_commits_a_full_buffer_at_once_and_a_small_one_with_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A map whose window of uncommitted items is full waits on a buffer of many results:
    it is committed there and then, on the loop, and the worker goes on without suspending;
    a few results are committed at the end of the turn, once for every wait of it."""
    from test_commit_numbers import finishes_without_suspending

    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 60.0)
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        many = [store.queue(f"root/m[{i}]", "d", i) for i in range(64)]
        assert finishes_without_suspending(store.durable(many[0]))
        assert store.committed(many[-1]) and store.stats.commits == 1
        few = [store.queue(f"root/n[{i}]", "d", i) for i in range(3)]
        assert not finishes_without_suspending(store.durable(few[0]))
        await asyncio.gather(*(store.durable(n) for n in few))
        assert store.stats.commits == 2, "the turn's waits shared one commit"


class InterruptAfter:
    """The writer's connection, but a Ctrl-C that arrived while ``sql`` ran is raised as
    its ``execute`` returns (CPython runs the handler at the call's end)."""

    def __init__(self, conn: sqlite3.Connection, sql: str) -> None:
        self.conn, self.sql, self.fired = conn, sql, False

    def execute(self, sql: str, *args: Any) -> Any:
        result = self.conn.execute(sql, *args)
        if sql == self.sql and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.mark.parametrize("statement", ["insert", "commit"])
async def test_an_interrupt_as_the_commit_returns_saves_the_batch_once(
    tmp_path: Path, statement: str
) -> None:
    from hush.checkpoint.schema import APPEND_CHUNK

    db = tmp_path / "run.db"
    store = await open_checkpoint(db, "r", "fp")
    run_file = store._writer.run_file
    real = run_file.conn
    # the chunk alone is one autocommit statement; with the run's update time, a transaction
    run_file._touched_at = 1e18 if statement == "insert" else 0.0
    run_file.conn = InterruptAfter(real, APPEND_CHUNK if statement == "insert" else "COMMIT")  # type: ignore[assignment]
    number = store.queue("root/a", "d", 1)
    with pytest.raises(KeyboardInterrupt):
        store._submit_pending()
    await asyncio.wait_for(store.durable(number), 10)
    run_file.conn = real
    await store.aclose()
    rows = sqlite3.connect(db).execute("SELECT count(*), sum(entries) FROM chunks").fetchone()
    assert rows == (1, 1), f"the batch was committed {rows[0]} times"


def test_a_wait_on_the_next_loop_hands_over_what_a_stopped_loop_left(tmp_path: Path) -> None:
    store = asyncio.run(open_checkpoint(tmp_path / "run.db", "r", "fp"))
    loop = asyncio.new_event_loop()

    async def first() -> int:
        number = store.queue("root/b", "d", 2)
        asyncio.get_running_loop().stop()  # the loop stops before its turn ends
        return number

    task = loop.create_task(first())
    loop.run_forever()
    number = task.result()
    loop.close()

    async def second() -> None:
        await asyncio.wait_for(store.durable(number), 10)
        await store.aclose()

    asyncio.run(second())


async def test_a_batch_is_not_committed_on_the_loop_before_one_the_thread_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread has taken batch A but not yet written it; batch B must not be committed
    on the loop first (the watermark would call A committed)."""
    import threading

    release = threading.Event()
    taken = threading.Event()
    commit = writer_module.Writer._commit

    def held(self: Any, batch: Any) -> None:
        if not taken.is_set():
            taken.set()
            assert release.wait(30)
        commit(self, batch)

    monkeypatch.setattr(writer_module, "INLINE_MAX_S", 60.0)
    monkeypatch.setattr(writer_module.Writer, "_commit", held)  # the thread's handler
    async with await open_checkpoint(tmp_path / "run.db", "r", "fp") as store:
        a = store.queue("root/a", "d", 1)
        store._writer.submit(store._buffer.take(store.refused))  # A goes to the thread
        with anyio.fail_after(10):
            while not taken.is_set():
                await asyncio.sleep(0.001)
        b = store.queue("root/b", "d", 2)
        store._submit_pending()
        assert not store.committed(a) and store.stats.on_loop == 0, "B overtook A"
        release.set()
        await asyncio.wait_for(store.durable(b), 10)
        assert store.committed(a)


async def test_the_loop_zeroes_the_busy_timeout_once_and_the_thread_gives_it_back(
    tmp_path: Path,
) -> None:
    """Commits on the loop one after another set the timeout to zero once; a commit of the
    thread's (a large batch) runs with it back, and so does the next wait for the lock."""
    db = tmp_path / "run.db"
    statements: list[str] = []
    async with await open_checkpoint(db, "r", "fp") as store:
        conn = store._writer.run_file.conn
        conn.set_trace_callback(statements.append)
        for i in range(3):
            await store.durable(store.queue(f"root/n{i}", "d", i))
        assert store.stats.on_loop == 3
        big = b"x" * (writer_module.INLINE_MAX_BYTES + 1)
        await store.durable(store.queue("root/big", "d", big))
        conn.set_trace_callback(None)
    pragmas = [s for s in statements if s.startswith("PRAGMA busy_timeout")]
    back = f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}"
    assert pragmas == ["PRAGMA busy_timeout=0", back], statements
    restored = statements.index(back)
    assert all("busy_timeout" not in s for s in statements[restored + 1 :])
    assert any(s.startswith("INSERT") for s in statements[restored + 1 :]), "the thread's commit"
