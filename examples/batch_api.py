"""Twelve questions through the provider's Batch API at half the price, on the local server.

Run it with ``python examples/batch_api.py``: no key needed.
"""

from __future__ import annotations

import asyncio

from hush import END, PARENT, START, Each, GraphNode, Hush, LLMNode, MapNode
from hush.providers.resources import get_registry
from hush.testing import MockLLMServer


def build(batch: bool) -> GraphNode:
    with GraphNode(name="questions") as graph:
        with MapNode(name="each", inputs={"q": Each(PARENT["qs"])}) as each:
            llm = LLMNode(
                name="answer",
                resource_key="cheap",
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                batch=batch,
            )
            llm["content"] >> PARENT["answer"]
            START >> llm >> END
        each["answer"] >> PARENT["answers"]
        START >> each >> END
    return graph


async def main() -> None:
    questions = [f"What is {i} squared?" for i in range(12)]
    async with MockLLMServer() as server:
        get_registry().register(
            "llm:cheap",
            {
                "base_url": server.base_url,
                "api_key": "sk-local",
                "model": "gpt-4o-mini",
                "input_cost_per_mtok": 0.15,
                "output_cost_per_mtok": 0.60,
                "batch_window": 0.2,
                "batch_poll_interval": 0.1,
            },
        )
        sync = await Hush(build(batch=False)).run({"qs": questions})
        batched = await Hush(build(batch=True)).run({"qs": questions})
        batches = len(server.batch_api.batches)
    for question, answer in zip(questions[:3], batched["answers"], strict=False):
        print(f"{question} -> {answer}")
    print(f"batches submitted: {batches}")
    print(f"cost synchronously: ${sync['$state'].cost:.6f}")
    print(f"cost through the Batch API: ${batched['$state'].cost:.6f}")


if __name__ == "__main__":
    asyncio.run(main())
