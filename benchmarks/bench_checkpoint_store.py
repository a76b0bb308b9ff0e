"""Throughput and latency of the SQLite checkpoint store alone (no scheduler).

100 concurrent asyncio writers save LLM-sized results (~1 KB pickled):

- ``queue`` burst: nothing but queued saves, then one ``flush`` (the writer's ceiling);
- ``await save``: each writer waits for the commit holding its entry;
- ``queue`` on a busy loop: every save follows ``--work-us`` of CPU work, so the
  event loop never idles; reports the cost against the same loop without a
  store, and the longest save-to-commit delay (what a SIGKILL could lose);
- idle commit latency: one ``await save`` at a time.

    python benchmarks/bench_checkpoint_store.py [--puts 20000] [--writers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from hush.checkpoint import SQLiteCheckpointStore, open_checkpoint


def result(index: int) -> dict[str, object]:
    """A typical LLM node output."""
    return {
        "content": f"Answer {index}: " + "lorem ipsum dolor sit amet " * 30,
        "usage": {"prompt_tokens": 120, "completion_tokens": 180, "total_tokens": 300},
        "model": "gpt-4o-mini",
        "finish_reason": "stop",
        "tool_calls": None,
    }


def spin(microseconds: float) -> None:
    """Busy CPU work that never yields."""
    end = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < end:
        pass


def line(label: str, puts: int, seconds: float, store: SQLiteCheckpointStore | None) -> str:
    text = f"{label:<30} {puts / seconds:>9,.0f} saves/s  {seconds * 1e3:8.1f} ms"
    if store is not None:
        stats = store.stats
        text += (
            f"  {stats.commits:>5} commits  {stats.entries / max(stats.commits, 1):6.1f}/commit"
            f"  max save-to-commit {stats.max_lag * 1e3:6.1f} ms"
        )
    return text


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return (
        f"p50 {cuts[49] * 1e3:.3f} ms  p99 {cuts[98] * 1e3:.3f} ms  max {max(samples) * 1e3:.3f} ms"
    )


async def writers(
    count: int, per_writer: int, body: Callable[[int, int], Awaitable[None]]
) -> float:
    """Run ``count`` concurrent writers of ``per_writer`` steps; return the wall time."""

    async def writer(w: int) -> None:
        for i in range(per_writer):
            await body(w, i)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(count)))
    return time.perf_counter() - start


async def bench_put(db: Path, puts: int, count: int) -> None:
    store = await open_checkpoint(db, "put", "bench")

    async def body(w: int, i: int) -> None:
        store.queue(f"root/w[{w}]/item[{i}]", "d", result(i))
        await asyncio.sleep(0)

    start = time.perf_counter()
    enqueued = await writers(count, puts // count, body)
    await store.flush()
    committed = time.perf_counter() - start
    print(line("queue burst: enqueued", puts, enqueued, None))
    print(line("queue burst: all committed", puts, committed, store))
    await store.aclose()


async def bench_put_durable(db: Path, puts: int, count: int) -> None:
    store = await open_checkpoint(db, "durable", "bench")
    latencies: list[float] = []

    async def body(w: int, i: int) -> None:
        began = time.perf_counter()
        await store.save(f"root/w[{w}]/item[{i}]", "d", result(i))
        latencies.append(time.perf_counter() - began)

    elapsed = await writers(count, puts // count, body)
    print(line(f"await save, {count} writers", puts, elapsed, store))
    print(f"{'  await save latency':<30} {percentiles(latencies)}")
    await store.aclose()


async def bench_busy_loop(db: Path, puts: int, count: int, work_us: float) -> None:
    async def bare(w: int, i: int) -> None:
        spin(work_us)
        result(i)
        await asyncio.sleep(0)

    baseline = await writers(count, puts // count, bare)
    store = await open_checkpoint(db, "busy", "bench")

    async def body(w: int, i: int) -> None:
        spin(work_us)
        store.queue(f"root/w[{w}]/item[{i}]", "d", result(i))
        await asyncio.sleep(0)

    elapsed = await writers(count, puts // count, body)
    label = f"busy loop ({work_us:g} us/put)"
    print(line(f"{label}: no store", puts, baseline, None))
    print(line(f"{label}: queue", puts, elapsed, store) + f"  x{elapsed / baseline:.2f}")
    await store.aclose()


async def bench_idle_latency(db: Path, samples: int) -> None:
    store = await open_checkpoint(db, "idle", "bench")
    latencies = []
    for i in range(samples):
        began = time.perf_counter()
        await store.save(f"root/item[{i}]", "d", result(i))
        latencies.append(time.perf_counter() - began)
    print(f"{'idle await save latency':<30} {percentiles(latencies)}")
    await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--work-us", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        await bench_put(folder / "put.db", args.puts, args.writers)
        await bench_put_durable(folder / "durable.db", args.puts, args.writers)
        await bench_busy_loop(folder / "busy.db", args.puts, args.writers, args.work_us)
        await bench_idle_latency(folder / "idle.db", 2_000)


if __name__ == "__main__":
    asyncio.run(main())
