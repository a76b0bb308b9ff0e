"""The rate math on its own, with a hand-moved clock: no sleeping."""

from __future__ import annotations

import pytest

from hush.providers.breaker import COOLDOWN, THRESHOLD, Breaker
from hush.providers.headers import RateLimitHeaders
from hush.providers.rates import (
    DISCOVERY_MARGIN,
    HEADROOM,
    INITIAL_WINDOW,
    Limits,
    RateState,
)


def send(state: RateState, now: float, tokens: int = 0) -> bool:
    """Send one request if the state allows it now."""
    if state.wait(tokens, now) == 0.0:
        state.take(tokens)
        return True
    return False


def test_no_known_limit_is_not_paced_but_windowed_until_answers_come() -> None:
    state = RateState(Limits(), now=0.0)
    sent = sum(send(state, 0.0) for _ in range(100))
    assert sent == INITIAL_WINDOW
    assert state.wait(0, 0.0) is None  # held by the window, not by a rate
    state.release()
    state.answered(0, 0, None, now=0.05)
    assert sum(send(state, 0.05) for _ in range(100)) == 2  # one freed, one more per answer
    assert state.rpm is None and state.tpm is None


def test_headers_set_the_limits_at_once_and_remaining_caps_the_bucket() -> None:
    state = RateState(Limits(), now=0.0)
    send(state, 0.0)
    state.release()
    info = RateLimitHeaders.parse(
        {
            "x-ratelimit-limit-requests": "6000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-limit-tokens": "200000",
        }
    )
    state.answered(10, 10, info, now=0.1)
    assert state.rpm == pytest.approx(6000)
    assert state.tpm == pytest.approx(200000)
    assert state.wait(0, 0.1) == pytest.approx(60 / 6000, rel=0.01)
    assert state.window is None


@pytest.mark.parametrize("advertised", [1000, 9000])
def test_a_header_confirmed_limit_replaces_the_configured_one(advertised: int) -> None:
    state = RateState(Limits(rpm=3000), now=0.0)
    assert state.rpm == pytest.approx(3000 * HEADROOM)
    state.answered(0, 0, RateLimitHeaders(limit_requests=advertised), now=1.0)
    assert state.rpm == pytest.approx(advertised)


def test_a_configured_limit_the_headers_confirm_is_paced_exactly() -> None:
    state = RateState(Limits(rpm=1200), now=0.0)
    assert state.rpm == pytest.approx(1200 * HEADROOM)
    state.answered(0, 0, RateLimitHeaders(limit_requests=1200), now=1.0)
    assert state.rpm == pytest.approx(1200)


def test_headers_are_ignored_when_asked() -> None:
    state = RateState(Limits(rpm=3000, learn_from_headers=False), now=0.0)
    state.answered(0, 0, RateLimitHeaders(limit_requests=9000), now=1.0)
    assert state.rpm == pytest.approx(3000 * HEADROOM)


def test_a_429_at_a_known_limit_pauses_but_keeps_the_rate() -> None:
    state = RateState(Limits(rpm=3000), now=0.0)
    send(state, 0.0)
    pause = state.rate_limited(0, None, retry_after=0.2, sent_at=0.0, now=0.01)
    assert pause == 0.2
    assert state.rpm == pytest.approx(3000 * HEADROOM)
    assert state.wait(0, 0.1) == pytest.approx(0.11)
    assert state.wait(0, 0.25) == 0.0


def test_frequent_429s_at_a_known_limit_lower_the_aim_a_little() -> None:
    state = RateState(Limits(rpm=3000), now=0.0)
    now = 0.0
    for i in range(40):
        now += 0.02
        if i % 4 == 0:
            state.rate_limited(0, None, retry_after=0.0, sent_at=now, now=now)
        else:
            state.answered(0, 0, None, now)
    assert state.rpm is not None
    assert 0.9 * 3000 * HEADROOM < state.rpm < 3000 * HEADROOM


def test_the_first_429_without_headers_sets_the_rate_from_what_was_accepted() -> None:
    state = RateState(Limits(), now=0.0)
    for i in range(100):  # 100 accepted over 2 s: 3,000/min
        state.answered(0, 0, None, now=i * 0.02)
    state.rate_limited(0, None, retry_after=0.1, sent_at=1.9, now=2.0)
    assert state.rpm == pytest.approx(100 / 1.98 * 60 * DISCOVERY_MARGIN, rel=0.02)
    first = state.rpm
    state.rate_limited(0, None, retry_after=0.1, sent_at=1.95, now=2.01)  # sent before the cut
    assert state.rpm == first
    state.rate_limited(0, None, retry_after=0.1, sent_at=2.5, now=2.6)
    assert state.rpm == pytest.approx(first * 0.85)


def test_a_discovered_rate_grows_while_requests_are_held_back() -> None:
    state = RateState(Limits(), now=0.0)
    for i in range(50):
        state.answered(0, 0, None, now=i * 0.02)
    state.rate_limited(0, None, retry_after=0.0, sent_at=1.0, now=1.0)
    start = state.rpm
    now = 2.5
    for _ in range(200):
        now += 0.05
        while send(state, now):
            state.release()
        state.wait(0, now)  # held back: demand exceeds the rate
        state.answered(0, 0, None, now)
    assert state.rpm is not None and start is not None and state.rpm > start * 1.05


def test_token_refunds_never_overfill_the_bucket() -> None:
    state = RateState(Limits(tpm=60_000), now=0.0)  # holds 48 tokens, requests unpaced
    capacity = state.tokens.capacity
    for _ in range(17):
        send(state, 0.0, tokens=300)
        state.answered(300, 0, None, now=0.0)  # nothing used: all refunded
        state.release()
    assert state.tokens.level <= capacity
    granted = 0
    while send(state, 0.0, tokens=300):
        granted += 1
    assert granted == 1


def test_the_breaker_opens_after_failed_connections_and_a_probe_closes_it() -> None:
    breaker = Breaker()
    for i in range(THRESHOLD - 1):
        assert not breaker.unreachable("refused", now=i)
        assert not breaker.blocked(i)
    assert breaker.unreachable("refused", now=3.0)
    assert breaker.blocked(3.0) and breaker.blocked(3.0 + COOLDOWN - 0.1)
    assert not breaker.blocked(3.0 + COOLDOWN)
    breaker.sending()  # the probe
    assert breaker.blocked(3.0 + COOLDOWN)  # nobody else while it decides
    assert not breaker.unreachable("refused", now=9.0)
    assert breaker.blocked(9.0 + COOLDOWN)  # twice as long now
    assert not breaker.blocked(9.0 + 2 * COOLDOWN)
    breaker.sending()
    assert breaker.connected()
    assert not breaker.blocked(20.0)
