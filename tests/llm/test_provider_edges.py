"""Provider-layer edges over real HTTP to the local server: a cancelled breaker probe, replies
without usage, time spent queued, a timeout that is not an outage, broken streams and
unusable ``Retry-After`` values."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode
from hush.providers.attempts import Estimate
from hush.providers.clients import complete
from hush.providers.headers import MAX_SECONDS, parse_retry_after
from hush.providers.limiter import ResourceLimiter, get_limiter, use_limiters
from hush.providers.resources import get_registry
from hush.providers.streaming import usage_or_estimate
from hush.testing import MockLLMServer

OUTPUTS = ("content", "usage", "latency", "queued", "error")


def batch(resource: str, *, cap: int = 5, **llm: Any) -> GraphNode:
    """A map of LLM calls, one per question, collecting each output key."""
    with GraphNode(name="edges") as graph:
        with MapNode(name="items", inputs={"q": Each(PARENT["qs"])}, max_concurrency=cap) as items:
            node = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                **llm,
            )
            for key in OUTPUTS:
                node[key] >> PARENT[key]
            START >> node >> END
        for key in OUTPUTS:
            items[key] >> PARENT[key + "s"]
        START >> items >> END
    return graph


def questions(n: int, suffix: str = "") -> list[str]:
    return [f"question number {i}: what is {i} plus {i}? {suffix}".strip() for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def clock() -> Iterator[list[float]]:
    """Limiters built from now on read ``time.monotonic() + clock[0]``: a test moves past
    the breaker's cool-down by adding to ``clock[0]`` instead of sleeping."""
    offset = [0.0]
    use_limiters(
        lambda key, resource: ResourceLimiter.from_resource(
            key, resource, clock=lambda: time.monotonic() + offset[0]
        )
    )
    yield offset
    use_limiters(None)


@pytest.fixture
async def down_then_up(
    register: Callable[..., str], clock: list[float]
) -> AsyncIterator[Callable[..., Any]]:
    """A resource whose server is down until the test brings it up (same port)."""
    port = free_port()
    name = register("flaky", f"http://127.0.0.1:{port}/v1", max_retries=0)
    servers: list[MockLLMServer] = []

    async def open_breaker_then_start(**settings: Any) -> tuple[str, MockLLMServer]:
        down = await Hush(batch(name, cap=1)).run({"qs": questions(3)})
        assert all("cannot connect" in e.message for e in down["errors"])
        refused = await Hush(batch(name)).run({"qs": ["anyone there?"]})
        assert "calls fail at once" in refused["errors"][0].message, "the breaker did not open"
        server = await MockLLMServer(port=port, **settings).start()
        servers.append(server)
        clock[0] += 3600.0  # past any cool-down: the next call is the probe
        return name, server

    yield open_breaker_then_start
    for server in servers:
        await server.stop()


async def test_a_probe_cancelled_by_a_sub_graph_timeout_leaves_the_next_call_free_to_probe(
    down_then_up: Callable[..., Any],
) -> None:
    name, server = await down_then_up()
    with GraphNode(name="g") as graph:
        with GraphNode(name="sub", inputs={"q": PARENT["q"]}, timeout=0.3) as sub:
            node = LLMNode(
                name="llm",
                resource_key=name,
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
            )
            node["content"] >> PARENT["answer"]
            START >> node >> END
        sub["answer"] >> PARENT["answer"]
        START >> sub >> END
    engine = Hush(graph)
    timed_out = await engine.run({"q": "a slow probe [[hang]]"})
    assert [e.type for e in timed_out["$state"].errors] == ["NodeTimeoutError"]
    assert server.total_requests == 1, "the probe did not reach the server"
    answered = await engine.run({"q": "are you back?"})
    assert answered["$state"].errors == []
    assert answered["answer"].endswith("reply to: are you back?")
    assert server.total_requests == 2


async def test_a_probe_cancelled_with_its_run_leaves_the_next_call_free_to_probe(
    down_then_up: Callable[..., Any],
) -> None:
    arrived = asyncio.Event()

    def latency(body: dict[str, Any]) -> float:
        if "slow probe" in str(body["messages"]):
            arrived.set()
            return 600.0
        return 0.0

    name, server = await down_then_up(latency=latency)
    run = asyncio.create_task(Hush(batch(name)).run({"qs": ["a slow probe"]}))
    await arrived.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    answered = await Hush(batch(name)).run({"qs": ["are you back?"]})
    assert answered["errors"] == [None]
    assert server.total_requests == 2


async def test_a_probe_left_by_a_stream_consumer_leaves_the_next_call_free_to_probe(
    down_then_up: Callable[..., Any],
) -> None:
    arrived = asyncio.Event()

    def latency(body: dict[str, Any]) -> float:
        if "slow probe" in str(body["messages"]):
            arrived.set()
            return 600.0
        return 0.0

    name, server = await down_then_up(latency=latency)
    async with aclosing(Hush(batch(name)).stream({"qs": ["a slow probe"]})) as events:
        async for _ in events:
            await arrived.wait()
            break
    answered = await Hush(batch(name)).run({"qs": ["are you back?"]})
    assert answered["errors"] == [None]
    assert server.total_requests == 2


async def test_a_permit_released_without_an_outcome_is_abandoned_and_frees_the_probe() -> None:
    now = [0.0]
    limiter = ResourceLimiter("llm:probe", base_url="http://127.0.0.1:9/v1", clock=lambda: now[0])
    for _ in range(3):
        with await limiter.acquire() as permit:
            permit.failed(unreachable="Connection refused")
        assert permit.outcome == "unreachable"
    now[0] = 100.0
    probe = await limiter.acquire()
    with pytest.raises(Exception, match="cannot connect"):
        await limiter.acquire()  # one probe at a time
    with pytest.raises(KeyboardInterrupt), probe:
        raise KeyboardInterrupt
    assert probe.outcome == "abandoned"
    with await limiter.acquire() as second:
        second.commit(0)
        second.failed(unreachable="ignored: the outcome is already known")
    assert second.outcome == "answered"
    (await limiter.acquire()).release()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_replies_without_usage_are_estimated_marked_and_held_to_the_budget(
    server: MockLLMServer, register: Callable[..., str], stream: bool
) -> None:
    name = register("budget-no-usage", server.base_url)
    graph = batch(name, stream=stream)
    # Non-streamed calls that report usage, with prompts of the same size ("[[ok-usage]]"
    # is no marker: plain text), set the bar.
    plain = await Hush(batch(name)).run(
        {"qs": [f"q{i} [[ok-usage]]" for i in range(40)]}, max_total_tokens=300
    )
    with_usage = sum(e is None for e in plain["errors"])
    server.reset()
    qs = [f"q{i} [[no-usage]]" for i in range(40)]
    result = await Hush(graph).run({"qs": qs}, max_total_tokens=300)
    answered = [u for u, e in zip(result["usages"], result["errors"], strict=True) if e is None]
    refused = [e for e in result["errors"] if e is not None]
    assert 10 <= len(answered) <= 30, f"{len(answered)} of 40 calls within 300 tokens"
    assert abs(len(answered) - with_usage) <= 6, (len(answered), with_usage)
    assert server.total_requests == len(answered)
    assert refused and all(e.type == "BudgetExceededError" for e in refused)
    assert all(u["estimated"] is True and u["completion_tokens"] > 0 for u in answered)
    assert result["$state"].tokens == sum(u["total_tokens"] for u in answered)
    assert 0 < result["$state"].tokens <= 300
    assert all("estimated" not in u for u in plain["usages"] if u is not None)


def test_cached_and_reasoning_tokens_are_kept_from_the_usage_details() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok"},
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 40,
                "total_tokens": 140,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 32},
            },
        }
    )
    usage = usage_or_estimate(completion, Estimate(prompt=7, max_tokens=None, limiter=263))
    assert usage == {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "cached_tokens": 64,
        "reasoning_tokens": 32,
    }


async def test_time_waiting_for_the_limiter_is_queued_not_latency(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(latency=0.05)
    name = register("slow-lane", server.base_url, rpm=120)
    result = await Hush(batch(name, cap=4)).run({"qs": questions(4)})
    assert result["errors"] == [None] * 4
    latencies, queued = result["latencys"], result["queueds"]
    assert all(isinstance(q, float) and q >= 0 for q in queued)
    assert min(latencies) >= 0.05, "latency must cover the request itself"
    # At 2 requests/s (one at a time) the last of four cannot be sent before about 1.5 s:
    # that wait is queued time, not latency.
    last = max(range(4), key=lambda i: queued[i])
    assert queued[last] >= 1.2 and queued[last] > latencies[last], (queued, latencies)


async def test_a_timeout_is_retried_like_a_5xx_and_never_opens_the_breaker(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("slow-first", server.base_url, timeout=1, max_retries=4)
    graph = batch(name, cap=3)
    result = await Hush(graph).run({"qs": ["the same question [[fail-times:3:hang]]"] * 3})
    assert result["errors"] == [None] * 3
    assert server.fault_counts.get("hang") == 3 and server.total_requests == 6
    limiter = get_limiter(f"llm:{name}", get_registry().get_llm(f"llm:{name}"))
    assert limiter.stats().errors == 3
    again = await Hush(graph).run({"qs": ["and now?"]})
    assert again["errors"] == [None]


async def test_a_budget_refusal_is_never_masked_by_timeouts(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("slow-budget", server.base_url, timeout=1, max_retries=4)
    graph = batch(name, cap=6, max_tokens=20)
    probe = await Hush(batch(name, max_tokens=20)).run({"qs": ["how big is one call?"]})
    one = probe["usages"][0]["total_tokens"]
    server.reset()
    qs = [f"{q} [[fail-once:hang]]" for q in questions(6)]
    result = await Hush(graph).run({"qs": qs}, max_total_tokens=3 * one + 40)
    refused = [e for e in result["errors"] if e is not None]
    assert refused, "the budget should not fit six calls"
    assert {e.type for e in refused} == {"BudgetExceededError"}
    assert server.fault_counts.get("hang", 0) >= 1


async def test_a_stream_cut_before_any_content_is_retried(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("cut-early", server.base_url)
    result = await Hush(batch(name, stream=True)).run({"qs": ["hello [[fail-once:cut-early]]"]})
    assert result["errors"] == [None]
    assert result["contents"][0].endswith("reply to: hello [[fail-once:cut-early]]")
    assert server.fault_counts == {"cut-early": 1} and server.total_requests == 2


async def test_a_stream_cut_after_content_was_streamed_fails_clearly(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(stream_chunk_chars=4)
    name = register("cut-late", server.base_url)
    tokens: list[str] = []
    with pytest.raises(Exception) as caught:
        await complete(
            f"llm:{name}",
            [{"role": "user", "content": "hello [[cut]]"}],
            on_token=lambda text, attempt: tokens.append(text),
        )
    error = caught.value
    assert type(error).__name__ == "LLMCallError"
    assert "the streamed reply was cut after 2 chunk(s)" in str(error)
    assert "already streamed, so it is not retried" in str(error)
    assert "cannot connect" not in str(error)
    assert tokens == ["[gpt"] and server.total_requests == 1
    again = await complete(f"llm:{name}", [{"role": "user", "content": "still there?"}])
    assert again.content is not None


async def test_an_error_event_in_a_stream_is_a_classified_error_with_the_servers_message(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("stream-error", server.base_url)
    result = await Hush(batch(name, stream=True)).run({"qs": ["hello [[stream-error]]"]})
    (error,) = result["errors"]
    assert error.type == "LLMCallError"
    assert "the server sent an error after 2 chunk(s) of the streamed reply (server_error)" in (
        error.message
    )
    assert "the model server failed mid-reply" in error.message
    assert server.total_requests == 1


async def test_cut_streams_reached_the_server_and_never_open_the_breaker(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("cut-often", server.base_url, max_retries=0)
    cut = await Hush(batch(name, cap=1, stream=True)).run({"qs": questions(4, "[[cut]]")})
    assert all("cut after" in e.message for e in cut["errors"])
    fine = await Hush(batch(name, stream=True)).run({"qs": ["and now?"]})
    assert fine["errors"] == [None]


async def test_a_plain_reply_cut_mid_body_is_retried_and_never_opens_the_breaker(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    name = register("cut-body", server.base_url, max_retries=0)
    cut = await Hush(batch(name, cap=1)).run({"qs": questions(4, "[[cut]]")})
    messages = [e.message for e in cut["errors"]]
    assert all("the reply was cut after the server started answering" in m for m in messages)
    assert not any("cannot connect" in m for m in messages)
    retried = await Hush(batch(name, retry=2)).run({"qs": ["hello [[fail-once:cut]]"]})
    assert retried["errors"] == [None]
    assert server.total_requests == 6


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "-1", "1e999"])
async def test_an_unusable_retry_after_never_hangs_the_run(
    server: MockLLMServer, register: Callable[..., str], value: str
) -> None:
    name = register(f"retry-after-{value.lower()}", server.base_url)
    graph = batch(name)
    async with asyncio.timeout(30):
        result = await Hush(graph).run({"qs": [f"hi [[fail-once:503]] [[retry-after:{value}]]"]})
        assert result["errors"] == [None]
        assert server.status_counts == {503: 1, 200: 1}
        again = await Hush(graph).run({"qs": ["and the next call?"]})
    assert again["errors"] == [None]


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after-ms": "inf", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "-5"}, None),
        ({"retry-after": "1e12"}, MAX_SECONDS),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, MAX_SECONDS),
    ],
)
def test_retry_after_is_bounded_or_absent(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds
