"""Tracer-side CPU per span, by thread: what the tracer's own thread and the export thread cost.

    python benchmarks/bench_tracing_threads.py [--runs 3]

W1 (5,000 trivial items at cap 100, 10,002 spans per run), every item traced, exported to a
loopback HTTP sink in another process. "tracer thread" is the CPU time
(``time.thread_time``) of the tracer's thread handling the run's events (pairing them,
building the spans through the OpenTelemetry SDK); "export" the CPU time of the span
processor's thread in ``OTLPHttpExporter.export`` (encoding and posting the batches). CPU
time per thread is what other jobs on a shared machine inflate least; each figure is the
``min–max`` over ``--runs`` runs, OTLPTracer and LangfuseTracer alternating. To compare with
older code, run it with ``PYTHONPATH=<a worktree of the older commit>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

from _common import spread
from bench_map import map_engine, trivial
from bench_tracing import SINK

from hush.observability import LangfuseTracer, OTLPTracer
from hush.observability import exporter as exporting

ITEMS = 5000
SPANS = 2 + 2 * ITEMS
spent = {"thread": 0.0, "export": 0.0}
_export = exporting.OTLPHttpExporter.export


def _timed_export(self: Any, spans: Sequence[Any]) -> Any:
    started = time.thread_time()
    try:
        return _export(self, spans)
    finally:
        spent["export"] += time.thread_time() - started


exporting.OTLPHttpExporter.export = _timed_export  # type: ignore[method-assign]


async def one(engine: Any, make: Callable[[], Any]) -> tuple[float, float]:
    """Tracer thread and export CPU seconds per span of one traced run."""
    spent["thread"] = spent["export"] = 0.0
    tracer = make()
    handle = tracer._handle_batch

    def timed(events: list[Any]) -> None:
        started = time.thread_time()
        handle(events)
        spent["thread"] += time.thread_time() - started

    tracer.writer._handler = timed
    await engine.run({"items": list(range(ITEMS))}, tracer=tracer)
    tracer.close(timeout=120.0)
    return spent["thread"] / SPANS, spent["export"] / SPANS


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    host = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    engine = map_engine(trivial, 100)
    arms: dict[str, Callable[[], Any]] = {
        "OTLPTracer": lambda: OTLPTracer(host, flush_timeout=120.0),
        "LangfuseTracer": lambda: LangfuseTracer(
            public_key="pk-bench",
            secret_key="sk-bench-not-a-secret",
            host=host,
            flush_timeout=120.0,
        ),
    }
    try:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        await engine.run({"items": list(range(ITEMS))})
        found: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in arms}
        for _ in range(args.runs):
            for name, make in arms.items():
                thread, export = await one(engine, make)
                found[name][0].append(thread * 1e6)
                found[name][1].append(export * 1e6)
        print(f"W1, {SPANS} spans per run:")
        for name, (thread, export) in found.items():
            print(
                f"  {name:<15} tracer thread {spread(thread, '{:.0f}', ' us/span')}"
                f"   export {spread(export, '{:.0f}', ' us/span')}"
            )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        sink.terminate()


if __name__ == "__main__":
    asyncio.run(main())
