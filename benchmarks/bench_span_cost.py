"""Tracer-thread CPU per span: recorded events fed straight to each tracer's thread code.

    python benchmarks/bench_span_cost.py [--runs 5] [--repeat 3]

The events of a real run are captured once per workload (a subscriber reading what a
tracer reads, sampled items included), then handed to a fresh tracer of each arm in
batches of 1,000 as its :class:`~hush.background.writer.BackgroundWriter` would
(``_handle_batch``), followed by the flush's idle hook and export, all in this thread. The
figure is that thread's CPU time (``time.thread_time``) per span of the run: no event loop
competes for the GIL, so it is the tracer's own cost, which a traced run pays on the same
GIL. Each timing starts after a full garbage collection; arms alternate within every round,
each taking its best of ``--repeat``; each figure is ``min–max`` over ``--runs`` rounds.
To compare with older code, run it with ``PYTHONPATH=<a worktree of the older commit>``.

Workloads (those of ``bench_tracing.py``): 1,000 items of 20 ms at cap 50; W1, 5,000
trivial items at cap 100, every item traced and with ``sample=0.1``.

Arms: ``SpanTracer`` pairs events into spans and exports nothing (the common part);
``MemoryTracer`` adds the records (serialisation included); ``LocalTracer`` adds writing
them as JSON lines. A row is one entry of :data:`ARMS`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import spread
from bench_map import map_engine, sleeper, trivial

from hush.core import Hush
from hush.core.events import Event
from hush.observability import LocalTracer, MemoryTracer
from hush.observability.open_spans import TRACED_KINDS, sampled
from hush.observability.spans import SpanTracer

BATCH = 1000
"""Events per handler call (the writer's ``batch_size``)."""

Make = Callable[[Path, float], SpanTracer]
ARMS: dict[str, Make] = {
    "SpanTracer (pairing only)": lambda tmp, sample: SpanTracer(sample=sample),
    "MemoryTracer": lambda tmp, sample: MemoryTracer(sample=sample),
    "LocalTracer": lambda tmp, sample: LocalTracer(
        tmp / f"{uuid.uuid4().hex}.jsonl", sample=sample
    ),
}
"""Arm name -> a fresh tracer (given a scratch directory and the sampled share)."""


class Recorder:
    """Keeps the events a tracer with ``share`` would receive."""

    kinds = TRACED_KINDS

    def __init__(self, share: float) -> None:
        self.events: list[Event] = []
        self.share = share
        if share < 1.0:
            self.wants_item = self._wants

    def subscribe(self, start: Event) -> Recorder:
        self.run_id = start.run_id
        return self

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    async def flush(self, timeout: float | None = None) -> None:
        return None

    def _wants(self, path: str) -> bool:
        return sampled(self.run_id, path, self.share)


async def capture(engine: Hush, n: int, share: float) -> tuple[list[Event], int]:
    """The events a tracer receives from one run of ``n`` items, and the run's span count."""
    recorder = Recorder(share)
    await engine.run({"items": list(range(n))}, tracer=recorder)
    spans = sum(event.kind in ("run_start", "node_start") for event in recorder.events)
    return recorder.events, spans


def cost(make: Make, tmp: Path, sample: float, events: list[Event]) -> float:
    """Thread CPU seconds a fresh tracer spends on ``events`` (closed untimed)."""
    tracer = make(tmp, sample)
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    gc.collect()
    started = time.thread_time()
    for batch in batches:
        tracer._handle_batch(batch)
    tracer._caught_up(None)
    spent = time.thread_time() - started
    tracer.close(timeout=60.0)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (ranges are over these)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per arm per round (best)")
    args = parser.parse_args()
    workloads = [
        ("1,000 items of 20 ms, cap 50", map_engine(sleeper(0.02), 50), 1000, 1.0),
        ("W1: 5,000 trivial items, cap 100", map_engine(trivial, 100), 5000, 1.0),
        ("W1 sample=0.1", map_engine(trivial, 100), 5000, 0.1),
    ]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"python {sys.version.split()[0]}, {args.runs} rounds, best of {args.repeat}:"
        " tracer-thread CPU per span traced"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for title, engine, n, sample in workloads:
            events, spans = asyncio.run(capture(engine, n, sample))
            found: dict[str, list[float]] = {name: [] for name in ARMS}
            for make in ARMS.values():
                cost(make, Path(tmp), sample, events)
            for _ in range(args.runs):
                for name, make in ARMS.items():
                    best = min(cost(make, Path(tmp), sample, events) for _ in range(args.repeat))
                    found[name].append(best / spans * 1e6)
            print(f"{title}: {len(events)} events, {spans} spans")
            for name, values in found.items():
                print(f"  {name:<28} {spread(values, '{:.1f}', ' us/span')}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
