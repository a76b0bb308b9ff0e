"""LLM calls over real HTTP to the local server, through the real openai client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from hush.providers.client import LLMResult
from hush.providers.clients import aclose_all, complete, get_client
from hush.providers.errors import LLMCallError, ResourceError
from hush.providers.resources import LLMResource, ResourceRegistry
from hush.testing import MockLLMServer

Register = Callable[..., LLMResource]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class Verdict(BaseModel):
    label: str
    score: float


class Picky(BaseModel):
    label: str

    @field_validator("label")
    @classmethod
    def must_be_positive(cls, value: str) -> str:
        if value != "positive":
            raise ValueError("label must be 'positive'")
        return value


async def test_completion_fields(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    result = await complete("mock", user("hello there"), registry=registry)
    assert isinstance(result, LLMResult)
    assert result.content == "[gpt-4o-mini] reply to: hello there"
    assert result.model == "gpt-4o-mini"
    assert result.finish_reason == "stop"
    assert result.tool_calls is None and result.parsed is None
    assert set(result.usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert result.usage["total_tokens"] == (
        result.usage["prompt_tokens"] + result.usage["completion_tokens"]
    )
    assert result.attempts == 1 and result.resource_key == "llm:mock"
    assert result.latency_s > 0


async def test_params_pass_through(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    await complete(
        ["llm:mock"],
        user("hi"),
        params={"temperature": 0.2, "max_tokens": 20, "top_k": 5, "model": "mock-model"},
        registry=registry,
    )
    body = server.requests[-1].body
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 20
    assert body["top_k"] == 5  # not an SDK argument: sent through extra_body
    assert body["model"] == "mock-model"


async def test_stream_is_refused(registry: ResourceRegistry, register: Register) -> None:
    register()
    with pytest.raises(TypeError, match="stream"):
        await complete("mock", user("hi"), params={"stream": True}, registry=registry)


async def test_client_is_reused_per_loop(registry: ResourceRegistry, register: Register) -> None:
    register()
    first = get_client("mock", registry=registry)
    assert get_client("llm:mock", registry=registry) is first
    register(timeout=3.0)
    assert get_client("mock", registry=registry) is not first


def test_clients_follow_the_event_loop(server_thread: MockLLMServer) -> None:
    registry = ResourceRegistry(discover=False)
    registry.register("llm:loop", {"base_url": server_thread.base_url, "model": "m"})

    async def once() -> str | None:
        try:
            return (await complete("loop", user("again"), registry=registry)).content
        finally:
            await aclose_all()

    assert asyncio.run(once()) == asyncio.run(once()) == "[m] reply to: again"


@pytest.fixture
def server_thread() -> Any:
    server = MockLLMServer().start_in_thread()
    yield server
    server.stop_thread()


async def test_retry_after_is_honoured(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register(backoff_base=0.001, backoff_max=0.001)
    result = await complete("mock", user("[[fail-once:429]] hi"), registry=registry)
    assert result.attempts == 2
    first, second = server.requests
    assert first.status == 429 and second.status == 200
    assert first.finished_at is not None
    assert second.arrived_at - first.finished_at >= 0.3  # the server's Retry-After
    assert get_client("mock", registry=registry).limiter.stats().rate_limited == 1


async def test_500_then_success(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    result = await complete("mock", user("[[fail-times:2:500]] hi"), registry=registry)
    assert result.attempts == 3
    assert [r.status for r in server.requests] == [500, 500, 200]
    stats = get_client("mock", registry=registry).limiter.stats()
    assert (stats.sent, stats.ok, stats.errors, stats.retries) == (3, 1, 2, 2)


async def test_400_fails_fast_with_the_server_message(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    with pytest.raises(LLMCallError) as caught:
        await complete("mock", user("[[fail:400]] hi"), registry=registry)
    error = caught.value
    assert error.status_code == 400 and not error.retryable
    assert error.resource_key == "llm:mock" and error.attempts == 1
    assert "Injected fault: HTTP 400" in str(error)
    assert server.total_requests == 1


async def test_exhausted_retries_say_so(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register(max_retries=2)
    with pytest.raises(LLMCallError) as caught:
        await complete("mock", user("[[fail:503]] hi"), registry=registry)
    assert caught.value.status_code == 503 and caught.value.retryable
    assert caught.value.attempts == 3
    assert "after 3 attempts" in str(caught.value)
    assert server.total_requests == 3


async def test_hang_times_out_and_is_retried(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register(timeout=0.3)
    result = await complete("mock", user("[[fail-once:hang]] hi"), registry=registry)
    assert result.attempts == 2
    assert server.fault_counts == {"hang": 1}


async def test_hang_every_time_is_a_timeout_error(
    registry: ResourceRegistry, register: Register
) -> None:
    register(timeout=0.2, max_retries=1)
    with pytest.raises(LLMCallError, match=r"no reply within 0.2s \(timeout\)") as caught:
        await complete("mock", user("[[hang]]"), registry=registry)
    assert caught.value.retryable and caught.value.status_code is None


async def test_dropped_connection_is_retried(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    result = await complete("mock", user("[[fail-once:drop]] hi"), registry=registry)
    assert result.attempts == 2
    assert server.fault_counts == {"drop": 1}


async def test_malformed_is_retried_then_a_clear_error(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register(max_retries=2)
    recovered = await complete("mock", user("[[fail-once:malformed]] a"), registry=registry)
    assert recovered.attempts == 2
    server.reset()
    with pytest.raises(LLMCallError, match="malformed reply body") as caught:
        await complete("mock", user("[[malformed]] b"), registry=registry)
    assert caught.value.retryable and caught.value.attempts == 3
    assert server.total_requests == 3


async def test_pydantic_response_format(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    result = await complete("mock", user("classify"), response_format=Verdict, registry=registry)
    assert isinstance(result.parsed, Verdict)
    assert result.parsed.label == "label"
    sent = server.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Verdict"


async def test_reply_not_matching_the_model_fails_fast(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    with pytest.raises(LLMCallError, match="reply did not match Picky: label") as caught:
        await complete("mock", user("classify"), response_format=Picky, registry=registry)
    assert not caught.value.retryable
    assert server.total_requests == 1


async def test_mapping_response_format_and_tools(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    result = await complete(
        "mock", user("json please"), response_format={"type": "json_object"}, registry=registry
    )
    assert result.content is not None and result.content.startswith("{")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    called = await complete("mock", user("[[tool:lookup]] weather"), tools=tools, registry=registry)
    assert called.finish_reason == "tool_calls"
    assert called.tool_calls == [
        {
            "id": called.tool_calls[0]["id"],
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"city": "city"}'},
        }
    ]


async def test_fallback_when_the_first_resource_is_down(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register("down", base_url="http://127.0.0.1:9/v1", max_retries=1)
    register("up")
    result = await complete(["down", "up"], user("hi"), registry=registry)
    assert result.resource_key == "llm:up"
    assert server.total_requests == 1


async def test_fallback_error_lists_every_failure(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register("down", base_url="http://127.0.0.1:9/v1", max_retries=0)
    register("broken", max_retries=1)
    with pytest.raises(LLMCallError) as caught:
        await complete(["down", "broken"], user("[[fail:503]]"), registry=registry)
    error = caught.value
    assert [f.resource_key for f in error.failures] == ["llm:down", "llm:broken"]
    assert "llm:down: cannot connect to http://127.0.0.1:9/v1" in str(error)
    assert "llm:broken: HTTP 503" in str(error)
    assert error.retryable and error.attempts == 3


async def test_no_fallback_for_a_bad_request(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register("first")
    register("second")
    with pytest.raises(LLMCallError) as caught:
        await complete(["first", "second"], user("[[fail:400]]"), registry=registry)
    assert caught.value.resource_key == "llm:first"
    assert server.total_requests == 1


async def test_secret_never_appears(
    server: MockLLMServer,
    registry: ResourceRegistry,
    register: Register,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.configure(api_key="the-server-wants-another-key")
    register(headers={"x-extra-auth": secret + "-header"})
    client = get_client("mock", registry=registry)
    with pytest.raises(LLMCallError) as caught:
        await complete("mock", user("hi"), registry=registry)
    assert caught.value.status_code == 401
    assert server.requests[-1].headers.get("x-extra-auth") == secret + "-header"
    shown = [
        str(caught.value),
        repr(caught.value),
        repr(client),
        repr(client.resource),
        str(client.resource.model_dump()),
        caplog.text,
    ]
    for text in shown:
        assert secret not in text


async def test_limit_is_shared_by_concurrent_groups(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    server.configure(latency=0.02)
    register(max_in_flight=4, rpm=600_000)

    async def group(tag: str) -> list[LLMResult]:
        return await asyncio.gather(
            *(complete("mock", user(f"{tag} {i}"), registry=registry) for i in range(20))
        )

    results = await asyncio.gather(group("a"), group("b"))
    assert sum(len(r) for r in results) == 40
    assert server.peak_in_flight == 4
    assert get_client("mock", registry=registry).limiter.stats().sent == 40


async def test_token_limit_counts_tokens(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    # 6,000 tokens/min = 100/s. A request counts its prompt (~4) plus max_tokens=20.
    server.configure(latency=0.0)
    register(tpm=6000, rpm=600_000)
    results = await asyncio.gather(
        *(
            complete("mock", user(f"n{i}"), params={"max_tokens": 20}, registry=registry)
            for i in range(6)
        )
    )
    arrivals = sorted(r.arrived_at for r in server.requests)
    # The bucket holds 10 tokens (0.1 s of refill): six requests of ~24 tokens need
    # about 1.3 s of refill, which requests-per-minute alone would never impose.
    assert arrivals[-1] - arrivals[0] >= 1.0
    stats = get_client("mock", registry=registry).limiter.stats()
    assert stats.tokens_used == sum(r.usage["prompt_tokens"] + 20 for r in results)
    assert stats.rate_limited == 0


async def test_a_limited_resource_never_stalls_another(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register("slow", rpm=1)
    register("fast", rpm=600_000)
    await complete("slow", user("first"), registry=registry)
    stuck = asyncio.create_task(complete("slow", user("second"), registry=registry))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(
        *(complete("fast", user(f"q{i}"), registry=registry) for i in range(5))
    )
    assert len(results) == 5
    assert not stuck.done()
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck


async def test_truncated_structured_reply_is_a_clear_error(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    register()
    with pytest.raises(LLMCallError, match="did not match Verdict: it was cut off") as caught:
        await complete(
            "mock",
            user("classify"),
            params={"max_tokens": 2},
            response_format=Verdict,
            registry=registry,
        )
    assert not caught.value.retryable
    assert server.total_requests == 1


async def test_azure_resource_builds_an_azure_client(registry: ResourceRegistry) -> None:
    registry.register(
        "llm:az",
        {
            "api_type": "azure",
            "base_url": "https://example.openai.azure.com",
            "model": "my-deployment",
            "api_version": "2024-06-01",
            "api_key": "k",
        },
    )
    client = get_client("az", registry=registry)
    assert str(client.openai.base_url).startswith("https://example.openai.azure.com/openai")


async def test_request_too_large_for_the_limit_is_not_retried(
    server: MockLLMServer, registry: ResourceRegistry, register: Register
) -> None:
    server.configure(tpm=100)  # the server says x-should-retry: false
    register(rpm=600_000)
    with pytest.raises(LLMCallError, match="Request too large") as caught:
        await complete("mock", user("x" * 2000), registry=registry)
    assert caught.value.status_code == 429 and not caught.value.retryable
    assert server.total_requests == 1
    stats = get_client("mock", registry=registry).limiter.stats()
    assert stats.rate_limited == 0 and stats.errors == 1 and stats.paused_for_s == 0


async def test_unknown_resource_is_a_resource_error(registry: ResourceRegistry) -> None:
    with pytest.raises(ResourceError, match="unknown resource 'llm:nope'"):
        await complete(["nope"], user("hi"), registry=registry)
    with pytest.raises(ValueError, match="at least one resource"):
        await complete([], user("hi"), registry=registry)
