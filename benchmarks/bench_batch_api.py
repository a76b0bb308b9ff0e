"""2,000 rows through one prompt, synchronously and through the Batch API, on the local server.

Prints the requests sent, the cost of each run (the batch one should be half), and the
delay between the last call reaching the collector and the batch being submitted (it
should be about ``batch_window``, well within ``batch_window`` + 1 s); then the same rows
as a spreadsheet through ``hush batch``'s runner with and without ``--batch-api``.

Each figure is printed as min–max over ``--runs`` runs (one value where every
run agreed: the counts and costs are deterministic, the delay is not).

    python benchmarks/bench_batch_api.py [ROWS] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ratios, spread

from hush.batch import run_batch
from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
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
        delay = CodeNode(name="delay", code_fn=submission_delay, inputs={"done": rows["content"]})
        delay["delay"] >> PARENT["delay"]
        START >> rows >> delay >> END
    return g


async def submission_delay(done: list[Any]) -> dict[str, float]:
    """Seconds from the last call reaching this run's collector to its batch's creation.

    Read inside the run: a collector belongs to the run's client scope, so one
    looked up after the run is a fresh one with nothing recorded.
    """
    collector = collector_for("bench")
    return {"delay": collector.submitted_at - collector.last_call_at}


async def run(server: MockLLMServer, qs: list[str], batch: bool) -> dict[str, Any]:
    server.reset()
    result = await Hush(graph(batch)).run({"qs": qs})
    paths = [r.path for r in server.requests]
    return {
        "cost": result["$state"].cost,
        "chat": paths.count("/v1/chat/completions"),
        "batches": paths.count("/v1/batches"),
        "requests": len(paths),
        "delay": result["delay"],
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


def show(label: str, runs: list[dict[str, Any]]) -> str:
    """One arm's requests and cost over its runs (a single value when every run agreed)."""
    text = (
        f"{label:<12} requests {spread([r['requests'] for r in runs], '{:.0f}')}"
        f" (chat {spread([r['chat'] for r in runs], '{:.0f}')},"
        f" batches {spread([r['batches'] for r in runs], '{:.0f}')})"
        f"   cost ${spread([r['cost'] for r in runs], '{:.6f}')}"
    )
    if "failed" in runs[0]:
        text += f"   failed rows {spread([r['failed'] for r in runs], '{:.0f}')}"
    return text


async def main(rows: int, runs: int) -> None:
    qs = [f"row {i}: summarise item number {i} in one line" for i in range(rows)]
    arms: dict[str, list[dict[str, Any]]] = {"sync": [], "batch": [], "sheet": [], "sheet-b": []}
    delays: list[float] = []
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
        for _ in range(runs):
            arms["sync"].append(await run(server, qs, batch=False))
            arms["batch"].append(await run(server, qs, batch=True))
            delays.append(arms["batch"][-1]["delay"])
            arms["sheet"].append(await spreadsheet(server, qs, batch_api=False))
            arms["sheet-b"].append(await spreadsheet(server, qs, batch_api=True))
    print(f"rows: {rows:,}; min–max over {runs} runs (one value where every run agreed)")
    print(show("synchronous", arms["sync"]))
    print(show("batch API", arms["batch"]))
    cost = ratios([r["cost"] for r in arms["batch"]], [r["cost"] for r in arms["sync"]])
    print(f"cost ratio batch/sync: {spread(cost, '{:.4f}')}")
    print(
        f"submission delay after the last call: {spread(delays, '{:.2f}', ' s')}"
        f" (batch_window {WINDOW} s)"
    )
    print("hush batch (the spreadsheet runner):")
    print(show("synchronous", arms["sheet"]))
    print(show("--batch-api", arms["sheet-b"]))
    sheet = ratios([r["cost"] for r in arms["sheet-b"]], [r["cost"] for r in arms["sheet"]])
    print(f"cost ratio --batch-api/sync: {spread(sheet, '{:.4f}')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rows", type=int, nargs="?", default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.runs))
