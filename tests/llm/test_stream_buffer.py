"""A slow ``engine.stream()`` reader of streamed LLM replies, over real HTTP to the local
server: token events beyond the buffer are dropped and counted, nothing else is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import anyio

from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.events import Event
from hush.core.nodes.iteration import MapNode
from hush.observability import MemoryTracer
from hush.providers import LLMNode, PromptNode
from hush.testing import MockLLMServer

QUESTIONS = [f"Tell me about item number {i}: " + "more words " * 30 for i in range(6)]


class Watching(MemoryTracer):
    """Counts the token events the run emits; ``replied`` is set by the first ``llm`` event."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = 0
        self.replied = asyncio.Event()

    def subscribe(self, start: Event) -> Any:
        inner = super().subscribe(start)

        def watch(event: Event) -> None:
            if event.kind == "token":
                self.tokens += 1
            elif event.kind == "llm":
                self.replied.set()
            inner(event)

        return watch


def streamed_batch(resource: str) -> GraphNode:
    with GraphNode(name="g") as graph:
        with MapNode(name="batch", inputs={"q": Each(PARENT["questions"])}, max_concurrency=3) as m:
            prompt = PromptNode(name="prompt", inputs={"prompt": {"user": "{q}"}, "q": PARENT["q"]})
            llm = LLMNode(
                name="llm",
                resource_key=resource,
                inputs={"messages": prompt["messages"]},
                stream=True,
            )
            llm["content"] >> PARENT["answer"]
            START >> prompt >> llm >> END
        m["answer"] >> PARENT["answers"]
        START >> m >> END
    return graph


async def test_a_reader_that_falls_behind_loses_tokens_counted_never_answers(
    server: MockLLMServer, register: Callable[..., str]
) -> None:
    server.configure(stream_chunk_chars=3, reply_chars=400)
    key = register("stream-buffer", server.base_url)
    tracer = Watching()
    received: list[Event] = []
    stream = Hush(streamed_batch(key)).stream({"questions": QUESTIONS}, buffer=40, tracer=tracer)
    async with aclosing(stream) as events:
        async for event in events:
            received.append(event)
            if len(received) == 1:
                with anyio.fail_after(30):
                    await tracer.replied.wait()
    end = received[-1]
    assert end.kind == "run_end" and end.result is not None
    state = end.result["$state"]
    got = sum(1 for e in received if e.kind == "token")
    assert state.dropped_tokens > 0
    assert got + state.dropped_tokens == tracer.tokens
    assert end.result["answers"] == [
        "[gpt-4o-mini] reply to: " + " ".join(q.split()) for q in QUESTIONS
    ]
    assert sum(1 for e in received if e.kind == "llm") == len(QUESTIONS)
    assert sum(1 for e in received if e.kind == "node_end" and e.name == "llm") == len(QUESTIONS)
