"""A CPU-bound map in one process and on Ray, and what the Ray path costs per item.

Same graph, same process, ``--repeat`` runs alternating local and Ray (the spread,
min-max, is printed with the load average before and after):

cpu      ``--items`` items of about 20 ms of pure Python each (calibrated here), cap 8,
         locally and with ``RayExecutor("local", num_cpus=2)`` (a local Ray instance
         started by the benchmark; its start-up is not timed). Target: Ray >= 1.6x local.
trivial  ``--trivial`` items that do nothing, cap 64: the per-item overhead of the
         Ray path (items batched per call, results streamed back), wall time and the
         driver's CPU time per item. Target: Ray <= 2x local.

Command (what docs/ray.md quotes):

    python benchmarks/bench_ray.py --items 200 --trivial 2000 --repeat 3
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
    """Loop iterations that take about ``seconds`` of CPU here (thread CPU time, the best
    of 5: a busy machine must not shrink the items)."""
    n = 100_000
    took = min(_cpu(n) for _ in range(5))
    return int(n * seconds / took)


def _cpu(n: int) -> float:
    started = time.thread_time()
    crunch(0, n)
    return time.thread_time() - started


async def timed(engine: Hush, inputs: dict[str, Any]) -> tuple[float, float, Any]:
    """Wall and driver CPU seconds of one run, and its result."""
    started, cpu = time.perf_counter(), time.process_time()
    result = await engine.run(inputs)
    return time.perf_counter() - started, time.process_time() - cpu, result


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


async def main(items: int, trivial: int, repeat: int) -> None:
    load_before = load()
    n = calibrate(0.02)
    cpu = {"xs": list(range(items)), "n": n}
    noop = {"xs": list(range(trivial)), "n": 0}
    with RayExecutor("local", num_cpus=2) as executor:
        executor.start()
        ray_engine = Hush(graph(executor, 8))
        await ray_engine.run({"xs": [0, 1], "n": 1})
        speedups, local_cpu, ray_cpu = [], [], []
        for _ in range(repeat):  # alternate, so both see the same load of the machine
            local_s, _, local_result = await timed(Hush(graph(None, 8)), cpu)
            ray_s, _, ray_result = await timed(ray_engine, cpu)
            assert local_result["ys"] == ray_result["ys"]
            local_cpu.append(local_s)
            ray_cpu.append(ray_s)
            speedups.append(local_s / ray_s)
        ratios, local_noop, ray_noop, local_driver, ray_driver = [], [], [], [], []
        for _ in range(repeat):
            local_s, local_c, _ = await timed(Hush(graph(None, 64)), noop)
            ray_s, ray_c, _ = await timed(Hush(graph(executor, 64)), noop)
            local_noop.append(local_s / trivial)
            ray_noop.append(ray_s / trivial)
            local_driver.append(local_c / trivial)
            ray_driver.append(ray_c / trivial)
            ratios.append(ray_s / local_s)
    print(f"load average {load_before} before, {load()} after, on {os.cpu_count()} cores")
    item_ms = min(local_cpu) / items * 1e3
    print(f"cpu: {items} items of ~20 ms of pure Python ({item_ms:.1f} ms each locally), cap 8")
    print(f"  local (one process)       {_spread(local_cpu, 1e3, 'ms')}")
    print(f"  RayExecutor(num_cpus=2)   {_spread(ray_cpu, 1e3, 'ms')}")
    print(f"  speed-up                  {min(speedups):.2f}-{max(speedups):.2f}x (target >= 1.6x)")
    print(f"trivial: {trivial} items that do nothing, cap 64, {repeat} runs each")
    print(f"  local                     {_spread(local_noop, 1e6, 'us/item')}")
    print(f"  RayExecutor               {_spread(ray_noop, 1e6, 'us/item')}")
    print(f"  Ray / local               {min(ratios):.2f}-{max(ratios):.2f}x (target <= 2x)")
    print(f"  driver CPU, local         {_spread(local_driver, 1e6, 'us/item')}")
    print(f"  driver CPU, Ray           {_spread(ray_driver, 1e6, 'us/item')}")


def _spread(values: list[float], scale: float, unit: str) -> str:
    return f"{min(values) * scale:8.0f}-{max(values) * scale:.0f} {unit}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--trivial", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.trivial, args.repeat))
