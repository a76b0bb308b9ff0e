"""Checkpointing on vs off, same process: items of 5 ms I/O and trivial items, cap 100.

Each finished item is committed to SQLite (WAL, group commit: one chunk row per
commit) by a writer thread; a map worker takes its next item while earlier ones are
committed, as long as the map holds at most 2 x cap finished, uncommitted items, so a
SIGKILL loses at most 3 x cap items. Targets: 5 ms I/O items at most 1.1x, trivial items at most 2x
(goal 1.5x).

Checkpoint off and on take turns within every run (best of ``--repeat`` each, each from a
collected heap: ``gc.collect()`` before the clock), so a load spike on a shared machine hits
both alike; each figure is printed as its range
(min-max) over ``--runs`` runs: the wall-time ratio on/off, and the CPU time an item
costs with the checkpoint off and on, on the event loop's thread and over the whole
process (the writer thread included), which a loaded machine disturbs far less than
wall time. Also the time to resume a run whose items are all saved, against off, how
many times an item waited for a commit (the store's ``waits``, over every run with the
checkpoint on), and how many commits a run made (each is one chunk row in the file and
takes the GIL from the loop a few times).

    python benchmarks/bench_checkpoint.py [--items 5000] [--runs 3] [--repeat 3]

To compare with another tree, put it first on the path (the script's own directory
comes first otherwise, and ``hush`` resolves to the installed tree):
``PYTHONPATH=<tree> python <tree>/benchmarks/bench_checkpoint.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import spread
from bench_map import map_engine, sleeper, trivial

from hush.core import Hush

Clocks = tuple[float, float, float]
"""Wall seconds, event-loop-thread CPU seconds, process CPU seconds."""


class Waits(logging.Handler):
    """Collects the commit waits and commits of every checkpoint store closed (its debug
    record)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.waits: list[int] = []
        self.commits: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        stats = getattr(record, "checkpoint", None)
        if stats is not None:
            self.waits.append(stats.waits)
            self.commits.append(stats.commits)


WAITS = Waits()


async def clocked(fn: Callable[[], Awaitable[object]]) -> Clocks:
    """The wall, loop-thread CPU and process CPU time of one call, from a collected heap."""
    gc.collect()
    wall, loop, process = time.perf_counter(), time.thread_time(), time.process_time()
    await fn()
    return (
        time.perf_counter() - wall,
        time.thread_time() - loop,
        time.process_time() - process,
    )


def best(samples: list[Clocks]) -> Clocks:
    """Each clock's best over the samples."""
    return (
        min(s[0] for s in samples),
        min(s[1] for s in samples),
        min(s[2] for s in samples),
    )


async def one_run(engine: Hush, items: list[int], db: Path, repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` rounds of off, on and resume, taking turns (and the waits of
    every round with the checkpoint on)."""
    off: list[Clocks] = []
    on: list[Clocks] = []
    resume: list[Clocks] = []
    waits: list[int] = []
    commits: list[int] = []

    def saved(run_id: str) -> Callable[[], Awaitable[object]]:
        return lambda: engine.run({"items": items}, checkpoint=db, run_id=run_id)

    for _ in range(repeat):
        run = saved(uuid.uuid4().hex)
        off.append(await clocked(lambda: engine.run({"items": items})))
        on.append(await clocked(run))
        waits.append(WAITS.waits[-1])
        commits.append(WAITS.commits[-1])
        resume.append(await clocked(run))
    return {
        "off": best(off),
        "on": best(on),
        "resume": best(resume),
        "waits": waits,
        "commits": commits,
    }


async def measure(
    title: str, engine: Hush, items: list[int], runs: int, repeat: int, target: str
) -> None:
    """Print the on/off ratio, the resume ratio and the CPU per item, as ranges over runs."""
    per = 1e6 / len(items)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        await engine.run({"items": items})
        await engine.run({"items": items}, checkpoint=db, run_id="warm-up")
        for _ in range(runs):
            results.append(await one_run(engine, items, db, repeat))
    print(f"{title}: {runs} runs, best of {repeat} each")
    print(f"  checkpoint off     {spread([r['off'][0] * 1e3 for r in results], '{:.0f}', ' ms')}")
    ratio = [r["on"][0] / r["off"][0] for r in results]
    print(f"  checkpoint on      x{spread(ratio)} vs off ({target})")
    resumed = [r["resume"][0] / r["off"][0] for r in results]
    print(f"  resume (all saved) x{spread(resumed)} vs off")
    waits = [n for r in results for n in r["waits"]]
    print(f"  items that waited for a commit  {spread(waits, '{:.0f}')} of {len(items)}")
    commits = [n for r in results for n in r["commits"]]
    print(f"  commits per run    {spread(commits, '{:.0f}')}")
    for n, where in ((1, "event loop thread"), (2, "whole process")):
        off = spread([r["off"][n] * per for r in results], "{:.1f}", " us")
        on = spread([r["on"][n] * per for r in results], "{:.1f}", " us")
        added = spread([(r["on"][n] - r["off"][n]) * per for r in results], "{:.1f}", " us")
        print(f"  CPU per item, {where:17}  off {off}  on {on}  (+{added})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store_log = logging.getLogger("hush.checkpoint")
    store_log.setLevel(logging.DEBUG)
    store_log.addHandler(WAITS)
    items = list(range(args.items))
    await measure(
        f"{args.items} items of 5 ms I/O, cap 100",
        map_engine(sleeper(0.005), 100),
        items,
        args.runs,
        args.repeat,
        "target <= 1.1",
    )
    await measure(
        f"W1: {args.items} trivial items, cap 100",
        map_engine(trivial, 100),
        items,
        args.runs,
        args.repeat,
        "target <= 2, goal 1.5",
    )


if __name__ == "__main__":
    asyncio.run(main())
