"""A CPU-bound map in one process and on Ray, and what the Ray path costs per item.

Same graph, same process, ``--repeat`` runs alternating local and Ray (the spread,
min-max, is printed with the load average before and after):

cpu      ``--items`` items of about 20 ms of pure Python each (calibrated here), cap 8,
         locally and with ``RayExecutor("local", num_cpus=2)`` (a local Ray instance
         started by the benchmark; its start-up is not timed). Target: Ray >= 1.6x local.
trivial  ``--trivial`` items that do nothing, cap 64: the per-item overhead of the
         Ray path (items batched per call, results streamed back), wall time and the
         driver's CPU time per item. Target: Ray <= 2x local.

Wall-clock ratios need a quiet machine. The CPU figures do not: for each row the
benchmark also prints the CPU time per item locally and on Ray (the driver's plus the
workers', from ``psutil``; Ray's own raylet and GCS are not counted), and for the
CPU-bound row the speed-up 2 idle cores would allow, ``2 x local CPU / Ray CPU``.

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

import psutil

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
    n = 500_000
    took = min(_cpu(n) for _ in range(5))
    return int(n * seconds / took)


def _cpu(n: int) -> float:
    started = time.thread_time()
    crunch(0, n)
    return time.thread_time() - started


async def timed(
    engine: Hush, inputs: dict[str, Any], workers: list[psutil.Process] | None = None
) -> tuple[float, float, float, Any]:
    """Wall, driver CPU and workers' CPU seconds of one run, and its result."""
    before = _cpu_of(workers or [])
    started, cpu = time.perf_counter(), time.process_time()
    result = await engine.run(inputs)
    wall, driver = time.perf_counter() - started, time.process_time() - cpu
    return wall, driver, _cpu_of(workers or []) - before, result


def _cpu_of(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


async def main(items: int, trivial: int, repeat: int) -> None:
    load_before = load()
    n = calibrate(0.02)
    cpu = {"xs": list(range(items)), "n": n}
    noop = {"xs": list(range(trivial)), "n": 0}
    with RayExecutor("local", num_cpus=2) as executor:
        executor.start()
        workers = [psutil.Process(pid) for pid in executor.worker_pids()]
        ray_engine = Hush(graph(executor, 8))
        await ray_engine.run({"xs": [0, 1], "n": 1})
        speedups, local_cpu, ray_cpu, bounds, cpu_local, cpu_ray = [], [], [], [], [], []
        for _ in range(repeat):  # alternate, so both see the same load of the machine
            local_s, local_c, _, local_result = await timed(Hush(graph(None, 8)), cpu)
            ray_s, ray_c, workers_c, ray_result = await timed(ray_engine, cpu, workers)
            assert local_result["ys"] == ray_result["ys"]
            local_cpu.append(local_s)
            ray_cpu.append(ray_s)
            speedups.append(local_s / ray_s)
            cpu_local.append(local_c / items)
            cpu_ray.append((ray_c + workers_c) / items)
            bounds.append(2 * local_c / (ray_c + workers_c))
        ratios, local_noop, ray_noop, local_driver, ray_driver, ray_all = [], [], [], [], [], []
        for _ in range(repeat):
            local_s, local_c, _, _ = await timed(Hush(graph(None, 64)), noop)
            ray_s, ray_c, workers_c, _ = await timed(Hush(graph(executor, 64)), noop, workers)
            local_noop.append(local_s / trivial)
            ray_noop.append(ray_s / trivial)
            local_driver.append(local_c / trivial)
            ray_driver.append(ray_c / trivial)
            ray_all.append((ray_c + workers_c) / trivial)
            ratios.append(ray_s / local_s)
    print(f"load average {load_before} before, {load()} after, on {os.cpu_count()} cores")
    item_ms = min(local_cpu) / items * 1e3
    print(f"cpu: {items} items of ~20 ms of pure Python ({item_ms:.1f} ms each locally), cap 8")
    print(f"  local (one process)       {_spread(local_cpu, 1e3, 'ms')}")
    print(f"  RayExecutor(num_cpus=2)   {_spread(ray_cpu, 1e3, 'ms')}")
    print(f"  speed-up                  {min(speedups):.2f}-{max(speedups):.2f}x (target >= 1.6x)")
    print(f"  CPU, local                {_spread(cpu_local, 1e3, 'ms/item')}")
    print(f"  CPU, Ray (driver+workers) {_spread(cpu_ray, 1e3, 'ms/item')}")
    print(f"  speed-up 2 idle cores allow {min(bounds):.2f}-{max(bounds):.2f}x")
    print(f"trivial: {trivial} items that do nothing, cap 64, {repeat} runs each")
    print(f"  local                     {_spread(local_noop, 1e6, 'us/item')}")
    print(f"  RayExecutor               {_spread(ray_noop, 1e6, 'us/item')}")
    print(f"  Ray / local               {min(ratios):.2f}-{max(ratios):.2f}x (target <= 2x)")
    print(f"  driver CPU, local         {_spread(local_driver, 1e6, 'us/item')}")
    print(f"  driver CPU, Ray           {_spread(ray_driver, 1e6, 'us/item')}")
    print(f"  CPU, Ray (driver+workers) {_spread(ray_all, 1e6, 'us/item')}")


def _spread(values: list[float], scale: float, unit: str) -> str:
    return f"{min(values) * scale:8.0f}-{max(values) * scale:.0f} {unit}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--trivial", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.trivial, args.repeat))
