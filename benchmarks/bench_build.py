"""Graph building: time and peak memory of building chains of 1k, 2k, 4k and 8k nodes.

Each size is built in fresh processes, ``--runs`` of them timed (CPU time of
graph construction and of ``build()``, which other jobs on the machine do not
inflate) and ``--runs`` under tracemalloc for the
peak of Python allocations; each figure is min–max over those runs. Both should
grow linearly with the number of nodes.

    python benchmarks/bench_build.py [--sizes 1000 2000 4000 8000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ratios, spread

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
t0 = time.process_time()
g = chain(n)
t1 = time.process_time()
g.build()
t2 = time.process_time()
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
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"a chain of N nodes, each figure min–max over {args.runs} fresh processes")
    builds: dict[int, list[float]] = {}
    peaks: dict[int, list[float]] = {}
    for n in args.sizes:
        timed = [measure(n, traced=False) for _ in range(args.runs)]
        builds[n] = [r["build"] for r in timed]
        peaks[n] = [measure(n, traced=True)["peak"] for _ in range(args.runs)]
        print(
            f"{n:>6} nodes: construct {spread([r['construct'] * 1e3 for r in timed], '{:.1f}', ' ms')}"
            f"   build() {spread([b / n * 1e6 for b in builds[n]], '{:.1f}', ' us/node')}"
            f"   peak memory {spread([p / n for p in peaks[n]], '{:,.0f}', ' B/node')}"
        )
    if len(args.sizes) > 1:
        n0, n1 = args.sizes[0], args.sizes[-1]
        print(
            f"\n{n1 // n0}x the nodes: build() x{spread(ratios(builds[n1], builds[n0]), '{:.1f}')},"
            f" peak memory x{spread(ratios(peaks[n1], peaks[n0]), '{:.1f}')}"
            f" (linear would be x{n1 / n0:.0f})"
        )


if __name__ == "__main__":
    main()
