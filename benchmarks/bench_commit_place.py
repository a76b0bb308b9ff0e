"""Where checkpoint commits are made: on the event loop (hush's choice while the writer is
idle) against always by the writer thread, in one process.

    python benchmarks/bench_commit_place.py [--rounds 20] [--items trivial|io]

W1's map (5,000 items at cap 100, trivial or 5 ms of I/O) runs without a checkpoint and
with one, in turns, every round; the two places take turns too: "loop" is the code as it
is, "thread" the same code with every commit handed to the writer thread (what hush did
before). Printed per place: the median of the on/off ratios with their quartiles and
range, and the process's CPU (every thread) per item over the run without a checkpoint.
Medians of many interleaved rounds are steadier on a shared machine than the ranges of
``bench_checkpoint.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench_map import map_engine, sleeper, trivial

import hush.checkpoint.writer as writer_module

ITEMS = 5000
PLACES = ("thread", "loop")


def place(name: str) -> None:
    """Make every later commit go where ``name`` says."""
    if name == "thread":
        writer_module.Writer.idle = lambda self, commits: False  # type: ignore[method-assign]
    else:
        writer_module.Writer.idle = IDLE  # type: ignore[method-assign]


IDLE = writer_module.Writer.idle


async def measure(rounds: int, body: Any) -> dict[str, tuple[list[float], list[float]]]:
    engine = map_engine(body, 100)
    items = list(range(ITEMS))
    found: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in PLACES}
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        await engine.run({"items": items})
        await engine.run({"items": items}, checkpoint=db, run_id="warm-up")
        for _ in range(rounds):
            for name in PLACES:
                place(name)
                wall, cpu = time.perf_counter(), time.process_time()
                await engine.run({"items": items})
                off, off_cpu = time.perf_counter() - wall, time.process_time() - cpu
                wall, cpu = time.perf_counter(), time.process_time()
                await engine.run({"items": items}, checkpoint=db, run_id=uuid.uuid4().hex)
                on, on_cpu = time.perf_counter() - wall, time.process_time() - cpu
                found[name][0].append(on / off)
                found[name][1].append((on_cpu - off_cpu) / ITEMS * 1e6)
    place("loop")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--items", choices=("trivial", "io"), default="trivial")
    args = parser.parse_args()
    body = trivial if args.items == "trivial" else sleeper(0.005)
    found = asyncio.run(measure(args.rounds, body))
    print(f"W1 map, {ITEMS} {args.items} items, cap 100: checkpoint on/off, {args.rounds} rounds")
    for name in PLACES:
        ratios, cpu = found[name]
        low, _, high = statistics.quantiles(ratios, n=4)
        print(
            f"  commits by the {name:<6}  median x{statistics.median(ratios):.2f} "
            f"(quartiles {low:.2f}-{high:.2f}, range {min(ratios):.2f}-{max(ratios):.2f}), "
            f"process CPU +{statistics.median(cpu):.1f} us/item"
        )


if __name__ == "__main__":
    main()
