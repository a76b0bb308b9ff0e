"""Rate-limit header parsing and request token estimates."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from hush.providers.headers import RateLimitHeaders, parse_duration, parse_retry_after
from hush.providers.tokens import (
    DEFAULT_COMPLETION_TOKENS,
    count_text_tokens,
    estimate_prompt_tokens,
    estimate_request_tokens,
    tokenizer_name,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("120ms", 0.12),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("20", 20.0),
        ("2.5", 2.5),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "5x", "1s garbage", "ms"])
def test_parse_duration_rejects(text: str | None) -> None:
    assert parse_duration(text) is None


def test_retry_after_prefers_milliseconds() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.300"}) == pytest.approx(0.3)
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "whenever"}) is None
    later = parse_retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert later is not None and 25 < later <= 30


def test_rate_limit_headers() -> None:
    info = RateLimitHeaders.parse(
        {
            "X-RateLimit-Limit-Requests": "6000",
            "x-ratelimit-remaining-requests": "5999",
            "x-ratelimit-reset-requests": "10ms",
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-remaining-tokens": "1999000",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert info == RateLimitHeaders(6000, 5999, 0.01, 2_000_000, 1_999_000, 360.0)
    assert RateLimitHeaders.parse({}) == RateLimitHeaders()


def test_estimate_falls_back_without_tiktoken() -> None:
    # tiktoken is not installed here (and could not download an encoding offline).
    assert tokenizer_name() == "estimate"
    assert count_text_tokens("") == 0
    assert count_text_tokens("abcd") == 1
    assert count_text_tokens("abcde") == 2


def test_estimate_counts_messages_and_reply_allowance() -> None:
    short = [{"role": "user", "content": "hi"}]
    long = [{"role": "system", "content": "x" * 400}, {"role": "user", "content": "y" * 400}]
    assert estimate_prompt_tokens(long) > estimate_prompt_tokens(short) + 200
    assert estimate_request_tokens(short, max_tokens=50) == estimate_prompt_tokens(short) + 50
    assert (
        estimate_request_tokens(short) == estimate_prompt_tokens(short) + DEFAULT_COMPLETION_TOKENS
    )


def test_estimate_counts_parts_images_and_tools() -> None:
    text_only = [{"role": "user", "content": [{"type": "text", "text": "a" * 40}]}]
    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a" * 40},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ],
        }
    ]
    assert estimate_prompt_tokens(with_image) - estimate_prompt_tokens(text_only) == 85
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert estimate_prompt_tokens(text_only, tools=tools) > estimate_prompt_tokens(text_only)
