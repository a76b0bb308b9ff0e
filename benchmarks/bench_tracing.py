"""What tracing costs a run: off, LocalTracer, OTLPTracer and LangfuseTracer, same process.

    python benchmarks/bench_tracing.py [--runs 3] [--repeat 3] [--only w1] [--arms sample=0.1]

``--only w1`` (or ``20ms``) runs one workload; ``--arms TEXT`` keeps the arms whose name
contains TEXT (tracing off is always run: every ratio is to it).

The OTLP/Langfuse backend is a loopback HTTP sink in a process of its own that
decodes nothing and answers 200, so the export work on our side is real. It keeps its
connections alive (HTTP/1.1), as collectors and Langfuse do: an HTTP/1.0 sink made every
request open a connection of its own, about 2 ms of a run's end that no real backend costs. Each
timed run includes the final export (``run()`` waits for it); the tracer is
closed after the clock stops, waiting for whatever it still does. The arms take turns within every round (off,
events only, then each tracer), so a load spike on a shared machine hits them
alike; each figure is the ``min–max`` over ``--runs`` rounds of the arm's time
divided by tracing off's time in the same round (each arm's best of ``--repeat``). Every
run starts from a collected heap (``gc.collect()`` before the clock): otherwise what the
arm before left is collected during the next one's run, and tracing off, which follows the
last tracer, varied by half between rounds. Three runs per arm per round by default: a
single run of W1 (60 ms) that meets other work on a shared machine can take its loop's
own CPU time to twice tracing off's, a spike that is not tracing's (``loop only`` rises
with it) and that the best of three leaves out.
"wall" is elapsed time, "cpu" the process's CPU time (every thread): other jobs on
the machine inflate the first, hardly the second. "loop" is the CPU time of the
event loop's thread alone (``time.thread_time()``), as a ratio and as microseconds
per item over tracing off; "threads" the CPU of every other thread (the tracer's),
in ms per run. "events only" subscribes a tracer that reads every event and drops
it: what building the events costs. "loop only" (on W1, for each ``sample`` below 1) is a
tracer's own subscription (its kinds, its draw of items) whose events are dropped on the
loop instead of queued: what sampling and the drawn items' events cost the loop; the
gap from it to a tracer's figure is the hand-over and the tracer's threads.

Workloads (the figures of issue 23):

* 1,000 items of 20 ms (LLM-like latency) at cap 50: target at most 1.1x;
* W1, 5,000 trivial items at cap 100, every item traced (the figure is stated), and
  with ``sample=0.1`` (a tenth of the items traced, and every failed one): target
  at most 2x; ``sample=0.0`` (no item drawn: only the run and the map are traced) is
  what a tracer with sampling costs the loop for the items it leaves out.

The load average is printed before and after: figures taken under load are
provisional. To compare with older code, run this script with
``PYTHONPATH=<a worktree of the older commit>``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))

from _common import spread
from bench_map import map_engine, sleeper, trivial

from hush.core import Hush
from hush.observability import LangfuseTracer, LocalTracer, OTLPTracer
from hush.observability.open_spans import Subscription

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

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
    """A tracer that reads every event and drops it: the cost of building the events."""

    def subscribe(self, start: Any) -> Callable[[Any], None]:
        return lambda event: None

    async def flush(self, timeout: float | None = None) -> None:
        return None


class LoopOnly(Dropping):
    """A tracer's subscription (its kinds, its draw of items at ``sample``) whose events are
    dropped on the loop: what tracing costs the loop without the hand-over and threads."""

    def __init__(self, sample: float) -> None:
        self.sample = sample

    def subscribe(self, start: Any) -> Callable[[Any], None]:
        return Subscription(lambda event: None, start.run_id, self.sample)


Make = Callable[[], Any]
FLUSH = 120.0
"""A tracer's flush_timeout here: a run waits for its whole export, and what one arm left
is done before the next arm starts."""


Times = tuple[float, float, float]
"""Wall, process CPU and loop-thread CPU seconds of one run."""


async def timed(engine: Hush, items: list[int], make: Make) -> Times:
    """Wall, process CPU and loop-thread CPU seconds of one run with a fresh tracer (closed
    untimed)."""
    tracer = make()
    if tracer is not None and hasattr(tracer, "flush_timeout"):
        tracer.flush_timeout = FLUSH
    gc.collect()
    wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
    await engine.run({"items": items}, tracer=tracer)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    loop = time.thread_time() - loop
    if hasattr(tracer, "close"):
        tracer.close(timeout=FLUSH)
    return wall, cpu, loop


class Found:
    """One arm's figures over the rounds."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.loop: list[float] = []
        self.extra: list[float] = []
        """Loop-thread CPU over tracing off's, seconds per run."""
        self.threads: list[float] = []
        """CPU of the other threads, seconds per run."""


async def rounds(
    engine: Hush, items: list[int], arms: dict[str, Make], runs: int, repeat: int
) -> dict[str, Found]:
    """Per arm, the figures of each round (best of ``repeat``): wall, CPU and loop CPU as
    ratios to tracing off (tracing off's own in seconds), the loop CPU it adds and the
    other threads' CPU."""
    for make in arms.values():
        await timed(engine, items, make)
    found = {name: Found() for name in arms}
    for _ in range(runs):
        best = {name: (float("inf"),) * 4 for name in arms}
        for _ in range(repeat):
            for name, make in arms.items():
                wall, cpu, loop = await timed(engine, items, make)
                was = best[name]
                best[name] = (
                    min(was[0], wall),
                    min(was[1], cpu),
                    min(was[2], loop),
                    min(was[3], max(cpu - loop, 0.0)),
                )
        off_wall, off_cpu, off_loop, _ = best["tracing off"]
        for name, (wall, cpu, loop, threads) in best.items():
            arm = found[name]
            off = name == "tracing off"
            arm.wall.append(wall if off else wall / off_wall)
            arm.cpu.append(cpu if off else cpu / off_cpu)
            arm.loop.append(loop if off else loop / off_loop)
            arm.extra.append(loop - off_loop)
            arm.threads.append(threads)
    return found


def ms(seconds: list[float]) -> list[float]:
    return [s * 1e3 for s in seconds]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds (ranges are over these)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per arm per round (best)")
    parser.add_argument("--only", choices=("20ms", "w1"), help="run this workload only")
    parser.add_argument("--arms", default="", help="keep the arms whose name contains this")
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    host = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    workloads = [
        ("20ms", "1,000 items of 20 ms, cap 50", map_engine(sleeper(0.02), 50), 1000, [1.0]),
        ("w1", "W1: 5,000 trivial items, cap 100", map_engine(trivial, 100), 5000, [1.0, 0.1, 0.0]),
    ]
    try:
        with tempfile.TemporaryDirectory() as tmp:

            def arms(sample: float) -> dict[str, Make]:
                tail = "" if sample == 1.0 else f" sample={sample}"
                return {
                    f"LocalTracer{tail}": lambda: LocalTracer(
                        Path(tmp) / f"{uuid.uuid4().hex}.jsonl", sample=sample
                    ),
                    f"OTLPTracer{tail}": lambda: OTLPTracer(host, sample=sample),
                    f"LangfuseTracer{tail}": lambda: LangfuseTracer(
                        public_key=f"pk-{uuid.uuid4().hex}",
                        secret_key="sk-bench",
                        host=host,
                        sample=sample,
                    ),
                }

            print(f"load average before: {load()} on {os.cpu_count()} cores")
            print(f"python {sys.version.split()[0]}, {args.runs} rounds, best of {args.repeat}")
            for key, title, engine, n, samples in workloads:
                if args.only not in (None, key):
                    continue
                items = list(range(n))
                every: dict[str, Make] = {"tracing off": lambda: None, "events only": Dropping}
                for sample in samples:
                    if sample < 1.0:
                        every[f"loop only sample={sample}"] = partial(LoopOnly, sample)
                    every.update(arms(sample))
                every = {
                    name: make
                    for name, make in every.items()
                    if name == "tracing off" or args.arms in name
                }
                found = await rounds(engine, items, every, args.runs, args.repeat)
                print(f"{title}: {2 + 2 * n} spans per traced run")
                off = found.pop("tracing off")
                print(
                    f"  {'tracing off':<26} wall {spread(ms(off.wall), '{:.0f}', ' ms')}"
                    f"   cpu {spread(ms(off.cpu), '{:.0f}', ' ms')}"
                    f"   loop {spread(ms(off.loop), '{:.0f}', ' ms')}"
                )
                for name, arm in found.items():
                    print(
                        f"  {name:<26} wall x{spread(arm.wall)} vs off   cpu x{spread(arm.cpu)} vs off"
                        f"   loop x{spread(arm.loop)} vs off"
                        f" ({spread([s / n * 1e6 for s in arm.extra], '{:+.1f}', ' µs/item')})"
                        f"   threads {spread(ms(arm.threads), '{:.0f}', ' ms')}"
                    )
            print(f"load average after: {load()}")
    finally:
        sink.terminate()


if __name__ == "__main__":
    asyncio.run(main())
