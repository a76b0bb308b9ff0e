"""What tracing costs a run: off, LocalTracer, OTLPTracer and LangfuseTracer, same process.

The OTLP/Langfuse backend is a loopback HTTP sink in a process of its own that
decodes nothing and answers 200, so export work is real on our side. Times are
the best of ``--repeat`` runs, each including the final flush (``run()`` waits
for the export). "events only" runs with a subscriber that drops every event:
what emitting the events costs. "loop us/span" is the event loop thread's CPU
time (``time.thread_time``) per span beyond that run: what a tracer costs the
loop itself, the rest of its work happening in the tracer's own thread.

Workloads: 1,000 items of 20 ms (LLM-like latency) at cap 50, and W1, 5,000
trivial items at cap 100 (the loop is the bottleneck there), W1 also with
``sample=0.1`` (a tenth of the items traced). The load average is printed
first: figures taken on a loaded machine are provisional.

    python benchmarks/bench_tracing.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_map import map_engine, sleeper, trivial

from hush.core import Hush
from hush.observability import LangfuseTracer, LocalTracer, OTLPTracer

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Dropping:
    """A tracer that drops every event: the cost of emitting them."""

    def subscribe(self, start: Any) -> Callable[[Any], None]:
        return lambda event: None

    async def flush(self, timeout: float | None = None) -> None:
        return None


async def measure(
    engine: Hush, items: list[int], repeat: int, make: Callable[[], Any]
) -> tuple[float, float]:
    """Best wall time and the loop thread's CPU time of that run."""
    best, cpu = float("inf"), 0.0
    for _ in range(repeat):
        tracer = make()
        started, started_cpu = time.perf_counter(), time.thread_time()
        await engine.run({"items": items}, tracer=tracer)
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, cpu = elapsed, time.thread_time() - started_cpu
        if hasattr(tracer, "close"):
            tracer.close(timeout=1.0)
    return best, cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    host = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    workloads = [
        ("1,000 items of 20 ms, cap 50", map_engine(sleeper(0.02), 50), list(range(1000)), [1.0]),
        (
            "W1: 5,000 trivial items, cap 100",
            map_engine(trivial, 100),
            list(range(5000)),
            [1.0, 0.1],
        ),
    ]
    try:
        with tempfile.TemporaryDirectory() as tmp:

            def arms(sample: float) -> list[tuple[str, Callable[[], Any]]]:
                tail = "" if sample == 1.0 else f" sample={sample}"
                return [
                    (
                        f"LocalTracer{tail}",
                        lambda: LocalTracer(Path(tmp) / f"{uuid.uuid4().hex}.jsonl", sample=sample),
                    ),
                    (f"OTLPTracer{tail}", lambda: OTLPTracer(host, sample=sample)),
                    (
                        f"LangfuseTracer{tail}",
                        lambda: LangfuseTracer(
                            public_key=f"pk-{uuid.uuid4().hex}",
                            secret_key="sk-bench",
                            host=host,
                            sample=sample,
                        ),
                    ),
                ]

            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"load average: {load} on {os.cpu_count()} cores")
            for title, engine, items, samples in workloads:
                spans = 2 + 2 * len(items)
                await engine.run({"items": items})
                off, _ = await measure(engine, items, args.repeat, lambda: None)
                bare, bare_cpu = await measure(engine, items, args.repeat, Dropping)
                print(f"{title}: {spans} spans per run, best of {args.repeat}")
                print(f"  {'tracing off':<22} {off * 1e3:9.1f} ms")
                print(
                    f"  {'events only':<22} {bare * 1e3:9.1f} ms   x{bare / off:5.2f} vs off"
                    f"   {(bare - off) / spans * 1e6:5.1f} us/span"
                )
                for name, make in [arm for sample in samples for arm in arms(sample)]:
                    wall, cpu = await measure(engine, items, args.repeat, make)
                    per_span = max(cpu - bare_cpu, 0.0) / spans * 1e6
                    print(
                        f"  {name:<22} {wall * 1e3:9.1f} ms   x{wall / off:5.2f} vs off"
                        f"   loop {per_span:5.1f} us/span"
                    )
    finally:
        sink.terminate()


if __name__ == "__main__":
    asyncio.run(main())
