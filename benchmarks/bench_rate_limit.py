"""Rate-limited LLM throughput against the local OpenAI-compatible server.

The server runs in a process of its own. Its default limit is 6,000 requests/min
with a one-second burst, answering in 100-300 ms. Each run sends the same number
of requests:

a  hush, rpm configured equal to the server's limit    (target: >= 95% of it, < 0.5% 429s)
b  hush, no limit configured: learns from x-ratelimit-* headers
b' hush, no limit configured and headers ignored: adapts from 429s alone (target < 1% 429s)
c  hush, token-limited: server TPM binding before RPM, prompts of mixed sizes, tpm configured
e  a strict server: 50 requests/s, a burst of 5, x-ratelimit-* headers only on its 429s;
   hush configured at exactly 3,000 RPM   (target >= 95% of the limit, < 0.5% 429s;
   goal 98% / 0.2%)
f  the strict server, hush unconfigured   (target >= 85%, < 3% 429s; goal 90% / 1%)
d  the naive script our users run today: a ThreadPoolExecutor of N workers,
   time.sleep(0.1) before each call, sync openai client (max_retries=0),
   a 429 retried after sleeping

"rate" is the rate at which the server accepted requests (first to last accepted
arrival); "after warm-up" leaves out the first WARMUP_SECONDS. Shares are of all
requests the server received.

Every run is repeated ``--runs`` times (rounds of all runs, 3 by default) and a
summary prints each figure's min-max over the rounds.

    python benchmarks/bench_rate_limit.py [--quick] [--requests N] [--runs N] [--naive-workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import ServerProcess

from hush.core import END, PARENT, START, GraphNode, Hush
from hush.core.nodes.iteration import MapNode
from hush.core.nodes.iteration.base import Each
from hush.providers import LLMNode, get_registry
from hush.providers.clients import aclose_all
from hush.providers.limiter import all_limiters

SERVER_RPM = 6000
STRICT_RPM = 3000
STRICT_BURST_SECONDS = 0.1
LATENCY = (0.1, 0.3)
WARMUP_SECONDS = 5.0
TOKEN_RUN_TPM = 1_500_000
NAIVE_SLEEP = 0.1
NAIVE_429_SLEEP = 1.0

Messages = list[dict[str, str]]


@dataclass
class Outcome:
    label: str
    limit: float
    unit: str
    rate: float
    rate_after_warmup: float
    share_429: float
    answered: int
    total: int
    seconds: float
    note: str = ""

    def line(self) -> str:
        return (
            f"{self.label:<48} {self.rate / self.limit:6.1%} {self.rate_after_warmup / self.limit:8.1%}"
            f" {self.share_429:8.2%} {self.answered:>6}/{self.total:<6} {self.seconds:7.1f}s  {self.note}"
        )


HEADER = (
    f"{'run':<48} {'rate':>6} {'warm':>8} {'429s':>8} {'answered':>13} {'time':>8}\n"
    f"{'':<48} {'/limit':>6} {'/limit':>8} {'share':>8}"
)


def short_prompts(count: int) -> list[Messages]:
    return [
        [{"role": "user", "content": f"Classify response {i}: it was fine."}] for i in range(count)
    ]


def mixed_prompts(count: int, seed: int = 7) -> tuple[list[Messages], list[int]]:
    """Prompts of 100-4,000 characters and max_tokens of 50-300 (seeded)."""
    rng = random.Random(seed)
    prompts: list[Messages] = []
    caps: list[int] = []
    for i in range(count):
        size = int(rng.choice([100, 400, 1000, 2500, 4000]) * rng.uniform(0.8, 1.2))
        prompts.append(
            [
                {"role": "system", "content": "Summarise the text in one line."},
                {"role": "user", "content": f"Row {i}: " + "lorem ipsum " * (size // 12)},
            ]
        )
        caps.append(rng.choice([50, 100, 200, 300]))
    return prompts, caps


def measure(
    server: ServerProcess, label: str, limit: float, unit: str, seconds: float, note: str = ""
) -> Outcome:
    """Accepted rate (per minute) over the run and after warm-up, from the server's records."""
    records = server.requests
    accepted = sorted(
        (r.arrived_at, _cost(r.body) if unit == "TPM" else 1) for r in records if r.status == 200
    )
    rejected = sum(1 for r in records if r.status == 429)

    def rate(points: Sequence[tuple[float, int]]) -> float:
        if len(points) < 2:
            return 0.0
        span = points[-1][0] - points[0][0]
        return sum(units for _, units in points[1:]) / span * 60.0 if span > 0 else 0.0

    start = accepted[0][0] if accepted else 0.0
    warm = [p for p in accepted if p[0] >= start + WARMUP_SECONDS]
    return Outcome(
        label,
        limit,
        unit,
        rate(accepted),
        rate(warm) if len(warm) > 1 else rate(accepted),
        rejected / len(records) if records else 0.0,
        len(accepted),
        len(records),
        seconds,
        note,
    )


def _cost(body: Any) -> int:
    """Tokens the server charged for a request (prompt + max_tokens), as it computes them."""
    from hush.testing.replies import max_tokens_of, prompt_tokens

    cap = max_tokens_of(body) or 0
    return prompt_tokens(body["messages"]) + cap


def hush_graph(key: str, with_caps: bool) -> Hush:
    """The user's workload as a hush graph: a MapNode of LLM calls, capped only by the limiter."""
    inputs: dict[str, Any] = {"messages": Each(PARENT["prompts"])}
    llm_inputs: dict[str, Any] = {"messages": PARENT["messages"]}
    if with_caps:
        inputs["max_tokens"] = Each(PARENT["caps"])
        llm_inputs["max_tokens"] = PARENT["max_tokens"]
    with GraphNode(name="rate-limited-batch") as graph:
        with MapNode(name="requests", inputs=inputs, max_concurrency=1000) as requests:
            llm = LLMNode(name="llm", resource_key=key, inputs=llm_inputs)
            llm["content"] >> PARENT["content"]
            START >> llm >> END
        requests["content"] >> PARENT["answers"]
        requests["error"] >> PARENT["errors"]
        START >> requests >> END
    return Hush(graph)


async def run_hush(
    server: ServerProcess,
    key: str,
    settings: dict[str, Any],
    prompts: Sequence[Messages],
    caps: Sequence[int] | None = None,
) -> tuple[float, str]:
    """Run every prompt through a hush MapNode graph; return seconds and limiter stats."""
    registry = get_registry()
    registry.register(
        key,
        {"base_url": server.base_url, "model": "gpt-4o-mini", "api_key": "benchmark", **settings},
    )
    started = time.perf_counter()
    try:
        inputs: dict[str, Any] = {"prompts": list(prompts)}
        if caps is not None:
            inputs["caps"] = list(caps)
        result = await hush_graph(key, caps is not None).run(inputs, progress=False)
    finally:
        await aclose_all()
        registry.unregister(key)
    seconds = time.perf_counter() - started
    failed = sum(1 for e in result["errors"] if e is not None)
    stats = all_limiters()[key].stats()
    limit = stats.rpm_limit if stats.tpm_limit is None else stats.tpm_limit
    note = (
        f"retries={stats.retries} failed={failed} final_rpm={_fmt(stats.rpm)}"
        f" final_tpm={_fmt(stats.tpm)} learned_limit={_fmt(limit)}"
    )
    return seconds, note


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def run_naive(
    server: ServerProcess, prompts: Sequence[Messages], workers: int
) -> tuple[float, str]:
    """The thread-pool script our users run today."""
    client = openai.OpenAI(base_url=server.base_url, api_key="benchmark", max_retries=0, timeout=60)
    retries = 0

    def classify(messages: Messages) -> str | None:
        nonlocal retries
        while True:
            time.sleep(NAIVE_SLEEP)
            try:
                reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
                return reply.choices[0].message.content
            except openai.RateLimitError:
                retries += 1
                time.sleep(NAIVE_429_SLEEP)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(classify, prompts))
    client.close()
    return time.perf_counter() - started, f"retries={retries}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 requests per run")
    parser.add_argument("--requests", type=int, default=None, help="requests per run (3000)")
    parser.add_argument("--naive-workers", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="rounds of every run (3)")
    args = parser.parse_args()
    count = args.requests or (600 if args.quick else 3000)

    server = ServerProcess(latency=LATENCY, rpm=SERVER_RPM, seed=1)
    outcomes: list[Outcome] = []
    try:

        def hush_run(
            label: str,
            key: str,
            settings: dict[str, Any],
            prompts: Sequence[Messages],
            caps: Sequence[int] | None = None,
            *,
            tpm: int | None = None,
            rpm: int = SERVER_RPM,
        ) -> None:
            server.configure(tpm=tpm)
            server.reset()
            key = f"{key}-{len(outcomes)}"  # a fresh limiter each round: nothing learned carries
            seconds, note = asyncio.run(run_hush(server, key, settings, prompts, caps))
            unit, limit = ("TPM", float(tpm)) if tpm else ("RPM", float(rpm))
            outcomes.append(measure(server, label, limit, unit, seconds, note))
            print(outcomes[-1].line(), flush=True)

        print(
            f"{count} requests per run; server {SERVER_RPM} RPM, latency {LATENCY[0]}-{LATENCY[1]} s"
        )
        for number in range(args.runs):
            print(f"\nround {number + 1} of {args.runs}")
            print(HEADER, flush=True)
            prompts = short_prompts(count)
            hush_run(
                "a  hush, rpm configured = server limit",
                "llm:bench-a",
                {"rpm": SERVER_RPM},
                prompts,
            )
            hush_run("b  hush, no limit configured (headers)", "llm:bench-b", {}, prompts)
            hush_run(
                "b' hush, no limit, headers ignored (429s only)",
                "llm:bench-b2",
                {"rate_limit_headers": False},
                prompts,
            )
            mixed, caps = mixed_prompts(count)
            hush_run(
                f"c  hush, tpm configured = server {TOKEN_RUN_TPM:,} TPM",
                "llm:bench-c",
                {"rpm": SERVER_RPM, "tpm": TOKEN_RUN_TPM},
                mixed,
                caps,
                tpm=TOKEN_RUN_TPM,
            )
            server.configure(
                tpm=None,
                rpm=STRICT_RPM,
                burst_seconds=STRICT_BURST_SECONDS,
                rate_limit_headers="on_429",
            )
            strict = short_prompts(max(500, count // 2))
            hush_run(
                "e  strict server, rpm configured = its limit",
                "llm:bench-e",
                {"rpm": STRICT_RPM},
                strict,
                rpm=STRICT_RPM,
            )
            hush_run(
                "f  strict server, no limit configured", "llm:bench-f", {}, strict, rpm=STRICT_RPM
            )
            server.configure(rpm=SERVER_RPM, burst_seconds=1.0, rate_limit_headers="always")
            server.reset()
            seconds, note = run_naive(server, prompts, args.naive_workers)
            label = f"d  naive: {args.naive_workers} threads + sleep({NAIVE_SLEEP})"
            outcomes.append(measure(server, label, SERVER_RPM, "RPM", seconds, note))
            print(outcomes[-1].line(), flush=True)
    finally:
        server.stop()
    print_ranges(outcomes, args.runs)


def print_ranges(outcomes: list[Outcome], runs: int) -> None:
    """Each run's min-max over the rounds, and hush against the naive script."""
    by_label: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_label.setdefault(outcome.label, []).append(outcome)

    def span(values: list[float]) -> str:
        return f"{min(values):.1%}-{max(values):.1%}"

    print(f"\nmin-max over {runs} round(s)")
    print(f"{'run':<48} {'rate/limit':>13} {'after warm-up':>13} {'429 share':>13}")
    for label, runs_of in by_label.items():
        print(
            f"{label:<48} {span([o.rate / o.limit for o in runs_of]):>13} "
            f"{span([o.rate_after_warmup / o.limit for o in runs_of]):>13} "
            f"{span([o.share_429 for o in runs_of]):>13}"
        )
    configured = [o for o in outcomes if o.label.startswith("a ")]
    naive = [o for o in outcomes if o.label.startswith("d ")]
    ratios = [a.rate / d.rate for a, d in zip(configured, naive, strict=True)]
    print(f"\nhush (configured) vs naive: {min(ratios):.1f}-{max(ratios):.1f}x the throughput")


if __name__ == "__main__":
    main()
