"""A run's own counters: every permit of the run reports to them, and only the run's."""

from __future__ import annotations

import asyncio

import pytest

from hush.providers.limiter import ResourceLimiter
from hush.providers.run_counters import ResourceCounts, RunCounters, counting, current


def test_outside_counting_no_run_counts() -> None:
    assert current.get() is None
    with counting() as counters:
        assert current.get() is counters
    assert current.get() is None


async def test_each_outcome_of_a_permit_counts_in_the_run_that_asked() -> None:
    limiter = ResourceLimiter("llm:counted", max_in_flight=4)
    with counting() as counters:
        with await limiter.acquire(10) as answered:
            answered.commit(12)
        with await limiter.acquire() as limited:
            pause = limited.rate_limited(retry_after=0.25)
        with await limiter.acquire() as failing:
            failing.failed()
            failing.commit(99)
        limiter.note_retry()
        with await limiter.acquire():
            pass
    assert pause == pytest.approx(0.25)
    counts = counters.get("llm:counted")
    assert (counts.sent, counts.ok, counts.rate_limited, counts.errors, counts.retries) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert counts.tokens_used == 12
    assert counts.paused_for_s == pytest.approx(0.25)
    stats = limiter.stats()
    assert (stats.sent, stats.ok, stats.rate_limited, stats.errors) == (4, 1, 1, 1)
    assert counters.snapshot()["llm:counted"]["sent"] == 4


async def test_requests_outside_a_run_count_only_process_wide() -> None:
    limiter = ResourceLimiter("llm:uncounted")
    with counting() as counters:
        pass
    with await limiter.acquire() as permit:
        permit.commit(5)
    assert permit.counters is None
    assert counters.snapshot() == {}
    assert limiter.stats().sent == 1


async def test_a_nested_run_counts_in_its_own_and_in_the_enclosing_runs_counters() -> None:
    limiter = ResourceLimiter("llm:nested")
    with counting() as outer:
        with await limiter.acquire() as permit:
            permit.commit(1)
        with counting() as inner:
            assert inner.parent is outer
            for _ in range(2):
                with await limiter.acquire() as permit:
                    permit.commit(1)
    assert inner.get("llm:nested").sent == 2
    assert outer.get("llm:nested").sent == 3
    assert outer.get("llm:nested").tokens_used == 3


async def test_a_waiter_granted_on_another_runs_release_counts_in_its_own_run() -> None:
    """The grant happens in the releasing run's context; the counts follow the waiter."""
    limiter = ResourceLimiter("llm:handover", max_in_flight=1)
    holding = asyncio.Event()
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def first() -> RunCounters:
        with counting() as counters, await limiter.acquire() as permit:
            holding.set()
            await release.wait()
            permit.commit(1)
        return counters

    async def second() -> RunCounters:
        await holding.wait()
        with counting() as counters:
            acquiring = asyncio.ensure_future(limiter.acquire())
            while limiter.stats().waiting == 0:
                await asyncio.sleep(0)
            waiting.set()
            with await acquiring as permit:
                permit.commit(2)
        return counters

    async def releaser() -> None:
        await waiting.wait()
        release.set()

    a, b, _ = await asyncio.gather(first(), second(), releaser())
    assert a.get("llm:handover") == ResourceCounts(sent=1, ok=1, tokens_used=1)
    counted_b = b.get("llm:handover")
    assert (counted_b.sent, counted_b.ok, counted_b.tokens_used) == (1, 1, 2)
    assert counted_b.wait_time_s > 0.0


async def test_two_concurrent_tasks_each_count_only_their_own_requests() -> None:
    limiter = ResourceLimiter("llm:two", max_in_flight=3)

    async def run(calls: int) -> RunCounters:
        with counting() as counters:

            async def call() -> None:
                with await limiter.acquire() as permit:
                    await asyncio.sleep(0)
                    permit.commit(1)

            await asyncio.gather(*(call() for _ in range(calls)))
        return counters

    five, seven = await asyncio.gather(run(5), run(7))
    assert five.get("llm:two").sent == 5
    assert seven.get("llm:two").sent == 7
    assert limiter.stats().sent == 12
