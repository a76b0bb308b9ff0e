"""W1 (trivial async map, cap 100) with tracing off, to a local JSONL file, and to Langfuse.

The Langfuse arm uses the official SDK exporting to a loopback HTTP sink that
answers 200, so the export work is real but no server is needed.

    python benchmarks/bench_tracing.py [--items 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_map import map_engine, sleeper, trivial

from hush.observability import LocalTracer


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


async def timed(engine: Any, items: list[int], repeat: int, make_tracer: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        tracer = make_tracer()
        start = time.perf_counter()
        await engine.run({"items": items}, tracer=tracer)
        best = min(best, time.perf_counter() - start)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{sink.server_address[1]}"
    from hush.observability.langfuse import LangfuseTracer

    def langfuse() -> LangfuseTracer:
        return LangfuseTracer(public_key=f"pk-{uuid.uuid4().hex}", secret_key="sk", host=host)

    workloads = [
        (
            f"W1: {args.items} trivial items, cap 100",
            map_engine(trivial, 100),
            list(range(args.items)),
        ),
        (
            "1,000 items of 20 ms (LLM-like latency), cap 100",
            map_engine(sleeper(0.02), 100),
            list(range(1000)),
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:

        def local() -> LocalTracer:
            return LocalTracer(Path(tmp) / f"{uuid.uuid4().hex}.jsonl")

        for title, engine, items in workloads:
            await engine.run({"items": items})
            off = await timed(engine, items, args.repeat, lambda: None)
            on_local = await timed(engine, items, args.repeat, local)
            on_lf = await timed(engine, items, args.repeat, langfuse)
            print(f"{title} (about {len(items) * 2 + 2} spans per run), best of {args.repeat}")
            print(f"  tracing off        {off * 1e3:8.1f} ms")
            print(f"  LocalTracer JSONL  {on_local * 1e3:8.1f} ms   x{on_local / off:.2f} vs off")
            print(
                f"  LangfuseTracer     {on_lf * 1e3:8.1f} ms   x{on_lf / off:.2f} vs off (final flush included)"
            )
    sink.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
