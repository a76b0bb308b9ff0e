"""RPM/TPM token buckets: 429 answers and ``x-ratelimit-*`` headers."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from hush.testing import MockLLMServer
from hush.testing.limits import RateLimiter, TokenBucket, format_reset

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def raw(server: MockLLMServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client


async def post(raw: httpx.AsyncClient, body: dict[str, object] = BODY) -> httpx.Response:
    return await raw.post("/chat/completions", json=body)


async def test_rpm_429_with_headers(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(rpm=60)  # one request a second, bucket holds one
    ok = await post(raw)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit-requests"] == "60"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert ok.headers["x-ratelimit-reset-requests"] == "1s"
    assert "x-ratelimit-limit-tokens" not in ok.headers
    refused = await post(raw)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == error["code"] == "rate_limit_exceeded"
    assert "requests per min" in error["message"]
    assert 0.9 < float(refused.headers["retry-after"]) <= 1.0
    assert 900 < int(refused.headers["retry-after-ms"]) <= 1000
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert server.status_counts == {200: 1, 429: 1}
    assert server.fault_counts == {"rate_limited": 1}


async def test_retry_after_is_enough(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(rpm=1200, burst_seconds=0.05)  # 20/s, bucket holds one
    assert (await post(raw)).status_code == 200
    refused = await post(raw)
    assert refused.status_code == 429
    await asyncio.sleep(int(refused.headers["retry-after-ms"]) / 1000)
    assert (await post(raw)).status_code == 200


async def test_burst_capacity(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(rpm=6, burst_seconds=100.0)  # one per 10 s, bucket holds ten
    statuses = [(await post(raw)).status_code for _ in range(12)]
    assert statuses.count(200) == 10 and statuses[-1] == 429


async def test_tpm_limit(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(tpm=600, burst_seconds=1.0)  # bucket holds 10 tokens
    body = {**BODY, "max_tokens": 4}  # 1 + 3 prompt tokens + 4 = 8
    ok = await post(raw, body)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit-tokens"] == "600"
    assert ok.headers["x-ratelimit-remaining-tokens"] == "2"
    refused = await post(raw, body)
    assert refused.status_code == 429
    assert "tokens per min" in refused.json()["error"]["message"]
    assert float(refused.headers["retry-after"]) == pytest.approx(0.6, abs=0.05)


async def test_request_larger_than_tpm(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(tpm=100)
    refused = await post(raw, {**BODY, "max_tokens": 500})
    assert refused.status_code == 429
    assert refused.headers["x-should-retry"] == "false"
    assert "retry-after" not in refused.headers
    assert "too large" in refused.json()["error"]["message"]


async def test_openai_client_sees_rate_limit(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(rpm=60)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(**BODY)
        assert raw.headers["x-ratelimit-limit-requests"] == "60"
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(**BODY)


async def test_limits_change_at_runtime(server: MockLLMServer, raw: httpx.AsyncClient) -> None:
    server.configure(rpm=60)
    await post(raw)
    assert (await post(raw)).status_code == 429
    server.config.rpm = 6000
    assert (await post(raw)).status_code == 200
    server.config.rpm = None
    assert "x-ratelimit-limit-requests" not in (await post(raw)).headers


def test_format_reset() -> None:
    assert format_reset(0) == "0s"
    assert format_reset(0.12) == "120ms"
    assert format_reset(0.0001) == "1ms"
    assert format_reset(1) == "1s"
    assert format_reset(17.0345) == "17.035s"
    assert format_reset(360) == "6m0s"
    assert format_reset(90.5) == "1m30.5s"
    assert format_reset(3725) == "1h2m5s"


def test_bucket_refills_continuously() -> None:
    bucket = TokenBucket(limit=60, burst_seconds=2.0, now=0.0)
    assert bucket.capacity == 2
    bucket.level -= 2
    assert bucket.wait_for(1) == pytest.approx(1.0)
    bucket.refill(0.5)
    assert bucket.level == pytest.approx(0.5)
    assert bucket.reset_in() == pytest.approx(1.5)


def test_large_request_goes_into_debt() -> None:
    limiter = RateLimiter()
    assert limiter.check(None, 600, 1.0, 50, now=0.0).allowed  # capacity 10 < 50 <= 600
    waiting = limiter.check(None, 600, 1.0, 5, now=0.0)
    assert not waiting.allowed
    assert waiting.retry_after == pytest.approx(4.5)  # from -40 back to 5 at 10 tokens/s


@pytest.mark.parametrize(
    ("mode", "on_200", "on_429"),
    [("always", True, True), ("on_429", False, True), ("never", False, False)],
)
async def test_rate_limit_headers_can_be_sent_only_with_429s_or_never(
    server: MockLLMServer, raw: httpx.AsyncClient, mode: str, on_200: bool, on_429: bool
) -> None:
    server.configure(rpm=60, rate_limit_headers=mode)
    ok = await post(raw)
    refused = await post(raw)
    assert (ok.status_code, refused.status_code) == (200, 429)
    assert ("x-ratelimit-limit-requests" in ok.headers) is on_200
    assert ("x-ratelimit-limit-requests" in refused.headers) is on_429
    assert "retry-after" in refused.headers


async def test_a_careless_server_echoes_the_credentials_in_its_errors(
    server: MockLLMServer, raw: httpx.AsyncClient
) -> None:
    server.configure(echo_auth=True)
    body = {"model": "m", "messages": [{"role": "user", "content": "x [[fail:400]]"}]}
    response = await raw.post(
        "/chat/completions", json=body, headers={"Authorization": "Bearer sk-echo-me-12345"}
    )
    assert response.status_code == 400
    assert "Bearer sk-echo-me-12345" in response.json()["error"]["message"]
