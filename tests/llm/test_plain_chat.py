"""A plain chat completion goes without the ``openai`` SDK, exactly as the SDK would send it.

Each case is sent twice to the local server over real HTTP, once through the SDK path
and once through :mod:`hush.providers.plain_chat`: the requests must be the same bytes
(method, URL, headers in order, body) and the outcome the same (the result, or the
error's message, status, retryability and attempts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from hush.providers import client as client_module
from hush.providers import plain_chat
from hush.providers.client import LLMClient
from hush.providers.errors import LLMCallError
from hush.providers.limiter import ResourceLimiter
from hush.providers.resources import get_registry
from hush.testing import MockLLMServer

Sent = tuple[str, str, list[tuple[bytes, bytes]], bytes]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Sent]]:
    """Every request the LLM clients made in the test sends, as it goes on the wire."""
    seen: list[Sent] = []
    original = client_module.make_http

    async def record(request: httpx2.Request) -> None:
        seen.append((request.method, str(request.url), request.headers.raw, request.read()))

    def recording(*args: Any, **kwargs: Any) -> httpx2.AsyncClient:
        http = original(*args, **kwargs)
        http.event_hooks["request"].append(record)
        return http

    monkeypatch.setattr(client_module, "make_http", recording)
    yield seen


async def both_ways(
    monkeypatch: pytest.MonkeyPatch,
    server: MockLLMServer,
    key: str,
    call: Callable[[LLMClient], Any],
) -> tuple[Any, Any]:
    """``call`` through the SDK, then without it, each time against a fresh server state
    and a fresh limiter (breaker); each outcome (a result or an error)."""
    outcomes = []
    for plain in (False, True):
        server.reset()
        with monkeypatch.context() as patch:
            if not plain:
                patch.setattr(plain_chat, "is_plain", lambda *_: False)
            resource = get_registry().get_llm(key)
            client = LLMClient(key, resource, ResourceLimiter.from_resource(key, resource))
            try:
                outcomes.append(await call(client))
            except LLMCallError as error:
                outcomes.append(error)
            finally:
                await client.aclose()
    return outcomes[0], outcomes[1]


def same_outcome(sdk: Any, plain: Any) -> None:
    if isinstance(sdk, LLMCallError):
        assert isinstance(plain, LLMCallError), plain
        for field in ("status_code", "retryable", "attempts", "retries_exhausted"):
            assert getattr(plain, field) == getattr(sdk, field), field
        assert str(plain) == str(sdk)
        return
    ours, theirs = dataclasses.asdict(plain), dataclasses.asdict(sdk)
    for timing in ("latency_s", "queued_s"):
        ours.pop(timing)
        theirs.pop(timing)
    for result in (ours, theirs):  # the server numbers its tool calls across requests
        for call in result["tool_calls"] or ():
            assert call.pop("id").startswith("call_")
    assert ours == theirs


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


CASES: dict[str, dict[str, Any]] = {
    "plain": {"messages": user("hello")},
    "parameters and extras": {
        "messages": [{"role": "system", "content": "Be brief. ünïcode"}, *user("hi")],
        "params": {
            "temperature": 0,
            "max_tokens": 12,
            "stop": ["\n"],
            "top_k": 4,
            "extra_body": {"min_p": 0.1},
            "extra_headers": {"X-Trace": "abc", "authorization": "Bearer override"},
            "extra_query": {"api-version": "1"},
        },
    },
    "a tool call": {
        "messages": user("weather? [[tool:get_weather]]"),
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    },
    "a JSON schema response_format": {
        "messages": user("json please"),
        "params": {"response_format": {"type": "json_object"}},
    },
    "a reply without usage": {"messages": user("count me [[no-usage]]")},
    "a 400": {"messages": user("bad [[fail:400]]")},
    "a 500 then an answer": {"messages": user("flaky [[fail-once:500]]")},
    "500s until the attempts run out": {"messages": user("down [[fail:503]]")},
    "a 429 with Retry-After": {"messages": user("slow down [[fail-once:429]] [[retry-after:0]]")},
    "429s until the attempts run out": {"messages": user("limited [[fail:429]]")},
    "a 401": {"messages": user("who [[fail:401]]")},
    "a malformed body": {"messages": user("garbled [[malformed]]")},
    "a dropped connection": {"messages": user("gone [[drop]]")},
    "no reply in time": {"messages": user("slow [[hang]]"), "timeout": 0.3},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_same_request_and_outcome_with_and_without_the_sdk(
    case: str,
    server: MockLLMServer,
    register: Callable[..., str],
    captured: list[Sent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "llm:" + register("plain", server.base_url, headers={"X-Team": "hush"}, max_retries=2)
    spec = dict(CASES[case])
    messages = spec.pop("messages")

    async def call(client: LLMClient) -> Any:
        return await client.complete(messages, **spec)

    sdk, plain = await both_ways(monkeypatch, server, key, call)
    same_outcome(sdk, plain)
    assert len(captured) % 2 == 0 and captured
    half = len(captured) // 2
    for theirs, ours in zip(captured[:half], captured[half:], strict=True):
        assert ours == theirs


async def test_streamed_and_structured_calls_still_use_the_sdk(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    key = "llm:" + register("sdk", server.base_url)
    client = LLMClient(key, get_registry().get_llm(key))
    try:
        pieces: list[str] = []
        result = await client.complete(user("stream"), on_token=lambda p, _: pieces.append(p))
        assert "".join(pieces) == result.content
        assert client._openai is not None
    finally:
        await client.aclose()


async def test_a_resource_with_plain_requests_off_sends_every_call_through_the_sdk(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    keys = {
        flag: "llm:" + register(f"plain-{flag}", server.base_url, plain_requests=flag)
        for flag in (True, False)
    }
    for flag, key in keys.items():
        client = LLMClient(key, get_registry().get_llm(key))
        try:
            result = await client.complete(user("hello"))
            assert result.content
            assert (client._openai is None) is flag
        finally:
            await client.aclose()
