"""W1 (10,000 trivial async items, cap 100) with checkpointing on vs off, same process.

Each finished item is committed to SQLite (WAL, group commit) before its slot
is released, so a SIGKILL loses only items in flight. Target: within 1.5x.

    python benchmarks/bench_checkpoint.py [--items 10000] [--repeat 3]
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


async def measure(title: str, engine: object, items: list[int], repeat: int) -> None:
    """Print off / on / resume times for one workload."""
    assert hasattr(engine, "run")
    off, on, resume = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        await engine.run({"items": items})
        for _ in range(repeat):
            t = time.perf_counter()
            await engine.run({"items": items})
            off.append(time.perf_counter() - t)
            run_id = uuid.uuid4().hex
            t = time.perf_counter()
            await engine.run({"items": items}, checkpoint=db, run_id=run_id)
            on.append(time.perf_counter() - t)
            t = time.perf_counter()
            await engine.run({"items": items}, checkpoint=db, run_id=run_id)
            resume.append(time.perf_counter() - t)
    b_off, b_on, b_res = min(off), min(on), min(resume)
    print(f"{title}, best of {repeat}")
    print(f"  checkpoint off      {b_off * 1e3:8.1f} ms")
    print(
        f"  checkpoint on       {b_on * 1e3:8.1f} ms   x{b_on / b_off:.2f} vs off (target <= 1.5)"
    )
    print(f"  resume (all saved)  {b_res * 1e3:8.1f} ms   x{b_res / b_off:.2f} vs off")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    items = list(range(args.items))
    await measure(
        f"W1: {args.items} trivial items, cap 100", map_engine(trivial, 100), items, args.repeat
    )
    await measure(
        f"{args.items} items of 5 ms I/O, cap 100",
        map_engine(sleeper(0.005), 100),
        items,
        args.repeat,
    )


if __name__ == "__main__":
    asyncio.run(main())
