"""OpenTelemetry tracers' CPU per span in the tracer's thread, from recorded events.

    python benchmarks/bench_otel_span_cost.py [--runs 5] [--profile OTLPTracer]

The events of three real runs are recorded once: 1,000 map items of a code node (the
shape of bench_tracing's 20 ms workload: 2,002 spans), 100 map items of prompt → LLM
against the local ``MockLLMServer`` (LLM calls with messages, usage and cost: 402 spans),
and W1 (5,000 trivial items) as a tracer with ``sample=0.1`` receives it (~1,000 spans,
fed to tracers with ``sample=0.1`` under the recorded run id, so they keep what it drew).
Each round feeds them to a fresh LocalTracer, OTLPTracer and LangfuseTracer, taking
turns, through the tracer's own event handler in this thread, and prints the handler's
CPU time (``time.thread_time``) per span as ``min–max`` over ``--runs`` rounds: what the
tracer's thread spends per span (pairing events, building attributes and spans, the span
processors' ``on_start``/``on_end``, and the encoding of spans a private provider's
processors are skipped for). The posting (and the encoding of spans that went through a
processor) runs in a thread of its own, to a loopback sink in another process, and is
printed apart ("export": that thread's CPU time in the exporter, per span). ``--profile NAME`` prints a
cProfile of that tracer's handler instead. To compare with older code, run it with
``PYTHONPATH=<a worktree of the older commit>`` (the first line says which ``hush`` ran).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests" / "observability"))

from _common import spread
from bench_map import map_engine, trivial
from bench_tracing import SINK

import hush
from hush.core import Hush
from hush.core.events import Event
from hush.observability import LangfuseTracer, LocalTracer, OTLPTracer
from hush.observability.open_spans import Subscription


class Recorder:
    """Keeps the events a tracer with ``share`` would read, in order."""

    def __init__(self, share: float = 1.0) -> None:
        self.events: list[Event] = []
        self.share = share

    def subscribe(self, start: Event) -> Subscription:
        return Subscription(self.events.append, start.run_id, self.share)

    async def flush(self, timeout: float | None = None) -> None:
        return None


async def record_map(items: int) -> list[Event]:
    recorder = Recorder()
    await map_engine(trivial, 50).run({"items": list(range(items))}, tracer=recorder)
    return recorder.events


async def record_sampled(items: int, share: float) -> list[Event]:
    """W1's events as a tracer with ``sample=share`` receives them (the drawn items')."""
    recorder = Recorder(share)
    await map_engine(trivial, 100).run({"items": list(range(items))}, tracer=recorder)
    return recorder.events


async def record_llm(items: int) -> list[Event]:
    from graphs import batch_graph

    from hush.providers import get_registry
    from hush.testing import MockLLMServer

    recorder = Recorder()
    async with MockLLMServer() as server:
        get_registry().register(
            "llm:traced",
            {"base_url": server.base_url, "api_key": "sk-bench", "model": "gpt-4o-mini"},
        )
        try:
            queries = [f"question {i}: what is {i} squared?" for i in range(items)]
            await Hush(batch_graph()).run({"queries": queries}, tracer=recorder)
        finally:
            get_registry().unregister("llm:traced")
    return recorder.events


def spans_of(events: Sequence[Event]) -> int:
    return sum(e.kind in ("node_end", "run_end", "llm") for e in events)


def fresh(events: Sequence[Event], share: float = 1.0) -> list[Event]:
    """The events under a new run id (each tracer sees a run of its own); a sampled run's keep
    theirs, so that the tracer draws the items the recorded run drew."""
    run_id = events[0].run_id if share < 1.0 else uuid.uuid4().hex
    out = []
    for event in events:
        copy = Event.__new__(Event)
        for name in Event.__slots__:
            setattr(copy, name, getattr(event, name))
        copy.run_id = run_id
        out.append(copy)
    return out


def feed(tracer: Any, events: list[Event]) -> float:
    """CPU seconds of the tracer's handler over ``events`` in this thread."""
    handle = tracer._handle_batch
    started = time.thread_time()
    handle(events)
    return time.thread_time() - started


def timed_export(tracer: Any) -> list[float]:
    """Make the tracer's exporter add the CPU time of each export (its thread's) to the list
    returned: ``export`` (spans through a processor, encoded there) and ``send`` (spans
    already encoded in the tracer's thread, :mod:`hush.observability.wire_batches`)."""
    spent = [0.0]
    provider = tracer.provider
    processors = getattr(provider, "processors", None)  # older code: the SDK's private list
    for processor in processors or provider._active_span_processor._span_processors:
        exporter = processor.span_exporter
        for name in ("export", "send"):
            call = getattr(exporter, name, None)
            if call is None:  # older code: no ``send``
                continue

            def timed(*args: Any, call: Any = call) -> Any:
                started = time.thread_time()
                try:
                    return call(*args)
                finally:
                    spent[0] += time.thread_time() - started

            setattr(exporter, name, timed)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (ranges are over these)")
    parser.add_argument("--profile", help="print a cProfile of this tracer's handler")
    args = parser.parse_args()
    os.environ["LANGFUSE_MEDIA_UPLOAD_ENABLED"] = "false"
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    host = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    workloads = {
        "1,000 map items (code node)": (asyncio.run(record_map(1000)), 1.0),
        "100 map items (prompt -> LLM)": (asyncio.run(record_llm(100)), 1.0),
        "W1 (5,000 trivial items) sample=0.1": (asyncio.run(record_sampled(5000, 0.1)), 0.1),
    }
    tmp = tempfile.mkdtemp()
    arms: dict[str, Callable[[float], Any]] = {
        "LocalTracer": lambda share: LocalTracer(
            Path(tmp) / f"{uuid.uuid4().hex}.jsonl", sample=share
        ),
        "OTLPTracer": lambda share: OTLPTracer(host, flush_timeout=30.0, sample=share),
        "LangfuseTracer": lambda share: LangfuseTracer(
            public_key=f"pk-{uuid.uuid4().hex}",
            secret_key="sk-bench",
            host=host,
            flush_timeout=30.0,
            sample=share,
        ),
    }
    try:
        print(f"hush from {Path(hush.__file__).parent}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for title, (events, share) in workloads.items():
            spans = spans_of(events)
            if args.profile:
                tracer = arms[args.profile](share)
                profile = cProfile.Profile()
                profile.enable()
                feed(tracer, fresh(events, share))
                profile.disable()
                tracer.close(timeout=30.0)
                print(f"{title}, {spans} spans, {args.profile}:")
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
                continue
            cpu: dict[str, list[float]] = {name: [] for name in arms}
            exported: dict[str, list[float]] = {name: [] for name in arms}
            for _ in range(args.runs):
                for name, make in arms.items():
                    tracer = make(share)
                    spent = timed_export(tracer) if name != "LocalTracer" else None
                    cpu[name].append(feed(tracer, fresh(events, share)) / spans * 1e6)
                    tracer.close(timeout=30.0)
                    if spent is not None:
                        exported[name].append(spent[0] / spans * 1e6)
            print(f"{title}, {spans} spans: tracer-thread CPU per span (min-max, {args.runs} runs)")
            for name in arms:
                found = exported[name]
                tail = f"   export {spread(found, '{:.0f}', ' us')}" if found else ""
                print(f"  {name:<15} {spread(cpu[name], '{:.0f}', ' us')}{tail}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        sink.terminate()


if __name__ == "__main__":
    main()
