"""2,000 rows through one prompt, synchronously and through the Batch API, on the local server.

Prints the requests sent, the cost of each run (the batch one should be half), and the
delay between the last call reaching the collector and the batch being submitted (it
should be about ``batch_window``, well within ``batch_window`` + 1 s); then the same rows
as a spreadsheet through ``hush batch``'s runner with and without ``--batch-api``.

    .venv/bin/python benchmarks/bench_batch_api.py [ROWS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from hush.batch import run_batch
from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode
from hush.providers.batch_api.collector import collector_for
from hush.providers.resources import get_registry
from hush.testing import MockLLMServer

WINDOW = 0.5


def graph(batch: bool) -> GraphNode:
    with GraphNode(name="bench") as g:
        with MapNode(name="rows", inputs={"q": Each(PARENT["qs"])}, max_concurrency=4000) as rows:
            node = LLMNode(
                name="llm",
                resource_key="bench",
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
                batch=batch,
            )
            node["content"] >> PARENT["content"]
            START >> node >> END
        rows["content"] >> PARENT["contents"]
        START >> rows >> END
    return g


async def run(server: MockLLMServer, qs: list[str], batch: bool) -> dict[str, Any]:
    server.reset()
    result = await Hush(graph(batch)).run({"qs": qs})
    paths = [r.path for r in server.requests]
    return {
        "cost": result["$state"].cost,
        "chat": paths.count("/v1/chat/completions"),
        "batches": paths.count("/v1/batches"),
        "requests": len(paths),
    }


async def spreadsheet(server: MockLLMServer, qs: list[str], batch_api: bool) -> dict[str, Any]:
    """The rows through ``hush batch``'s runner (a CSV out, its checkpoint beside it)."""
    server.reset()
    with tempfile.TemporaryDirectory() as tmp:
        result = await run_batch(
            [{"text": q} for q in qs],
            Path(tmp) / "out.csv",
            prompt="{text}",
            model="bench",
            concurrency=4000,
            progress=False,
            batch_api=batch_api,
        )
    paths = [r.path for r in server.requests]
    state = result.state
    return {
        "cost": state.cost if state is not None else float("nan"),
        "chat": paths.count("/v1/chat/completions"),
        "batches": paths.count("/v1/batches"),
        "requests": len(paths),
        "failed": result.failed,
    }


async def main(rows: int) -> None:
    qs = [f"row {i}: summarise item number {i} in one line" for i in range(rows)]
    async with MockLLMServer() as server:
        get_registry().register(
            "llm:bench",
            {
                "base_url": server.base_url,
                "api_key": "sk-bench",
                "model": "gpt-4o-mini",
                "rpm": 10_000_000,
                "input_cost_per_mtok": 0.15,
                "output_cost_per_mtok": 0.60,
                "batch_window": WINDOW,
                "batch_poll_interval": 0.05,
            },
        )
        sync = await run(server, qs, batch=False)
        batched = await run(server, qs, batch=True)
        collector = collector_for("bench")
        delay = collector.submitted_at - collector.last_call_at
        sheet_sync = await spreadsheet(server, qs, batch_api=False)
        sheet_batch = await spreadsheet(server, qs, batch_api=True)
    print(f"rows: {rows}")
    for label, r in (("synchronous", sync), ("batch API", batched)):
        print(
            f"{label:<12} requests {r['requests']:5d} (chat {r['chat']}, batches {r['batches']})"
            f"   cost ${r['cost']:.6f}"
        )
    print(f"cost ratio batch/sync: {batched['cost'] / sync['cost']:.4f}")
    print(f"submission delay after the last call: {delay:.3f} s (batch_window {WINDOW} s)")
    print("hush batch (the spreadsheet runner):")
    for label, r in (("synchronous", sheet_sync), ("--batch-api", sheet_batch)):
        print(
            f"{label:<12} requests {r['requests']:5d} (chat {r['chat']}, batches {r['batches']})"
            f"   cost ${r['cost']:.6f}   failed rows {r['failed']}"
        )
    print(f"cost ratio --batch-api/sync: {sheet_batch['cost'] / sheet_sync['cost']:.4f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
