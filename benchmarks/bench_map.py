"""Map workloads against bare asyncio (Semaphore + gather) in the same process.

W1  10,000 items of trivial async work, cap 100          (target: at most 0.9x bare asyncio, CPU)
W2  2,000 items of a 50 ms sleep, cap 200                 (target: at least 95% of ideal)
W5  50 x 100 nested maps, inner cap 20, trivial work      (target: at most 1.7x bare nested gather, CPU)
RSS peak resident memory per item of a 100,000-item map, each measured in a fresh process
    (the growth of VmHWM, Linux; a forked child's ru_maxrss would include its parent's peak)

hush and its baseline get the same input (a list) and take turns in the same
process (memory: in alternating fresh processes); every figure is printed as
min–max over ``--runs`` runs.

    python benchmarks/bench_map.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import alternating, child_values, ratios, spread

from hush.core import END, PARENT, START, CodeNode, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each


async def trivial(item: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"result": item + 1}


def sleeper(seconds: float) -> Any:
    async def work(item: int) -> dict[str, int]:
        await asyncio.sleep(seconds)
        return {"result": item}

    return work


def map_engine(fn: Any, cap: int) -> Hush:
    with GraphNode(name="map") as g:
        with MapNode(name="m", inputs={"item": Each(PARENT["items"])}, max_concurrency=cap) as m:
            n = CodeNode(name="work", code_fn=fn, inputs={"item": PARENT["item"]})
            n["result"] >> PARENT["result"]
            START >> n >> END
        m["result"] >> PARENT["results"]
        START >> m >> END
    return Hush(g)


def nested_engine(inner_cap: int) -> Hush:
    with GraphNode(name="nested") as g:
        with MapNode(
            name="outer", inputs={"row": Each(PARENT["rows"])}, max_concurrency=50
        ) as outer:
            with MapNode(
                name="inner", inputs={"item": Each(PARENT["row"])}, max_concurrency=inner_cap
            ) as inner:
                n = CodeNode(name="work", code_fn=trivial, inputs={"item": PARENT["item"]})
                n["result"] >> PARENT["result"]
                START >> n >> END
            inner["result"] >> PARENT["results"]
            START >> inner >> END
        outer["results"] >> PARENT["table"]
        START >> outer >> END
    return Hush(g)


async def bare_map(fn: Any, items: list[int], cap: int) -> list[Any]:
    sem = asyncio.Semaphore(cap)

    async def one(x: int) -> Any:
        async with sem:
            return (await fn(x))["result"]

    return await asyncio.gather(*(one(x) for x in items))


async def bare_nested(rows: list[list[int]], inner_cap: int) -> list[Any]:
    async def row_task(r: list[int]) -> list[Any]:
        return await bare_map(trivial, r, inner_cap)

    return await bare_map(lambda r: _wrap(row_task(r)), rows, 50)  # type: ignore[arg-type]


async def _wrap(coro: Any) -> dict[str, Any]:
    return {"result": await coro}


RSS_CHILD = """
import asyncio, gc, sys
mode, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from bench_map import map_engine, trivial, bare_map


def peak_rss() -> int:
    # VmHWM belongs to this process image; ru_maxrss would carry the peak of the
    # process that forked us across exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


eng = map_engine(trivial, 100)
asyncio.run(eng.run({"items": range(10)}))
asyncio.run(bare_map(trivial, list(range(10)), 100))
gc.collect()
before = peak_rss()


async def main():
    items = list(range(n))  # both sides get the same materialised list
    if mode == "hush":
        r = await eng.run({"items": items})
        assert len(r["results"]) == n
    else:
        r = await bare_map(trivial, items, 100)
        assert len(r) == n


asyncio.run(main())
print(peak_rss() - before)
"""


def rss_argv(mode: str, n: int) -> list[str]:
    """The command of one fresh process measuring ``mode``'s peak growth for ``n`` items."""
    here = str(Path(__file__).resolve().parent)
    return [sys.executable, "-c", RSS_CHILD, mode, str(n), here]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--runs", type=int, default=3, help="runs behind each range (default 3)")
    parser.add_argument("--json", action="store_true", help="also print results as JSON")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    runs = args.runs
    results: dict[str, list[float]] = {}
    print(f"each figure: min–max over {runs} runs; a run is the best of {repeat} per arm,")
    print("the arms taking turns in the same process (W1, W5: CPU and wall time; W2: wall)\n")

    n1 = 2_000 if args.quick else 10_000
    items = list(range(n1))
    eng = map_engine(trivial, 100)
    arms1 = {
        "bare": lambda: bare_map(trivial, items, 100),
        "hush": lambda: eng.run({"items": items}),
    }
    w1 = await alternating(arms1, runs, repeat, time.process_time)
    w1_wall = await alternating(arms1, runs, repeat)
    print(f"W1: {n1:,} trivial async items, cap 100, the same list to both")
    print(
        f"  bare asyncio (Semaphore+gather) {spread([t / n1 * 1e6 for t in w1['bare']], unit=' us/item')}"
    )
    print(
        f"  hush MapNode                    {spread([t / n1 * 1e6 for t in w1['hush']], unit=' us/item')}"
    )
    results["w1_ratio"] = ratios(w1["hush"], w1["bare"])
    results["w1_wall_ratio"] = ratios(w1_wall["hush"], w1_wall["bare"])
    print(f"  hush / bare, CPU time           {spread(results['w1_ratio'], unit='x')}")
    print(f"  hush / bare, wall time          {spread(results['w1_wall_ratio'], unit='x')}")

    n2, delay, cap2 = (400, 0.05, 200) if args.quick else (2_000, 0.05, 200)
    ideal = n2 / cap2 * delay
    eng2 = map_engine(sleeper(delay), cap2)
    items2 = list(range(n2))
    w2 = await alternating(
        {
            "bare": lambda: bare_map(sleeper(delay), items2, cap2),
            "hush": lambda: eng2.run({"items": items2}),
        },
        runs,
        repeat,
    )
    print(
        f"\nW2: {n2:,} items x {delay * 1e3:.0f} ms sleep, cap {cap2} (ideal {ideal * 1e3:.0f} ms)"
    )
    results["w2_of_ideal"] = [ideal / t for t in w2["hush"]]
    results["w2_bare_of_ideal"] = [ideal / t for t in w2["bare"]]
    hush_w2 = [100 * v for v in results["w2_of_ideal"]]
    bare_w2 = [100 * v for v in results["w2_bare_of_ideal"]]
    print(f"  hush at {spread(hush_w2, '{:.1f}', '%')} of ideal")
    print(f"  bare asyncio at {spread(bare_w2, '{:.1f}', '%')} of ideal")

    outer = 10 if args.quick else 50
    rows = [[r * 100 + c for c in range(100)] for r in range(outer)]
    eng5 = nested_engine(20)
    arms5 = {"bare": lambda: bare_nested(rows, 20), "hush": lambda: eng5.run({"rows": rows})}
    w5 = await alternating(arms5, runs, repeat, time.process_time)
    w5_wall = await alternating(arms5, runs, repeat)
    print(f"\nW5: {outer} x 100 nested maps, outer cap 50, inner cap 20")
    results["w5_ratio"] = ratios(w5["hush"], w5["bare"])
    results["w5_wall_ratio"] = ratios(w5_wall["hush"], w5_wall["bare"])
    print(f"  hush / bare nested gather, CPU time  {spread(results['w5_ratio'], unit='x')}")
    print(f"  hush / bare nested gather, wall time {spread(results['w5_wall_ratio'], unit='x')}")

    n_rss = 20_000 if args.quick else 100_000
    start = time.perf_counter()
    rss = child_values({"hush": rss_argv("hush", n_rss), "bare": rss_argv("bare", n_rss)}, runs)
    results["rss_hush_b_per_item"] = [b / n_rss for b in rss["hush"]]
    results["rss_bare_b_per_item"] = [b / n_rss for b in rss["bare"]]
    print(f"\nRSS: {n_rss:,} items as one list to both, peak resident growth per item,")
    print("one fresh process per run, the two alternating")
    print(f"  bare asyncio {spread(results['rss_bare_b_per_item'], '{:,.0f}', ' B/item')}")
    print(f"  hush         {spread(results['rss_hush_b_per_item'], '{:,.0f}', ' B/item')}")
    print(f"  ({time.perf_counter() - start:.1f} s)")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
