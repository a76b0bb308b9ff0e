"""Map workloads against bare asyncio (Semaphore + gather) in the same process.

W1  10,000 items of trivial async work, cap 100          (target: at most 0.9x bare asyncio)
W2  2,000 items of a 50 ms sleep, cap 200                 (target: at least 95% of ideal)
W5  50 x 100 nested maps, inner cap 20, trivial work      (target: at most 1.7x bare nested gather)
RSS peak resident memory per item of a 100,000-item map, each measured in a fresh process
    (the growth of VmHWM, Linux; a forked child's ru_maxrss would include its parent's peak)

    python benchmarks/bench_map.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, row

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


def rss_per_item(mode: str, n: int) -> float:
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, mode, str(n), here],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip()) / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--json", action="store_true", help="also print results as JSON")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    results: dict[str, float] = {}

    n1 = 2_000 if args.quick else 10_000
    items = list(range(n1))
    eng = map_engine(trivial, 100)
    base = await best_of(lambda: bare_map(trivial, items, 100), repeat)
    t = await best_of(lambda: eng.run({"items": items}), repeat)
    print(f"W1: {n1} trivial async items, cap 100")
    print(row("bare asyncio (Semaphore+gather)", base, base))
    print(row("hush MapNode", t, base))
    print(f"  per item: bare {base / n1 * 1e6:.2f} us, hush {t / n1 * 1e6:.2f} us")
    results["w1_ratio"] = t / base

    n2, delay, cap2 = (400, 0.05, 200) if args.quick else (2_000, 0.05, 200)
    ideal = n2 / cap2 * delay
    eng2 = map_engine(sleeper(delay), cap2)
    items2 = list(range(n2))
    base2 = await best_of(lambda: bare_map(sleeper(delay), items2, cap2), repeat)
    t2 = await best_of(lambda: eng2.run({"items": items2}), repeat)
    print(f"\nW2: {n2} items x {delay * 1e3:.0f} ms sleep, cap {cap2} (ideal {ideal * 1e3:.0f} ms)")
    print(row("bare asyncio", base2, base2))
    print(row("hush MapNode", t2, base2))
    print(f"  hush at {ideal / t2:.1%} of ideal, bare asyncio at {ideal / base2:.1%}")
    results["w2_of_ideal"] = ideal / t2

    outer = 10 if args.quick else 50
    rows = [[r * 100 + c for c in range(100)] for r in range(outer)]
    eng5 = nested_engine(20)
    base5 = await best_of(lambda: bare_nested(rows, 20), repeat)
    t5 = await best_of(lambda: eng5.run({"rows": rows}), repeat)
    print(f"\nW5: {outer} x 100 nested maps, outer cap 50, inner cap 20")
    print(row("bare asyncio (nested gather)", base5, base5))
    print(row("hush nested MapNode", t5, base5))
    results["w5_ratio"] = t5 / base5

    n_rss = 20_000 if args.quick else 100_000
    start = time.perf_counter()
    hush_rss = rss_per_item("hush", n_rss)
    bare_rss = rss_per_item("bare", n_rss)
    print(f"\nRSS: {n_rss} items, peak resident growth per item (child processes)")
    print(f"  bare asyncio {bare_rss:8.0f} B/item")
    print(f"  hush         {hush_rss:8.0f} B/item   x{hush_rss / bare_rss:.2f} vs bare")
    print(f"  ({time.perf_counter() - start:.1f} s)")
    results["rss_hush_b_per_item"] = hush_rss
    results["rss_bare_b_per_item"] = bare_rss
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
