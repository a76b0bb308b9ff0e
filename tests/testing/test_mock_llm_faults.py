"""Injected faults: markers in the last user message and seeded random rates."""

import time

import anyio
import httpx
import openai
import pytest

from hush.testing import MockLLMServer


def ask(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "[[fail:500]] only the last user message counts"},
        {"role": "user", "content": text},
    ]


async def test_fail_500(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="m", messages=ask("item 1 [[fail:500]]"))
    assert caught.value.status_code == 500
    assert server.status_counts == {500: 1}
    assert server.fault_counts == {"500": 1}


async def test_fail_503_has_retry_after(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="m", messages=ask("[[fail:503]]"))
    assert caught.value.status_code == 503
    assert float(caught.value.response.headers["retry-after"]) == pytest.approx(0.05)


async def test_fail_400_says_why(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages=ask("[[fail:400]]"))
    body = caught.value.body
    assert isinstance(body, dict)
    assert "Injected fault" in body["message"] and body["type"] == "invalid_request_error"


async def test_any_status_and_429(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="m", messages=ask("[[fail:429]]"))
    assert caught.value.response.headers["retry-after-ms"] == "50"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="m", messages=ask("[[fail:404]]"))


async def test_only_last_user_message_counts(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="m", messages=ask("fine"))
    assert reply.choices[0].finish_reason == "stop"


async def test_hang_times_out_client(server: MockLLMServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=0, timeout=0.3
    ) as impatient:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(model="m", messages=ask("[[hang]]"))
    assert 0.25 < time.monotonic() - started < 2
    assert server.fault_counts == {"hang": 1}
    with anyio.fail_after(2):  # the abandoned handler is cancelled, not left sleeping
        while server.in_flight:
            await anyio.sleep(0.01)


async def test_drop_closes_connection(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=ask("[[drop]]"))
    with anyio.fail_after(2):
        while server.in_flight:
            await anyio.sleep(0.01)
    record = server.requests[-1]
    assert record.status is None and record.fault == "drop"
    assert server.status_counts == {}


async def test_malformed_body(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(ValueError):
        await client.chat.completions.create(model="m", messages=ask("[[malformed]]"))
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{server.base_url}/chat/completions",
            json={"model": "m", "messages": ask("[[malformed]]")},
        )
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


async def test_malformed_stream(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(ValueError):
        stream = await client.chat.completions.create(
            model="m", messages=ask("[[malformed]]"), stream=True
        )
        async for _ in stream:
            pass


async def test_fail_once_then_answers(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    messages = ask("row 7 [[fail-once:500]]")
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=messages)
    reply = await client.chat.completions.create(model="m", messages=messages)
    assert reply.choices[0].finish_reason == "stop"
    other = ask("row 8 [[fail-once:500]]")
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=other)
    server.reset()
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=messages)


async def test_fail_times(client: openai.AsyncOpenAI) -> None:
    messages = ask("[[fail-times:2:503]]")
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            await client.chat.completions.create(model="m", messages=messages)
    await client.chat.completions.create(model="m", messages=messages)


async def test_fail_once_with_drop_is_retried_by_client(server: MockLLMServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test", max_retries=2, timeout=5
    ) as patient:
        reply = await patient.chat.completions.create(model="m", messages=ask("[[fail-once:drop]]"))
    assert reply.choices[0].message.content
    assert [r.fault for r in server.requests] == ["drop", None]


async def test_sleep_marker(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    await client.chat.completions.create(model="m", messages=ask("[[sleep:0.2]]"))
    assert time.monotonic() - started >= 0.2


async def test_error_rate_all(server: MockLLMServer, client: openai.AsyncOpenAI) -> None:
    server.configure(error_rate_500=1.0)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=ask("x"))
    assert server.status_counts == {500: 3}


async def outcomes(server: MockLLMServer, count: int) -> list[int | None]:
    async with httpx.AsyncClient(base_url=server.base_url) as raw:
        results: list[int | None] = []
        for i in range(count):
            try:
                response = await raw.post(
                    "/chat/completions", json={"model": "m", "messages": ask(str(i))}
                )
                results.append(response.status_code)
            except httpx.TransportError:
                results.append(None)
        return results


async def test_rates_are_seeded() -> None:
    settings = {"error_rate_500": 0.2, "error_rate_503": 0.2, "drop_rate": 0.2, "seed": 7}
    async with MockLLMServer(**settings) as first, MockLLMServer(**settings) as second:
        a = await outcomes(first, 40)
        b = await outcomes(second, 40)
    assert a == b
    assert {200, 500, 503, None} <= set(a)
    assert 8 < a.count(200) < 32


async def test_every_route_takes_the_same_prelude(server: MockLLMServer) -> None:
    """Embeddings, rerank and the Batch API check the key, parse the body, inject faults
    and echo credentials the way the chat route does."""
    server.configure(api_key="sk-right", echo_auth=True)
    wrong = {"Authorization": "Bearer sk-wrong"}
    right = {"Authorization": "Bearer sk-right"}
    async with httpx.AsyncClient(base_url=server.base_url) as raw:
        for path in ("/embeddings", "/rerank", "/batches", "/chat/completions"):
            refused = await raw.post(path, json={}, headers=wrong)
            assert refused.status_code == 401, path
            assert "Bearer sk-wrong" in refused.json()["error"]["message"], path
            unparsed = await raw.post(path, content=b"{not json", headers=right)
            assert unparsed.status_code == 400, path
            assert "could not parse" in unparsed.json()["error"]["message"], path
        body = {"model": "e", "input": "x [[retry-after:7]] [[fail:503]]"}
        failed = await raw.post("/embeddings", json=body, headers=right)
        assert (failed.status_code, failed.headers["retry-after"]) == (503, "7")
        with pytest.raises(httpx.HTTPError):
            await raw.post("/embeddings", json={"model": "e", "input": "x [[cut]]"}, headers=right)
    assert server.fault_counts == {"503": 1, "cut": 1}
    assert server.status_counts == {401: 4, 400: 4, 503: 1, 200: 1}
