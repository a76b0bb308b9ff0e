"""ResourceLimiter on its own: FIFO, caps, cancellation, refusals, many loops and threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hush.providers.breaker import THRESHOLD
from hush.providers.errors import ResourceUnavailableError
from hush.providers.limiter import ResourceLimiter, get_limiter
from hush.providers.rates import HEADROOM
from hush.providers.resources import LLMResource


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = ResourceLimiter("llm:fifo", rpm=600_000, max_in_flight=1)
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
    limiter = ResourceLimiter("llm:cap", rpm=600_000, max_in_flight=3)
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


async def test_an_unconfigured_resource_lets_parallel_calls_overlap() -> None:
    limiter = ResourceLimiter("llm:open")
    permits = [await asyncio.wait_for(limiter.acquire(), 0.1) for _ in range(12)]
    assert limiter.stats().in_flight == 12
    for permit in permits:
        permit.release()


async def test_request_rate_spaces_requests() -> None:
    limiter = ResourceLimiter("llm:rpm", rpm=1200)  # ~19.4/s, bucket holds 1.9
    started = time.monotonic()
    for _ in range(10):
        (await limiter.acquire()).release()
    assert time.monotonic() - started >= 8 * 60 / (1200 * HEADROOM) * 0.95


async def test_a_cancelled_waiter_leaves_the_queue_at_once() -> None:
    limiter = ResourceLimiter("llm:cancel", max_in_flight=1)
    holder = await limiter.acquire()
    waiting = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    behind = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.stats().waiting == 4
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert limiter.stats().waiting == 1
    holder.release()
    permit = await asyncio.wait_for(behind, 1)
    assert limiter.stats().in_flight == 1
    permit.release()
    assert limiter.stats().in_flight == 0


async def test_a_long_retry_after_refuses_every_call_at_once() -> None:
    limiter = ResourceLimiter("llm:quota", rpm=600_000, max_in_flight=1, max_retry_wait=60)
    permit = await limiter.acquire()
    queued = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    permit.rate_limited({}, retry_after=86_400)
    permit.release()
    with pytest.raises(ResourceUnavailableError, match=r"retry after 86400 s, more than max_re"):
        await asyncio.wait_for(queued, 1)
    with pytest.raises(ResourceUnavailableError, match="spent quota"):
        await limiter.acquire()


async def test_an_unreachable_resource_fails_fast_until_a_probe_reaches_it() -> None:
    now = [0.0]
    limiter = ResourceLimiter("llm:down", base_url="http://127.0.0.1:9/v1", clock=lambda: now[0])
    for _ in range(THRESHOLD):
        with await limiter.acquire() as permit:
            permit.failed(unreachable="Connection refused")
    with pytest.raises(ResourceUnavailableError, match=r"cannot connect to http://127.0.0.1:9/v1"):
        await limiter.acquire()
    now[0] = 100.0
    with await limiter.acquire() as probe:
        with pytest.raises(ResourceUnavailableError):
            await limiter.acquire()  # one probe at a time
        probe.commit(0)
    (await limiter.acquire()).release()


async def test_a_paused_resource_never_blocks_another() -> None:
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


def test_loops_in_two_threads_share_one_budget() -> None:
    limiter = ResourceLimiter("llm:threads", rpm=600_000, max_in_flight=4)
    inside = peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    async def calls() -> None:
        nonlocal inside, peak

        async def one() -> None:
            nonlocal inside, peak
            with await limiter.acquire():
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                await asyncio.sleep(0.01)
                with lock:
                    inside -= 1

        await asyncio.gather(*(one() for _ in range(20)))

    def thread() -> None:
        try:
            asyncio.run(calls())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert peak == 4
    assert limiter.stats().sent == 40 and limiter.stats().in_flight == 0


def test_permits_left_out_by_a_closed_loop_are_given_back() -> None:
    limiter = ResourceLimiter("llm:loops", max_in_flight=1)

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
    assert changed.stats().rpm == pytest.approx(200 * HEADROOM)


def test_the_old_max_concurrency_keyword_still_caps_and_warns() -> None:
    with pytest.warns(DeprecationWarning, match="llm:old: .*use max_in_flight"):
        limiter = ResourceLimiter("llm:old", max_concurrency=2)
    stats = limiter.stats()
    assert (limiter.max_in_flight, stats.max_in_flight, stats.max_concurrency) == (2, 2, 2)
    with pytest.raises(TypeError, match="llm:both: give max_in_flight only"):
        ResourceLimiter("llm:both", max_in_flight=2, max_concurrency=3)
