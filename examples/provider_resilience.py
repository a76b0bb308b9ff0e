"""What the provider layer does for a batch when providers misbehave.

Three runs of the same 40-row batch against the bundled local server:
1. an endpoint with no limits configured: requests go out at the map's cap at once;
2. the primary endpoint is down (a closed port): its breaker fails calls fast with
   "cannot connect", and every row falls back to the second resource;
3. the server answers with a day-long Retry-After (a spent quota): the rows fail in
   seconds with a clear, resumable error instead of waiting a day.

python examples/provider_resilience.py
"""

from __future__ import annotations

import asyncio
import socket
import time

from hush import END, PARENT, START, Each, GraphNode, Hush, LLMNode, MapNode, PromptNode
from hush.providers import get_registry
from hush.testing import MockLLMServer


def batch(resource: str, fallback: list[str] | None = None) -> Hush:
    with GraphNode(name="batch") as graph:
        with MapNode(name="rows", inputs={"row": Each(PARENT["rows"])}, max_concurrency=20) as rows:
            prompt = PromptNode(
                name="prompt", inputs={"prompt": "Label: {row}", "row": PARENT["row"]}
            )
            llm = LLMNode(
                name="llm",
                resource_key=resource,
                fallback=fallback,
                inputs={"messages": prompt["messages"]},
            )
            llm["content"] >> PARENT["answer"]
            START >> prompt >> llm >> END
        rows["answer"] >> PARENT["answers"]
        rows["error"] >> PARENT["errors"]
        START >> rows >> END
    return Hush(graph)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    registry = get_registry()
    rows = [f"row {i}" for i in range(40)]
    async with MockLLMServer(latency=0.1) as server:
        registry.register(
            "llm:open", {"base_url": server.base_url, "model": "m", "api_key": "local-key"}
        )
        registry.register(
            "llm:down",
            {
                "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                "model": "m",
                "api_key": "local-key",
            },
        )

        start = time.monotonic()
        result = await batch("open").run({"rows": rows})
        print(
            f"1. no limits configured: {len(rows)} rows in {time.monotonic() - start:.2f}s, "
            f"{server.peak_in_flight} requests in flight at once (the map's cap is 20)"
        )

        start = time.monotonic()
        result = await batch("down", fallback=["open"]).run({"rows": rows})
        answered = sum(1 for e in result["errors"] if e is None)
        print(
            f"2. primary down: {answered}/{len(rows)} rows answered by the fallback in "
            f"{time.monotonic() - start:.2f}s"
        )

        server.configure(fault_retry_after=86_400)
        start = time.monotonic()
        result = await batch("open").run({"rows": [f"{row} [[fail:429]]" for row in rows[:3]]})
        print(
            f"3. quota spent: 3 rows failed in {time.monotonic() - start:.2f}s: "
            f"{result['errors'][0].message[:90]}..."
        )


if __name__ == "__main__":
    asyncio.run(main())
