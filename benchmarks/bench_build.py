"""Graph building: time and peak memory of building chains of 1k, 2k, 4k and 8k nodes.

Each size is built in a fresh process: once timed (graph construction and
``build()`` separately), once under tracemalloc for the peak of Python
allocations. Both should grow linearly with the number of nodes.

    python benchmarks/bench_build.py [--sizes 1000 2000 4000 8000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, sys, time, tracemalloc
from hush.core import END, PARENT, START, CodeNode, GraphNode


def inc(v):
    return {"v": v + 1}


def chain(n):
    with GraphNode(name="chain") as g:
        prev = CodeNode(name="n0", code_fn=inc, inputs={"v": PARENT["v"]})
        START >> prev
        for i in range(1, n):
            node = CodeNode(name=f"n{i}", code_fn=inc, inputs={"v": prev["v"]})
            prev >> node
            prev = node
        prev["v"] >> PARENT["v"]
        prev >> END
    return g


n, traced = int(sys.argv[1]), sys.argv[2] == "traced"
if traced:
    tracemalloc.start()
t0 = time.perf_counter()
g = chain(n)
t1 = time.perf_counter()
g.build()
t2 = time.perf_counter()
peak = tracemalloc.get_traced_memory()[1] if traced else 0
print(json.dumps({"construct": t1 - t0, "build": t2 - t1, "peak": peak}))
"""


def measure(n: int, traced: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), "traced" if traced else "timed"],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    args = parser.parse_args()
    print(
        f"{'nodes':>6} {'construct':>11} {'build()':>10} {'per node':>10} {'peak memory':>12} {'per node':>10}"
    )
    first: tuple[int, float, float] | None = None
    for n in args.sizes:
        timed = min((measure(n, traced=False) for _ in range(3)), key=lambda r: r["build"])
        peak = measure(n, traced=True)["peak"]
        build = timed["build"]
        print(
            f"{n:>6} {timed['construct'] * 1e3:9.1f}ms {build * 1e3:8.1f}ms "
            f"{build / n * 1e6:8.1f}us {peak / 2**20:10.1f}MB {peak / n:8.0f} B"
        )
        if first is None:
            first = (n, build, peak)
    if first is not None and len(args.sizes) > 1:
        n0, b0, p0 = first
        n1 = args.sizes[-1]
        last_build = min(measure(n1, traced=False)["build"] for _ in range(3))
        last_peak = measure(n1, traced=True)["peak"]
        print(
            f"\n{n1 // n0}x the nodes: build() x{last_build / b0:.1f}, peak memory "
            f"x{last_peak / p0:.1f} (linear would be x{n1 / n0:.0f})"
        )


if __name__ == "__main__":
    main()
