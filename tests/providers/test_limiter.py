"""ResourceLimiter on its own: FIFO, caps, pauses, adaptation, cancellation, loops."""

from __future__ import annotations

import asyncio
import time

import pytest

from hush.providers.limiter import (
    DEFAULT_MAX_CONCURRENCY,
    INITIAL_RPM,
    ResourceLimiter,
    get_limiter,
)
from hush.providers.resources import LLMResource


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = ResourceLimiter("llm:fifo", rpm=600_000, max_concurrency=1)
    first = await limiter.acquire()
    order: list[int] = []

    async def take(index: int, tokens: int) -> None:
        with await limiter.acquire(tokens):
            order.append(index)
            await asyncio.sleep(0)

    tasks = []
    for index in range(6):
        tasks.append(asyncio.create_task(take(index, tokens=(6 - index) * 10)))
        await asyncio.sleep(0)
    assert limiter.stats().waiting == 6
    first.release()
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert limiter.stats().in_flight == 0


async def test_in_flight_cap() -> None:
    limiter = ResourceLimiter("llm:cap", rpm=600_000, max_concurrency=3)
    inside = peak = 0

    async def call() -> None:
        nonlocal inside, peak
        with await limiter.acquire():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.gather(*(call() for _ in range(20)))
    assert peak == 3
    stats = limiter.stats()
    assert stats.sent == 20 and stats.in_flight == 0 and stats.waiting == 0


async def test_request_rate_spaces_requests() -> None:
    limiter = ResourceLimiter("llm:rpm", rpm=1200)  # 20/s, bucket holds 2
    started = time.monotonic()
    for _ in range(10):
        (await limiter.acquire()).release()
    # 2 in the initial burst, then one per 50 ms: at least 8 x 50 ms.
    assert time.monotonic() - started >= 0.39


async def test_token_rate_counts_tokens_and_commit_refunds() -> None:
    limiter = ResourceLimiter("llm:tpm", rpm=600_000, tpm=60_000)  # 1000 tokens/s, holds 100
    permit = await limiter.acquire(100)
    started = time.monotonic()
    with await limiter.acquire(100):
        pass
    waited = time.monotonic() - started
    assert waited >= 0.09  # the bucket had to refill 100 tokens
    # The first request really used 10 tokens: committing refunds 90.
    permit.commit(10)
    permit.release()
    with await limiter.acquire(50) as third:
        assert third.waited_s == 0.0
    assert limiter.stats().tokens_used == 10


async def test_rate_limited_pauses_the_resource_and_cuts_the_rate() -> None:
    limiter = ResourceLimiter("llm:429", rpm=6000)
    permit = await limiter.acquire()
    pause = permit.rate_limited({"x-ratelimit-remaining-requests": "0"}, retry_after=0.25)
    permit.release()
    assert pause == 0.25
    stats = limiter.stats()
    assert stats.rate_limited == 1
    assert stats.rpm is not None and stats.rpm < 6000
    assert stats.paused_for_s > 0.2
    started = time.monotonic()
    (await limiter.acquire()).release()
    assert time.monotonic() - started >= 0.24


async def test_one_cut_per_round_trip() -> None:
    limiter = ResourceLimiter("llm:cuts", rpm=6000)
    permits = [await limiter.acquire() for _ in range(5)]
    for permit in permits:
        permit.rate_limited({}, retry_after=0.0)
        permit.release()
    stats = limiter.stats()
    assert stats.rate_limited == 5
    assert stats.rpm == pytest.approx(6000 * 0.75)


async def test_learns_limits_from_headers() -> None:
    limiter = ResourceLimiter("llm:learn")
    assert limiter.stats().rpm == INITIAL_RPM
    assert limiter.stats().tpm is None
    assert limiter.max_concurrency == DEFAULT_MAX_CONCURRENCY
    permit = await limiter.acquire(10)
    permit.commit(
        12,
        {
            "x-ratelimit-limit-requests": "6000",
            "x-ratelimit-remaining-requests": "5999",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149990",
        },
    )
    permit.release()
    stats = limiter.stats()
    assert (stats.rpm, stats.rpm_limit) == (6000, 6000)
    assert (stats.tpm, stats.tpm_limit) == (150000, 150000)


async def test_configured_limit_below_advertised_one_wins() -> None:
    limiter = ResourceLimiter("llm:both", rpm=100)
    permit = await limiter.acquire()
    permit.commit(1, {"x-ratelimit-limit-requests": "6000"})
    permit.release()
    assert limiter.stats().rpm == 100


async def test_headers_ignored_when_disabled() -> None:
    limiter = ResourceLimiter("llm:deaf", learn_from_headers=False)
    permit = await limiter.acquire()
    permit.commit(1, {"x-ratelimit-limit-requests": "6000"})
    permit.release()
    assert limiter.stats().rpm == INITIAL_RPM


async def test_slow_start_grows_while_demand_is_held_back() -> None:
    limiter = ResourceLimiter("llm:grow")

    async def call() -> None:
        with await limiter.acquire() as permit:
            await asyncio.sleep(0.01)
            permit.commit(1)

    await asyncio.gather(*(call() for _ in range(12)))
    stats = limiter.stats()
    assert stats.rpm is not None and stats.rpm > INITIAL_RPM


async def test_cancelled_waiter_leaves_no_trace() -> None:
    limiter = ResourceLimiter("llm:cancel", max_concurrency=1)
    holder = await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    behind = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    holder.release()
    permit = await asyncio.wait_for(behind, 1)
    assert limiter.stats().in_flight == 1
    permit.release()
    assert limiter.stats().in_flight == 0
    assert limiter.stats().waiting == 0


async def test_paused_resource_never_blocks_another() -> None:
    slow = ResourceLimiter("llm:slow", rpm=1)
    fast = ResourceLimiter("llm:fast", rpm=600_000)
    (await slow.acquire()).release()
    stuck = asyncio.create_task(slow.acquire())  # next slot in ~60 s
    await asyncio.sleep(0)
    for _ in range(5):
        (await fast.acquire()).release()
    assert not stuck.done()
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck


def test_limiter_survives_a_new_event_loop() -> None:
    limiter = ResourceLimiter("llm:loops", max_concurrency=1)

    async def leak() -> None:
        await limiter.acquire()  # never released: its loop ends

    async def use() -> int:
        with await asyncio.wait_for(limiter.acquire(), 1):
            return limiter.stats().in_flight

    asyncio.run(leak())
    assert asyncio.run(use()) == 1
    assert limiter.stats().sent == 2


def test_get_limiter_is_shared_and_follows_config() -> None:
    resource = LLMResource(model="m", rpm=100)
    first = get_limiter("llm:shared-test", resource)
    assert get_limiter("llm:shared-test", LLMResource(model="m", rpm=100)) is first
    changed = get_limiter("llm:shared-test", LLMResource(model="m", rpm=200))
    assert changed is not first
    assert changed.stats().rpm == 200
