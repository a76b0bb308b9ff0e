"""The background writer: batching, barriers, close, failures, a full queue, exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hush.background import BackgroundWriter, WriterFailedError

WAIT = 10.0


class Gate:
    """A handler that records each batch and can be held shut until a test opens it."""

    def __init__(self, *, shut: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        if not shut:
            self.open.set()

    def __call__(self, batch: list[int]) -> None:
        self.entered.set()
        assert self.open.wait(WAIT), "the test never opened the gate"
        self.batches.append(list(batch))

    @property
    def items(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


def test_items_queued_while_the_handler_works_come_as_one_batch() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-batching", batch_size=100)
    writer.put(0)
    assert gate.entered.wait(WAIT)
    for item in range(1, 51):
        writer.put(item)
    gate.open.set()
    assert writer.flush(WAIT)
    assert gate.items == list(range(51))
    assert gate.batches == [[0], list(range(1, 51))]
    assert (writer.handled, writer.batches) == (51, 2)
    writer.close()


def test_a_batch_holds_at_most_batch_size_items() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-batch-size", batch_size=7)
    writer.put(0)
    assert gate.entered.wait(WAIT)
    for item in range(1, 31):
        writer.put(item)
    gate.open.set()
    assert writer.close(WAIT)
    assert gate.items == list(range(31))
    assert max(len(batch) for batch in gate.batches) == 7


def test_flush_returns_after_everything_before_it_and_runs_then_in_order() -> None:
    seen: list[str] = []
    writer = BackgroundWriter[str](seen.extend, name="test-flush")
    writer.put("a")
    assert writer.flush(WAIT, then=lambda: seen.append("flushed"))
    writer.put("b")
    assert writer.flush(WAIT)
    assert seen == ["a", "flushed", "b"]
    writer.close()


async def test_aflush_resolves_on_the_loop_after_what_was_queued_before() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-aflush")
    writer.put(1)
    flushed = asyncio.ensure_future(writer.aflush(WAIT))
    await asyncio.sleep(0)
    assert not flushed.done()
    gate.open.set()
    assert await flushed
    assert gate.items == [1]
    await writer.aclose()


def test_flush_times_out_while_the_handler_is_stuck() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-flush-timeout")
    writer.put(1)
    assert gate.entered.wait(WAIT)
    assert writer.flush(0.01) is False
    gate.open.set()
    assert writer.flush(WAIT)
    writer.close()


def test_close_drains_runs_on_close_once_and_is_idempotent() -> None:
    gate = Gate(shut=True)
    closed: list[int] = []
    writer = BackgroundWriter(
        gate, name="test-close", on_close=lambda: closed.append(len(gate.items))
    )
    for item in range(5):
        writer.put(item)
    assert writer.close(0.01) is False
    gate.open.set()
    assert writer.close(WAIT)
    assert writer.close(WAIT)
    assert gate.items == list(range(5))
    assert closed == [5]
    with pytest.raises(RuntimeError, match=r"test-close.*closed"):
        writer.put(6)
    assert writer.offer(6) is False
    assert writer.dropped == 0
    assert writer.flush(WAIT)


async def test_aclose_twice_from_the_loop() -> None:
    gate = Gate()
    writer = BackgroundWriter(gate, name="test-aclose")
    await writer.aput(1)
    assert await writer.aclose(WAIT)
    assert await writer.aclose(WAIT)
    assert gate.items == [1]


def test_a_writer_never_used_closes() -> None:
    closed = threading.Event()
    writer = BackgroundWriter[int](lambda batch: None, name="test-unused", on_close=closed.set)
    assert writer.close(WAIT)
    assert closed.is_set()


def test_a_handler_error_is_recorded_once_and_later_items_are_rejected() -> None:
    failures: list[BaseException] = []
    rejected: list[int] = []
    gate = Gate(shut=True)

    def handler(batch: list[int]) -> None:
        gate(batch)
        if 2 in batch:
            raise OSError("disk full")

    writer = BackgroundWriter(
        handler,
        name="test-error",
        on_failure=failures.append,
        rejected=lambda batch, exc: rejected.extend(batch),
    )
    writer.put(1)
    assert gate.entered.wait(WAIT)
    writer.put(2)
    writer.put(3)
    gate.open.set()
    assert writer.flush(WAIT)
    assert [str(exc) for exc in failures] == ["disk full"]
    assert isinstance(writer.failure, OSError)
    assert rejected == [2, 3]
    with pytest.raises(WriterFailedError, match=r"test-error.*disk full") as raised:
        writer.put(4)
    assert raised.value.__cause__ is writer.failure
    assert writer.close(WAIT)


def test_a_counting_writer_drops_what_comes_after_a_failure() -> None:
    def handler(batch: list[int]) -> None:
        raise ValueError("bad")

    failures: list[BaseException] = []
    writer = BackgroundWriter(
        handler, name="test-count", on_error="count", on_failure=failures.append
    )
    writer.put(1)
    assert writer.flush(WAIT)
    assert writer.offer(2) is False
    writer.put(3)
    assert writer.take_dropped() == 2
    assert writer.dropped == 0
    assert [type(exc) for exc in failures] == [ValueError]
    writer.close()


def test_a_full_queue_drops_and_counts_offers_but_forced_items_pass() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-drop", maxsize=3)
    writer.offer(0)
    assert gate.entered.wait(WAIT)
    assert [writer.offer(item) for item in range(1, 6)] == [True, True, True, False, False]
    assert writer.offer(6, force=True)
    assert writer.dropped == 2
    gate.open.set()
    assert writer.close(WAIT)
    assert gate.items == [0, 1, 2, 3, 6]


def test_a_full_queue_blocks_a_producer_thread_until_the_thread_takes_items() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-block", maxsize=2)
    writer.put(0)
    assert gate.entered.wait(WAIT)
    writer.put(1)
    writer.put(2)
    with pytest.raises(TimeoutError, match="test-block"):
        writer.put(3, timeout=0.01)
    done = threading.Event()

    def producer() -> None:
        writer.put(3)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.is_set()
    gate.open.set()
    assert done.wait(WAIT)
    thread.join()
    assert writer.close(WAIT)
    assert gate.items == [0, 1, 2, 3]
    assert writer.dropped == 0


async def test_a_full_queue_never_blocks_the_loop_aput_waits_for_room() -> None:
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name="test-aput", maxsize=1)
    await writer.aput(0)
    assert await asyncio.to_thread(gate.entered.wait, WAIT)
    await writer.aput(1)
    with pytest.raises(RuntimeError, match="would block the event loop"):
        writer.put(2)
    waiting = asyncio.ensure_future(writer.aput(2))
    await asyncio.sleep(0)
    assert not waiting.done()
    gate.open.set()
    await asyncio.wait_for(waiting, WAIT)
    assert await writer.aclose(WAIT)
    assert gate.items == [0, 1, 2]


def test_a_writer_shared_by_two_threads_each_with_its_event_loop() -> None:
    seen: list[tuple[int, int]] = []
    writer = BackgroundWriter[tuple[int, int]](seen.extend, name="test-two-loops", maxsize=8)
    flushed: list[bool] = []

    def producer(who: int) -> None:
        async def main() -> None:
            for n in range(200):
                await writer.aput((who, n))
            flushed.append(await writer.aflush(WAIT))

        asyncio.run(main())

    threads = [threading.Thread(target=producer, args=(who,)) for who in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert flushed == [True, True]
    for who in range(2):
        assert [n for w, n in seen if w == who] == list(range(200))
    writer.close()


def test_linger_gathers_items_until_a_barrier_cuts_it_short() -> None:
    gate = Gate()
    writer = BackgroundWriter(gate, name="test-linger", linger=WAIT * 2)
    for item in range(5):
        writer.put(item)
    assert writer.flush(WAIT)
    assert gate.batches == [[0, 1, 2, 3, 4]]
    writer.close(WAIT)


@pytest.mark.parametrize("rest", ["linger", "pause"])
def test_a_barrier_behind_more_than_a_batch_is_not_kept_waiting(rest: str) -> None:
    """A flush behind several batches' worth of items: a writer lingers (or pauses) only when
    its queue was drained, so the batches after the first are taken at once and the flush
    returns in much less than one wait per batch."""
    gate = Gate(shut=True)
    writer = BackgroundWriter(gate, name=f"test-{rest}-backlog", batch_size=2, **{rest: WAIT})
    writer.put(0)
    writer.hurry()  # the first batch goes at once, and the handler holds the thread
    assert gate.entered.wait(WAIT)
    for item in range(1, 7):
        writer.put(item)
    flushed = threading.Event()
    waiter = threading.Thread(target=lambda: writer.flush(3 * WAIT) and flushed.set())
    waiter.start()
    gate.open.set()
    assert flushed.wait(WAIT / 2), f"the flush waited a {rest} for a batch behind another"
    assert gate.items == list(range(7))
    waiter.join(WAIT)
    writer.close(WAIT)


def test_an_idle_thread_ends_and_the_next_item_starts_another() -> None:
    gate = Gate()
    writer = BackgroundWriter(gate, name="test-idle", idle_exit=0.0)
    writer.put(1)
    assert writer.flush(WAIT)
    first = writer._thread
    if first is not None:
        first.join(WAIT)
    assert writer._thread is None
    writer.put(2)
    assert writer.close(WAIT)
    assert gate.items == [1, 2]


def test_on_idle_runs_when_the_queue_is_empty() -> None:
    idle = threading.Event()
    writer = BackgroundWriter[int](lambda batch: None, name="test-on-idle", on_idle=idle.set)
    writer.put(1)
    assert idle.wait(WAIT)
    writer.close()


def test_flush_from_the_writers_own_thread_is_refused() -> None:
    errors: list[str] = []
    writer: BackgroundWriter[int]

    def handler(batch: list[int]) -> None:
        try:
            writer.flush()
        except RuntimeError as exc:
            errors.append(str(exc))

    writer = BackgroundWriter(handler, name="test-self")
    writer.put(1)
    assert writer.flush(WAIT)
    assert errors and "deadlock" in errors[0]
    writer.begin_close()
    assert writer.wait_closed(WAIT)


def test_close_from_the_writers_own_thread_does_not_wait_for_itself() -> None:
    results: list[bool] = []
    writer: BackgroundWriter[int]

    def handler(batch: list[int]) -> None:
        results.append(writer.close(WAIT))

    writer = BackgroundWriter(handler, name="test-self-close")
    writer.put(1)
    assert writer.wait_closed(WAIT)
    assert results == [False]
    assert writer.closed


def test_bad_settings_name_the_writer() -> None:
    with pytest.raises(ValueError, match=r"'bad'.*batch_size"):
        BackgroundWriter[int](lambda batch: None, name="bad", batch_size=0)
    with pytest.raises(ValueError, match=r"'bad'.*on_error"):
        BackgroundWriter[int](lambda batch: None, name="bad", on_error="ignore")  # type: ignore[arg-type]


def test_a_process_that_exits_without_closing_still_hands_over_what_it_queued(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.txt"
    script = textwrap.dedent(
        f"""
        import time
        from hush.background import BackgroundWriter

        def handler(batch):
            time.sleep(0.01)
            with open({str(out)!r}, "a") as f:
                f.writelines(f"{{item}}\\n" for item in batch)

        writer = BackgroundWriter(handler, name="exit-test", batch_size=10)
        for item in range(100):
            writer.put(item)
        idle = BackgroundWriter(handler, name="idle-at-exit", idle_exit=0.0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert out.read_text().split() == [str(n) for n in range(100)]


def test_a_writer_stuck_at_exit_is_left_after_its_exit_timeout_with_one_warning(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import threading
        from hush.background import BackgroundWriter

        never = threading.Event()
        writer = BackgroundWriter(lambda batch: never.wait(), name="stuck", exit_timeout=0.1)
        writer.put(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "stuck did not finish within 0.1 s of interpreter exit" in done.stderr
