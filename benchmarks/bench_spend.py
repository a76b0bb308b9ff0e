"""What cost accounting, a budget and the response cache cost a run, and what a cache hit saves.

One map of LLM calls against the local server in a process of its own, same
process and minute for every arm, best of ``--repeat``:

plain      no budget, no cache (cost is always counted)
budget     ``max_cost`` and ``max_total_tokens`` large enough never to refuse
cold       ``cache=`` an empty file: every answer is looked up, missed, sent and stored
warm       ``cache=`` the file the cold run filled: every answer comes from it

Printed: wall time and ratio to ``plain``; for the cache arms, the requests the
server received. Answers take ``--latency`` seconds at the server (0 shows the
engine's own overhead per call; 0.2 is closer to a real model).

    python benchmarks/bench_spend.py [--calls 1000] [--latency 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import ServerProcess

from hush.core import END, PARENT, START, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.providers import LLMNode, get_registry


def graph(cap: int) -> GraphNode:
    with GraphNode(name="spend") as root:
        with MapNode(name="calls", inputs={"q": Each(PARENT["qs"])}, max_concurrency=cap) as calls:
            llm = LLMNode(
                name="llm",
                resource_key="bench-spend",
                inputs={"messages": [{"role": "user", "content": PARENT["q"]}]},
            )
            llm["content"] >> PARENT["content"]
            START >> llm >> END
        calls["content"] >> PARENT["contents"]
        START >> calls >> END
    return root


async def timed(engine: Hush, inputs: dict[str, Any], **options: Any) -> float:
    started = time.perf_counter()
    result = await engine.run(inputs, **options)
    elapsed = time.perf_counter() - started
    assert all(result["$state"].llm.values()), "the run made no LLM call"
    return elapsed


async def main(calls: int, latency: float, repeat: int, cap: int) -> None:
    server = ServerProcess(latency=latency)
    try:
        get_registry().register(
            "llm:bench-spend",
            {
                "base_url": server.base_url,
                "model": "gpt-4o-mini",
                "input_cost_per_mtok": 0.15,
                "output_cost_per_mtok": 0.6,
                "max_concurrency": cap,
            },
        )
        engine = Hush(graph(cap))
        inputs = {"qs": [f"question {i}: what is {i} squared?" for i in range(calls)]}
        await engine.run(inputs)
        best = {arm: float("inf") for arm in ("plain", "budget", "cold", "warm")}
        sent: dict[str, int] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(repeat):
                best["plain"] = min(best["plain"], await timed(engine, inputs))
                best["budget"] = min(
                    best["budget"],
                    await timed(engine, inputs, max_cost=1e6, max_total_tokens=10**12),
                )
                cache = Path(tmp) / f"cache-{round_}.sqlite"
                server.reset()
                best["cold"] = min(best["cold"], await timed(engine, inputs, cache=cache))
                sent["cold"] = len(server.requests)
                server.reset()
                best["warm"] = min(best["warm"], await timed(engine, inputs, cache=cache))
                sent["warm"] = len(server.requests)
        print(f"{calls} LLM calls at cap {cap}, server latency {latency:g} s, best of {repeat}")
        for arm, seconds in best.items():
            extra = f"   {sent[arm]} requests sent" if arm in sent else ""
            ratio = seconds / best["plain"]
            per_call = (seconds - best["plain"]) / calls * 1e6
            print(
                f"  {arm:7} {seconds * 1e3:8.1f} ms   x{ratio:5.2f} vs plain"
                f"   {per_call:+7.1f} us/call{extra}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.latency, args.repeat, args.cap))
