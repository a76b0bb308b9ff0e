"""A CPU-bound map in one process and on Ray, and what the Ray path costs per item.

Same graph, same process, ``--repeat`` runs alternating local and Ray (the spread is printed):

cpu      ``--items`` items of about 20 ms of pure Python each (calibrated here),
         locally and with ``RayExecutor(num_cpus=2)`` (a local Ray instance
         started by the benchmark; its start-up is not timed)
trivial  ``--trivial`` items that do nothing, cap 64: the per-item overhead of the
         Ray path (items batched per call, results streamed back)

    python benchmarks/bench_ray.py [--items 200] [--trivial 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hush.core import END, PARENT, START, CodeNode, Each, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.distributed import RayExecutor


def crunch(x: int, n: int) -> dict[str, Any]:
    total = 0
    for i in range(n):
        total += i * i
    return {"y": (total + x) % 1009}


def graph(executor: RayExecutor | None, cap: int) -> GraphNode:
    with GraphNode(name="bench") as root:
        with MapNode(
            name="items",
            inputs={"x": Each(PARENT["xs"]), "n": PARENT["n"]},
            max_concurrency=cap,
            executor=executor,
        ) as items:
            node = CodeNode(
                name="crunch", code_fn=crunch, inputs={"x": PARENT["x"], "n": PARENT["n"]}
            )
            node["y"] >> PARENT["y"]
            START >> node >> END
        items["y"] >> PARENT["ys"]
        START >> items >> END
    return root


def calibrate(seconds: float) -> int:
    """Loop iterations that take about ``seconds`` here."""
    n = 10_000
    while True:
        started = time.perf_counter()
        crunch(0, n)
        took = time.perf_counter() - started
        if took > 0.005:
            return int(n * seconds / took)
        n *= 2


async def best(engine: Hush, inputs: dict[str, Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await engine.run(inputs)
        times.append(time.perf_counter() - started)
    return min(times), result


async def timed(engine: Hush, inputs: dict[str, Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await engine.run(inputs)
        times.append(time.perf_counter() - started)
    return times, result


async def main(items: int, trivial: int, repeat: int) -> None:
    n = calibrate(0.02)
    cpu = {"xs": list(range(items)), "n": n}
    noop = {"xs": list(range(trivial)), "n": 0}
    with RayExecutor("local", num_cpus=2) as executor:
        executor.start()
        ray_engine = Hush(graph(executor, 8))
        await ray_engine.run({"xs": [0, 1], "n": 1})
        speedups, local_cpu, ray_cpu = [], [], []
        for _ in range(repeat):  # alternate, so both see the same load of the machine
            (local_s,), local_result = await timed(Hush(graph(None, 8)), cpu, 1)
            (ray_s,), ray_result = await timed(ray_engine, cpu, 1)
            assert local_result["ys"] == ray_result["ys"]
            local_cpu.append(local_s)
            ray_cpu.append(ray_s)
            speedups.append(local_s / ray_s)
        ratios, local_noop, ray_noop = [], [], []
        for _ in range(repeat):
            (local_s,), _ = await timed(Hush(graph(None, 64)), noop, 1)
            (ray_s,), _ = await timed(Hush(graph(executor, 64)), noop, 1)
            local_noop.append(local_s / trivial)
            ray_noop.append(ray_s / trivial)
            ratios.append(ray_s / local_s)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} cores")
    print(f"cpu: {items} items of ~20 ms of pure Python, cap 8, {repeat} runs each")
    print(f"  local (one process)       {_spread(local_cpu, 1e3, 'ms')}")
    print(f"  RayExecutor(num_cpus=2)   {_spread(ray_cpu, 1e3, 'ms')}")
    print(f"  speed-up                  {min(speedups):.2f}-{max(speedups):.2f}x (target >= 1.6x)")
    print(f"trivial: {trivial} items that do nothing, cap 64, {repeat} runs each")
    print(f"  local                     {_spread(local_noop, 1e6, 'us/item')}")
    print(f"  RayExecutor               {_spread(ray_noop, 1e6, 'us/item')}")
    print(f"  Ray / local               {min(ratios):.2f}-{max(ratios):.2f}x (target <= 2x)")


def _spread(values: list[float], scale: float, unit: str) -> str:
    return f"{min(values) * scale:8.0f}-{max(values) * scale:.0f} {unit}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--trivial", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.trivial, args.repeat))
