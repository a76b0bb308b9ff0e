"""Checkpointing on vs off, same process: 10,000 items of 5 ms I/O and 10,000 trivial items.

Each finished item is committed to SQLite (WAL, group commit) by a writer
thread; a map worker starts its next item while the previous one's commit is
under way, so a SIGKILL loses at most the items in flight. Targets: 5 ms I/O
items at most 1.1x, trivial items at most 2x. Also prints the time to resume a
run whose items are all saved, and the CPU time an item costs with the checkpoint
on and off: on the event loop's thread and over the process (the writer thread
included), which a loaded machine disturbs far less than wall time.

    python benchmarks/bench_checkpoint.py [--items 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_map import map_engine, sleeper, trivial


async def measure(title: str, engine: object, items: list[int], repeat: int, target: str) -> None:
    """Print off / on / resume times for one workload."""
    assert hasattr(engine, "run")
    off, on, resume = [], [], []
    cpu_off, cpu_on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        await engine.run({"items": items})
        for _ in range(repeat):
            t, c = time.perf_counter(), (time.thread_time(), time.process_time())
            await engine.run({"items": items})
            off.append(time.perf_counter() - t)
            cpu_off.append((time.thread_time() - c[0], time.process_time() - c[1]))
            run_id = uuid.uuid4().hex
            t, c = time.perf_counter(), (time.thread_time(), time.process_time())
            await engine.run({"items": items}, checkpoint=db, run_id=run_id)
            on.append(time.perf_counter() - t)
            cpu_on.append((time.thread_time() - c[0], time.process_time() - c[1]))
            t = time.perf_counter()
            await engine.run({"items": items}, checkpoint=db, run_id=run_id)
            resume.append(time.perf_counter() - t)
    b_off, b_on, b_res = min(off), min(on), min(resume)
    print(f"{title}, best of {repeat}")
    print(f"  checkpoint off      {b_off * 1e3:8.1f} ms")
    print(f"  checkpoint on       {b_on * 1e3:8.1f} ms   x{b_on / b_off:.2f} vs off ({target})")
    print(f"  resume (all saved)  {b_res * 1e3:8.1f} ms   x{b_res / b_off:.2f} vs off")
    per = 1e6 / len(items)
    for n, where in enumerate(("event loop thread", "whole process")):
        c_off = min(c[n] for c in cpu_off) * per
        c_on = min(c[n] for c in cpu_on) * per
        print(
            f"  CPU per item, {where:17} off {c_off:5.1f} us  on {c_on:5.1f} us  "
            f"(+{c_on - c_off:.1f} us, x{c_on / c_off:.2f})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items = list(range(args.items))
    await measure(
        f"{args.items} items of 5 ms I/O, cap 100",
        map_engine(sleeper(0.005), 100),
        items,
        args.repeat,
        "target <= 1.1",
    )
    await measure(
        f"W1: {args.items} trivial items, cap 100",
        map_engine(trivial, 100),
        items,
        args.repeat,
        "target <= 2",
    )


if __name__ == "__main__":
    asyncio.run(main())
