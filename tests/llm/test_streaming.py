"""``engine.stream()`` and ``LLMNode(stream=True)`` over real HTTP to the local server."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from contextlib import aclosing

import anyio
import pytest
from pydantic import BaseModel

from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.errors import GraphDefinitionError, MissingInputError
from hush.core.events import Event
from hush.core.nodes.iteration import MapNode
from hush.observability import MemoryTracer
from hush.providers import LLMNode, PromptNode
from hush.testing import MockLLMServer

QUESTIONS = [f"Tell me about item number {i}, in a few sentences please" for i in range(6)]


def streamed_batch(resource: str, *, stream: bool = True) -> GraphNode:
    with GraphNode(name="g") as graph:
        with MapNode(
            name="batch", inputs={"q": Each(PARENT["questions"])}, max_concurrency=3
        ) as batch:
            prompt = PromptNode(name="prompt", inputs={"prompt": {"user": "{q}"}, "q": PARENT["q"]})
            llm = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": prompt["messages"]},
                stream=stream,
            )
            llm["content"] >> PARENT["answer"]
            llm["usage"] >> PARENT["usage"]
            START >> prompt >> llm >> END
        batch["answer"] >> PARENT["answers"]
        batch["usage"] >> PARENT["usages"]
        START >> batch >> END
    return graph


async def test_tokens_of_each_item_join_to_its_content_and_run_end_is_last(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(stream_chunk_chars=7, reply_chars=200)
    key = register("streamed", server.base_url)
    events = [e async for e in Hush(streamed_batch(key)).stream({"questions": QUESTIONS})]

    assert events[0].kind == "run_start" and events[-1].kind == "run_end"
    result = events[-1].result
    assert result is not None and result["$state"].status == "ok"
    tokens: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.kind == "token":
            assert event.text
            tokens[event.path].append(event.text)
    assert set(tokens) == {f"g/batch[{i}]/llm" for i in range(len(QUESTIONS))}
    for i, answer in enumerate(result["answers"]):
        assert len(tokens[f"g/batch[{i}]/llm"]) > 3
        assert "".join(tokens[f"g/batch[{i}]/llm"]) == answer
        assert result["usages"][i]["completion_tokens"] > 0
    bodies = [r.body for r in server.requests]
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in bodies)

    # Every token of an item comes after its node_start and before its node_end.
    seen: dict[str, str] = {}
    for event in events:
        if event.kind in ("node_start", "node_end"):
            seen[event.path] = event.kind
        elif event.kind == "token":
            assert seen.get(event.path) == "node_start"
    assert sum(e.kind == "llm" for e in events) == len(QUESTIONS)
    progress = [e for e in events if e.kind == "progress"]
    assert progress and progress[-1].counters is not None
    assert progress[-1].counters.done == len(QUESTIONS)


async def test_streaming_returns_what_a_plain_call_returns_and_times_the_first_token(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(stream_chunk_chars=5, stream_chunk_delay=0.02, reply_chars=80)
    key = register("streamed", server.base_url)
    tracer = MemoryTracer()
    streamed = await Hush(streamed_batch(key)).run({"questions": QUESTIONS[:2]}, tracer=tracer)
    plain = await Hush(streamed_batch(key, stream=False)).run({"questions": QUESTIONS[:2]})
    assert streamed["answers"] == plain["answers"]
    assert streamed["usages"] == plain["usages"]
    generations = tracer.find(kind="generation")
    assert len(generations) == 2
    for record in generations:
        first = record["time_to_first_token_ms"]
        assert first is not None and 0 < first < record["duration_ms"]
    assert not any(
        e.kind == "token" for e in await _events(Hush(streamed_batch(key, stream=False)))
    )


async def _events(engine: Hush) -> list[Event]:
    return [e async for e in engine.stream({"questions": QUESTIONS[:1]})]


async def test_leaving_the_loop_cancels_the_run() -> None:
    started = 0
    cancelled = 0
    gate = asyncio.Event()

    async def work(i: int) -> dict[str, int]:
        nonlocal started, cancelled
        started += 1
        try:
            if i > 0:
                await gate.wait()
            return {"v": i}
        except asyncio.CancelledError:
            cancelled += 1
            raise

    with GraphNode(name="g") as graph:
        with MapNode(name="m", inputs={"i": Each(PARENT["items"])}, max_concurrency=4) as items:
            node = CodeNode(name="n", code_fn=work, inputs={"i": PARENT["i"]})
            node["v"] >> PARENT["v"]
            START >> node >> END
        START >> items >> END
    engine = Hush(graph)
    with anyio.fail_after(5):
        async with aclosing(engine.stream({"items": list(range(100))})) as events:
            async for event in events:
                if event.kind == "node_end" and event.path == "g/m[0]/n":
                    break
    assert 4 <= started <= 5
    assert cancelled == started - 1, "every item in flight was cancelled"
    before = started
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == before, "no item started after the loop was left"


async def test_stream_raises_what_run_raises() -> None:
    with GraphNode(name="g") as graph:
        node = CodeNode(name="n", code_fn=lambda x: {"y": x}, inputs={"x": PARENT["x"]})
        START >> node >> END
    with pytest.raises(MissingInputError, match="lack 'x'"):
        async for _ in Hush(graph).stream({}):
            pass


def test_a_pydantic_response_format_cannot_be_streamed() -> None:
    class Answer(BaseModel):
        text: str

    with pytest.raises(GraphDefinitionError, match="stream=True cannot be combined"):
        LLMNode(
            name="llm",
            resource_key="x",
            inputs={"messages": PARENT["m"]},
            response_format=Answer,
            stream=True,
        )


async def test_a_retried_request_streams_again_under_its_attempt_number(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(stream_chunk_chars=4)
    key = register("streamed", server.base_url)
    engine = Hush(streamed_batch(key))
    events = [e async for e in engine.stream({"questions": ["again [[fail-once:500]]"]})]
    tokens = [e for e in events if e.kind == "token"]
    assert tokens and {e.attempts for e in tokens} == {2}
    result = events[-1].result
    assert result is not None
    assert "".join(e.text or "" for e in tokens) == result["answers"][0]
    (call,) = [e.llm for e in events if e.kind == "llm"]
    assert call is not None and call.attempts == 2 and call.error is None
