"""Pacing at a limit, on a virtual clock: our :class:`RateState` against the local server's
own rate limiter (:mod:`hush.testing.limits`), with late timers, answer latency and
arrival jitter, and no sleeping."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest

from hush.providers.headers import RateLimitHeaders, parse_retry_after
from hush.providers.rates import Limits, RateState
from hush.testing.limits import RateLimiter

LIMIT = 1200
PER_SECOND = LIMIT / 60


@dataclass
class Run:
    """What the server saw: accepted arrival times and 429s."""

    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def admitted(self, start: float, end: float) -> int:
        return sum(1 for t in self.accepted if start <= t < end)


def simulate(
    state: RateState,
    *,
    requests: int,
    burst_seconds: float = 1.0,
    late: float = 0.003,
    latency: tuple[float, float] = (0.2, 0.6),
    headers: str = "always",
    refuse_at: tuple[float, float] | None = None,
    seed: int = 1,
) -> Run:
    """Send ``requests`` requests as the limiter allows: a sender that must wait is woken
    up to ``late`` s after the bucket allows it (a busy loop's timer); each request reaches
    the server 0-2 ms after it is sent and is answered ``latency`` later, with
    ``x-ratelimit-*`` headers ``"always"`` or ``"on_429"``. ``refuse_at=(t, s)`` makes the
    server answer the first request after ``t`` with a 429 saying ``Retry-After: s``."""
    rng = random.Random(seed)
    server = RateLimiter()
    run = Run()
    events: list[tuple[float, int, str, float]] = [(0.0, 0, "try", 0.0)]
    replies: dict[int, dict[str, str]] = {}
    """The headers of each answer, by its event's order."""
    order = 1
    queued = requests
    waking = True
    while events:
        now, number, kind, sent_at = heapq.heappop(events)
        if kind == "try":
            waking = False
            while queued:
                wait = state.wait(0, now)
                if wait is None:
                    break
                if wait > 0:
                    heapq.heappush(events, (now + wait + rng.uniform(0, late), order, "try", 0.0))
                    waking = True
                    break
                state.take(0, now)
                queued -= 1
                arrival = now + rng.uniform(0, 0.002)
                heapq.heappush(events, (arrival, order, "arrive", now))
                order += 1
        elif kind == "arrive":
            decision = server.check(LIMIT, None, burst_seconds, 0, now)
            forced = refuse_at is not None and now >= refuse_at[0]
            if decision.allowed and not forced:
                run.accepted.append(now)
                replies[order] = {} if headers == "on_429" else decision.headers
                heapq.heappush(events, (now + rng.uniform(*latency), order, "ok", sent_at))
            else:
                run.refused.append(now)
                sent = dict(decision.headers)
                if forced:
                    assert refuse_at is not None
                    sent["retry-after"] = str(refuse_at[1])
                    refuse_at = None
                else:
                    sent["retry-after-ms"] = str(max(1, round(decision.retry_after * 1000)))
                replies[order] = sent
                heapq.heappush(events, (now + 0.01, order, "429", sent_at))
            order += 1
        else:
            sent = replies.pop(number)
            info = RateLimitHeaders.parse(sent) if sent else None
            state.release(sent_at)
            if kind == "ok":
                state.answered(0, 0, info, now, sent_at)
            else:
                state.rate_limited(0, info, parse_retry_after(sent), sent_at, now)
                queued += 1
            if not waking:
                heapq.heappush(events, (now, order, "try", 0.0))
                order += 1
                waking = True
    return run


def test_a_confirmed_limit_is_paced_exactly_though_every_wake_up_comes_late() -> None:
    state = RateState(Limits(rpm=LIMIT), now=0.0)
    run = simulate(state, requests=1500)
    assert run.refused == []
    # Confirmed by the first answer's headers: 20/s from then on, the timers' 0-3 ms
    # lateness made up (a bucket holding just one request ran at about 95%).
    assert state.rpm == LIMIT
    assert run.admitted(10.0, 70.0) >= LIMIT - 1


def test_a_share_of_the_burst_the_server_headers_show_makes_up_long_stalls_without_a_429() -> None:
    state = RateState(Limits(rpm=LIMIT), now=0.0)
    run = simulate(state, requests=900, late=0.04)
    assert run.refused == []
    # remaining + reset show a bucket of 20 (one second): ours holds 2, so wake-ups up
    # to 40 ms late are made up (one request plus 20 ms would lose some of that).
    assert state.requests.capacity == pytest.approx(PER_SECOND / 10)
    assert run.admitted(5.0, 35.0) >= 30 * PER_SECOND - 1


def test_a_tight_server_bucket_is_not_overrun() -> None:
    state = RateState(Limits(rpm=LIMIT), now=0.0)
    run = simulate(state, requests=600, burst_seconds=0.1)
    assert run.refused == []
    assert run.admitted(2.0, 27.0) >= 25 * PER_SECOND - 1


def test_after_a_429_it_waits_its_retry_after_then_resumes_at_the_limit_one_at_a_time() -> None:
    state = RateState(Limits(rpm=LIMIT), now=0.0)
    run = simulate(state, requests=1000, refuse_at=(10.0, 2.0))
    assert len(run.refused) == 1
    refused = run.refused[0]
    assert run.admitted(refused + 0.01, refused + 2.0) == 0  # its Retry-After, 2 s
    resumed = min(t for t in run.accepted if t > refused)
    assert resumed == pytest.approx(refused + 2.01, abs=0.01)
    # No burst when the pause ends, then the configured rate, not a cut one.
    assert run.admitted(resumed, resumed + 0.2) <= 0.2 * PER_SECOND + 1
    assert run.admitted(resumed, resumed + 20.0) >= 20 * PER_SECOND - 1
    assert state.rpm == LIMIT


def test_headers_only_with_429s_keep_the_headroom_until_one_comes() -> None:
    state = RateState(Limits(rpm=LIMIT), now=0.0)
    run = simulate(state, requests=300, headers="on_429")
    assert run.refused == []
    assert state.rpm == pytest.approx(LIMIT * 0.97)
    assert run.admitted(2.0, 12.0) >= 10 * PER_SECOND * 0.97 - 1
