"""What cost accounting, a budget and the response cache cost a run, and what a cache hit saves.

One map of LLM calls against the local server in a process of its own, same
process and minute for every arm; a run is each arm's best of ``--repeat`` rounds
(the arms taking turns in every round), and each figure is min–max over ``--runs``:

plain      no budget, no cache (cost is always counted)
budget     ``Budget(max_cost=..., max_total_tokens=...)`` large enough never to refuse
cold       ``cache=`` an empty file: every answer is looked up, missed, sent and stored
warm       ``cache=`` the file the cold run filled: every answer comes from it

Printed: the ratio to ``plain`` of wall time and of this process's CPU time
(the server's CPU is not in it); for the cache arms, the requests the server
received. Answers take ``--latency`` seconds at the server (0 shows the engine's
own overhead per call; 0.2 is closer to a real model).

    python benchmarks/bench_spend.py [--calls 1000] [--latency 0] [--repeat 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ratios, spread
from _server_process import ServerProcess

from hush.core import END, PARENT, START, Budget, Each, GraphNode, Hush
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


ARMS = ("plain", "budget", "cold", "warm")


async def timed(engine: Hush, inputs: dict[str, Any], **options: Any) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = await engine.run(inputs, **options)
    elapsed = time.perf_counter() - wall, time.process_time() - cpu
    assert all(result["$state"].llm.values()), "the run made no LLM call"
    return elapsed


async def one_run(
    engine: Hush, inputs: dict[str, Any], server: ServerProcess, repeat: int, tmp: Path
) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    """Each arm's best wall and best CPU time of ``repeat`` rounds.

    The arms take turns, starting each round one arm further along, so no arm
    always runs first (cold and warm stay a pair: warm reads what cold stored).
    """
    best = {arm: (float("inf"), float("inf")) for arm in ARMS}
    sent: dict[str, int] = {}
    budget = Budget(max_cost=1e6, max_total_tokens=10**12)

    async def cached() -> dict[str, tuple[float, float]]:
        cache = tmp / f"cache-{uuid.uuid4().hex}.sqlite"
        server.reset()
        cold = await timed(engine, inputs, cache=cache)
        sent["cold"] = len(server.requests)
        server.reset()
        warm = await timed(engine, inputs, cache=cache)
        sent["warm"] = len(server.requests)
        return {"cold": cold, "warm": warm}

    async def plain() -> dict[str, tuple[float, float]]:
        return {"plain": await timed(engine, inputs)}

    async def budgeted() -> dict[str, tuple[float, float]]:
        return {"budget": await timed(engine, inputs, budget=budget)}

    turns = [plain, budgeted, cached]
    for round_ in range(repeat):
        for k in range(len(turns)):
            for arm, (wall, cpu) in (await turns[(round_ + k) % len(turns)]()).items():
                best[arm] = (min(best[arm][0], wall), min(best[arm][1], cpu))
    return best, sent


async def main(calls: int, latency: float, repeat: int, cap: int, runs: int) -> None:
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
        wall: dict[str, list[float]] = {arm: [] for arm in ARMS}
        cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(runs):
                best, sent = await one_run(engine, inputs, server, repeat, Path(tmp))
                for arm in ARMS:
                    wall[arm].append(best[arm][0])
                    cpu[arm].append(best[arm][1])
        print(
            f"{calls:,} LLM calls at cap {cap}, server latency {latency:g} s (its own process);"
            f" min–max over {runs} runs, a run the best of {repeat} per arm, arms taking turns"
        )
        for arm in ARMS:
            extra = f"   {sent[arm]} requests sent" if arm in sent else ""
            print(
                f"  {arm:7} wall {spread(ratios(wall[arm], wall['plain']), unit='x')} vs plain"
                f"   this process's CPU {spread(ratios(cpu[arm], cpu['plain']), unit='x')}"
                f"{extra}"
            )
        print(f"  plain   {spread([w / calls * 1e6 for w in wall['plain']], '{:.0f}', ' us/call')}")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.latency, args.repeat, args.cap, args.runs))
