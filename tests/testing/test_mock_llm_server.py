"""Lifecycle, latency, records and thread mode of the local server."""

import asyncio
import threading
import time
from typing import Any

import anyio
import httpx
import openai
import pytest
from pydantic import ValidationError

from hush.testing import MockLLMConfig, MockLLMServer

USER = [{"role": "user", "content": "hi"}]


async def test_base_url_and_port() -> None:
    server = MockLLMServer()
    with pytest.raises(RuntimeError):
        _ = server.port
    async with server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    await server.stop()  # idempotent


async def test_fixed_port_and_config_object() -> None:
    async with MockLLMServer(port=0) as probe:
        port = probe.port
    async with MockLLMServer(MockLLMConfig(models=["x"]), port=port) as server:
        assert server.port == port
        assert server.config.models == ["x"]


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        MockLLMServer(error_rate_500=2.0)
    server = MockLLMServer(rpm=100)
    with pytest.raises(ValidationError):
        server.configure(rpm=-1)
    with pytest.raises(ValidationError):
        server.configure(no_such_setting=1)


async def test_records(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    before = time.monotonic()
    await client.chat.completions.create(model="m", messages=USER, temperature=0.2)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "[[fail:500]]"}]
        )
    await client.models.list()
    first, second, third = server.requests
    assert (first.method, first.path, first.status, first.fault) == (
        "POST",
        "/v1/chat/completions",
        200,
        None,
    )
    assert first.body == {"model": "m", "messages": USER, "temperature": 0.2}
    assert "authorization" not in {k.lower() for k in first.headers}
    assert first.headers["Content-Type"] == "application/json"
    assert before <= first.arrived_at <= (first.finished_at or 0)
    assert (second.status, second.fault) == (500, "500")
    assert (third.method, third.path) == ("GET", "/v1/models")
    assert server.status_counts == {200: 2, 500: 1}
    assert server.total_requests == 3
    server.reset()
    assert server.requests == [] and server.status_counts == {} and server.total_requests == 0
    assert server.peak_in_flight == 0


async def test_peak_in_flight(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    server.configure(latency=0.2)
    await asyncio.gather(
        *(client.chat.completions.create(model="m", messages=USER) for _ in range(10))
    )
    assert server.peak_in_flight == 10
    assert server.in_flight == 0
    records = server.requests
    latest_start = max(r.arrived_at for r in records)
    earliest_end = min(r.finished_at or 0 for r in records)
    assert latest_start < earliest_end  # all ten overlapped


async def test_latency_forms(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    async def timed() -> float:
        started = time.monotonic()
        await client.chat.completions.create(model="m", messages=USER)
        return time.monotonic() - started

    server.configure(latency=0.1)
    assert 0.1 <= await timed() < 0.5
    server.configure(latency=(0.05, 0.08))
    assert 0.05 <= await timed() < 0.5
    seen: list[dict[str, Any]] = []

    def by_body(body: dict[str, Any]) -> float:
        seen.append(body)
        return 0.12

    server.configure(latency=by_body)
    assert 0.12 <= await timed() < 0.5
    assert seen[0]["messages"] == USER


async def test_stop_does_not_hang_with_hung_requests() -> None:
    server = await MockLLMServer(latency=0.0).start()
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="t", max_retries=0, timeout=30
    ) as client:
        hung = [
            asyncio.create_task(
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"{i} [[hang]]"}]
                )
            )
            for i in range(3)
        ]
        with anyio.fail_after(2):
            while server.in_flight < 3:
                await asyncio.sleep(0.01)
        with anyio.fail_after(3):
            await server.stop()
            results = await asyncio.gather(*hung, return_exceptions=True)
    assert all(isinstance(r, openai.APIConnectionError) for r in results)
    assert server.in_flight == 0


async def test_stop_with_slow_latency_request() -> None:
    server = await MockLLMServer(latency=60).start()
    async with httpx.AsyncClient(base_url=server.base_url) as raw:
        pending = asyncio.create_task(
            raw.post("/chat/completions", json={"model": "m", "messages": USER})
        )
        with anyio.fail_after(2):
            while server.in_flight < 1:
                await asyncio.sleep(0.01)
        with anyio.fail_after(3):
            await server.stop()
            with pytest.raises(httpx.TransportError):
                await pending


def test_thread_mode_for_sync_callers() -> None:
    server = MockLLMServer(latency=0.01).start_in_thread()
    try:
        assert server.port > 0
        response = httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "m", "messages": USER}
        )
        assert response.json()["choices"][0]["message"]["content"] == "[m] reply to: hi"
        assert server.status_counts == {200: 1}
        server.configure(error_rate_500=1.0)
        assert (
            httpx.post(
                f"{server.base_url}/chat/completions", json={"model": "m", "messages": USER}
            ).status_code
            == 500
        )
    finally:
        server.stop_thread()
    assert not any(t.name == "hush-mock-llm" for t in threading.enumerate())


def test_sync_context_manager_with_sync_openai_client() -> None:
    with MockLLMServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        reply = client.chat.completions.create(model="m", messages=USER)
        assert reply.choices[0].message.content == "[m] reply to: hi"
        client.close()


def test_stop_thread_with_hung_request() -> None:
    server = MockLLMServer().start_in_thread()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(
                f"{server.base_url}/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "[[hang]]"}]},
                timeout=30,
            )
        except httpx.TransportError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while server.in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop_thread()
    caller.join(3)
    assert time.monotonic() - started < 3
    assert not caller.is_alive() and len(errors) == 1
