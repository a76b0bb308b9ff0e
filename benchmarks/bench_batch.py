"""``hush batch`` against our users' thread-pool script, on one rate-limited local server.

The local server runs in a process of its own, limited to 1,200 requests/min (a
one-second burst). The same rows go through, in the same few minutes:

pool   the thread-pool script: ThreadPoolExecutor(10), time.sleep(0.1) before each
       call, sync openai client without its own retries, three attempts with
       time.sleep(3) between them, a row that fails all three left unanswered
hush   ``hush batch`` as a user runs it (a subprocess, CSV in and out), rpm: 1200
       in resources.yaml
learn  ``hush batch`` with no limit configured (learned from the server's headers)

Each runs ``--runs`` times (3 by default), the runners alternating, and prints the
min-max over its runs of: rows/s (answered rows over wall time, start-up included);
pacing rows/s (answered rows from the server's first request to its last answer:
no start-up, no exit); the most 429s the server sent and rows left unanswered in a
run; for hush, hush:pool end to end and pacing (each run over the pool run beside
it; the aim is at least 1.0x); and client CPU ms per row (``hush batch``'s whole
process, the pool's threads). The first scenario answers in 0.2-0.6 s, where 10
workers with a 0.1 s sleep happen to send about the server's limit; the next two
change only the answer time, as a model or a prompt change does, to show what a
fixed worker count does then. ``--compare DIR`` adds ``hush batch`` importing hush
from another checkout (a ``git worktree`` of the base commit), alternating too.

    python benchmarks/bench_batch.py [--rows N] [--runs N] [--quick | --scenario K] [--compare DIR]

``--stall`` measures instead how long the event loop stalls while the output of a
20,000-row batch is written as .xlsx: a probe task notes the longest gap between
its wake-ups (asked every 1 ms), once with the table written on the loop (as before
issue 19) and once by the batch's output writer (a worker thread).

    python benchmarks/bench_batch.py --stall [--rows 20000]

``--first-request`` starts ``hush batch`` over 50 rows three times and prints the
range of seconds from the command's start (just before the subprocess is launched)
to the first request the local server receives (both clocks are the system's
monotonic clock), with ``python -X importtime``'s figures for ``hush.cli`` and
``openai`` beside it: the floor the first request cannot beat. The default run
prints the same range after the three answer-time scenarios.

    python benchmarks/bench_batch.py --first-request

``--packing`` runs ``hush batch`` over 2,000 short rows against a local server that
answers packed rows (``hush.testing.packed_rows``: entries in reverse order, a few
rows left out on purpose), with ``--rows-per-call 1`` and ``10``, and prints the
requests and prompt tokens each sent and how many rows got their own answer.

    python benchmarks/bench_batch.py --packing [--rows 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import ServerProcess

SERVER_RPM = 1200
POOL_WORKERS = 10
POOL_SLEEP = 0.1
POOL_ATTEMPTS = 3
POOL_RETRY_SLEEP = 3.0
PROMPT = "Classify this customer feedback as one of: billing, delivery, product, other. {text}"
TEXTS = [
    "Giao hàng chậm hơn một tuần, rất tệ",
    "Pengembalian dana belum masuk, sudah sebulan",
    "The parcel arrived three days late",
    "Password reset email never arrives",
    "Sản phẩm bị lỗi ngay ngày đầu",
]


def write_rows(path: Path, rows: int) -> list[str]:
    texts = [f"{TEXTS[i % len(TEXTS)]} (#{i})" for i in range(rows)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([i, text] for i, text in enumerate(texts))
    return texts


def thread_pool(base_url: str, texts: list[str]) -> tuple[float, int]:
    """The seeds' pattern; returns (seconds, rows answered)."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-local-benchmark", max_retries=0)
    lock = threading.Lock()
    answered = 0

    def classify(text: str) -> str | None:
        nonlocal answered
        time.sleep(POOL_SLEEP)
        for attempt in range(POOL_ATTEMPTS):
            try:
                reply = client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": PROMPT.format(text=text)}],
                )
            except openai.APIError:
                if attempt < POOL_ATTEMPTS - 1:
                    time.sleep(POOL_RETRY_SLEEP)
                continue
            with lock:
                answered += 1
            return reply.choices[0].message.content
        return None

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=POOL_WORKERS) as pool:
        list(pool.map(classify, texts))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, answered


_RUN_NUMBERS = itertools.count()
"""Each run writes its own output (and checkpoint): a second run must not resume the first."""


def hush_batch(
    base_url: str, workdir: Path, source: Path, rpm: int | None, code: str | None = None
) -> tuple[float, int]:
    """``hush batch`` in a subprocess (importing hush from ``code`` when given: another
    checkout, for before/after); returns (seconds, rows answered)."""
    config = workdir / "resources.yaml"
    limit = f"  rpm: {rpm}\n" if rpm else ""
    config.write_text(f"llm:gpt-4o-mini:\n  base_url: {base_url}\n  model: gpt-4o-mini\n{limit}")
    output = workdir / f"out-{source.stem}-{rpm or 'learned'}-{next(_RUN_NUMBERS)}.csv"
    command = [sys.executable, "-m", "hush.cli", "batch", str(source), "-o", str(output)]
    command += ["--prompt", PROMPT, "--model", "gpt-4o-mini", "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        env={**os.environ, "HUSH_CONFIG": str(config), **({"PYTHONPATH": code} if code else {})},
        cwd=workdir,  # not the checkout's root, which ``-m`` would put before PYTHONPATH
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr)
    with output.open(newline="", encoding="utf-8") as f:
        answered = sum(1 for row in csv.DictReader(f) if row["answer"] and not row["error"])
    return elapsed, answered


POOL_NAME = "thread pool (10 workers, sleep 0.1, 3 tries)"
SCENARIOS = [
    ("answers in 0.2-0.6 s (the pool's 10 workers happen to fit the limit)", (0.2, 0.6), 1.0, True),
    ("faster answers, 0.05-0.15 s (the same pool overshoots)", (0.05, 0.15), 0.5, False),
    ("slower answers, 1-2 s (the same pool under-uses the limit)", (1.0, 2.0), 0.3, False),
]
"""(label, server latency, share of --rows sent, run the unconfigured hush too)."""


async def longest_stall(write: Any) -> tuple[float, float]:
    """(longest gap between the probe's wake-ups, seconds the write took) while ``write``
    (a coroutine function) runs."""
    done = False
    longest = 0.0

    async def probe() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.ensure_future(probe())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await write()
    elapsed = time.perf_counter() - start
    done = True
    await task
    return longest, elapsed


def stall(rows: int) -> None:
    """Print the loop's longest stall while a ``rows``-row xlsx output is written."""
    from hush.batch.answers import RESULT_COLUMNS, Layout, render
    from hush.batch.output import OutputWriter
    from hush.batch.tables import write_table

    inputs = [{"id": i, "text": TEXTS[i % len(TEXTS)]} for i in range(rows)]
    results = {
        i: {
            "answer": "delivery",
            "error": "",
            "latency_s": 0.42,
            "queued_s": 0.01,
            "model": "gpt-4o-mini",
            "prompt_tokens": 31,
            "completion_tokens": 2,
            "cost_usd": 0.00001,
        }
        for i in range(rows)
    }
    columns = ["id", "text", "answer", *RESULT_COLUMNS]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.xlsx"

        async def on_loop() -> None:
            write_table(target, columns, list(render(inputs, results, Layout())))

        async def in_thread() -> None:
            snapshot = dict(results)
            async with OutputWriter(
                target, columns, lambda: lambda: render(inputs, snapshot, Layout())
            ):
                pass

        print(f"writing {rows:,} rows as .xlsx; the loop's longest stall (probe every 1 ms):")
        for name, write in (("on the loop (before)", on_loop), ("output writer thread", in_thread)):
            longest, elapsed = asyncio.run(longest_stall(write))
            print(f"  {name:<24} {longest * 1000:8.1f} ms  (write took {elapsed:.2f} s)")


def packing(rows: int) -> None:
    """Print requests, prompt tokens and mapping accuracy with 1 and 10 rows per call."""
    from hush.testing.packed_rows import PackedRowsServer, answer

    texts = [f"{TEXTS[i % len(TEXTS)]} (#{i})" for i in range(rows)]
    for i in range(7, rows, 97):
        texts[i] += " [[omit]]"
    system = (
        "You classify customer feedback for an online shop. Categories: billing (charges, "
        "refunds, invoices), delivery (shipping, delays, parcels), product (defects, quality, "
        "sizes), other (anything else). Answer with the category name only."
    )
    prompt = "{text}"
    print(f"{rows:,} short rows, the instructions in --system (as the classification guide)")
    print("every 97th row is left out of its pack's reply (and asked again alone)")
    print(
        f"{'rows per call':<14} {'requests':>9} {'prompt tokens':>14} {'answered':>9} {'own answer':>11}"
    )
    with PackedRowsServer() as server, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        source = workdir / "rows.csv"
        with source.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows(enumerate(texts))
        config = workdir / "resources.yaml"
        config.write_text(
            f"llm:gpt-4o-mini:\n  base_url: {server.base_url}\n  model: gpt-4o-mini\n"
        )
        for per_call in (1, 10):
            server.reset()
            output = workdir / f"out-{per_call}.csv"
            command = [sys.executable, "-m", "hush.cli", "batch", str(source), "-o", str(output)]
            command += ["--system", system, "--prompt", prompt, "--model", "gpt-4o-mini"]
            command += ["--no-progress"]
            command += ["--rows-per-call", str(per_call)]
            done = subprocess.run(
                command,
                env={**os.environ, "HUSH_CONFIG": str(config)},
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            with output.open(newline="", encoding="utf-8") as f:
                written = list(csv.DictReader(f))
            answered = sum(1 for r in written if r["answer"] and not r["error"])
            own = sum(
                1
                for r, text in zip(written, texts, strict=True)
                if r["answer"] == answer(prompt.format(text=text))
            )
            print(
                f"{per_call:<14} {server.total_requests:>9,} {server.prompt_tokens:>14,} "
                f"{answered:>9,} {own / rows:>10.1%}"
            )


def first_request_range(server: ServerProcess, workdir: Path, runs: int = 3) -> list[float]:
    """Seconds from launching ``hush batch`` to the server's first request, ``runs`` times."""
    source = workdir / "first-request.csv"
    write_rows(source, 50)
    server.configure(latency=[0.01, 0.02])
    seconds = []
    for run in range(runs):
        server.reset()
        fresh = workdir / f"first-request-{run}"
        fresh.mkdir()
        launched = time.monotonic()
        hush_batch(server.base_url, fresh, source, SERVER_RPM)
        seconds.append(min(r.arrived_at for r in server.requests) - launched)
    return seconds


def import_seconds(module: str) -> float:
    """The cumulative ``python -X importtime`` figure for ``module`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    last = [line for line in done.stderr.splitlines() if line.rstrip().endswith(f"| {module}")]
    return int(last[-1].split("|")[1]) / 1e6


def print_first_request(server: ServerProcess, workdir: Path) -> None:
    """Print import-to-first-request over three runs, beside the import floor."""
    seconds = first_request_range(server, workdir)
    cli = [import_seconds("hush.cli") for _ in range(3)]
    sdk = [import_seconds("openai") for _ in range(3)]
    print(
        f"\nimport-to-first-request (3 runs of hush batch, 50 rows): "
        f"{min(seconds):.2f}-{max(seconds):.2f} s (target 0.5 s)"
    )
    print(
        f"  floor, python -X importtime: hush.cli {min(cli):.2f}-{max(cli):.2f} s, "
        f"openai {min(sdk):.2f}-{max(sdk):.2f} s"
    )


@dataclass(frozen=True)
class RunFigures:
    """What one run of one runner gave."""

    rows_per_s: float
    """Answered rows over the whole wall time (start-up and exit included)."""
    pacing_rows_per_s: float
    """Answered rows from the server's first request to its last answer (no start-up)."""
    limited: int
    unanswered: int
    cpu_ms_per_row: float
    """Client CPU (this process, or the finished ``hush batch`` subprocess) per row."""


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the server's is not one)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(server: ServerProcess, rows: int, run: Callable[[], tuple[float, int]]) -> RunFigures:
    """Run ``run`` against a freshly reset server and read its figures."""
    server.reset()
    time.sleep(1.5)  # the server's one-second bucket refills
    cpu = cpu_seconds()
    elapsed, answered = run()
    cpu = cpu_seconds() - cpu
    records = server.requests
    first = min(r.arrived_at for r in records)
    last = max(r.finished_at or r.arrived_at for r in records)
    return RunFigures(
        answered / elapsed,
        answered / (last - first),
        sum(1 for r in records if r.status == 429),
        rows - answered,
        cpu / rows * 1000,
    )


def scenario_runners(
    base_url: str, workdir: Path, source: Path, texts: list[str], learn: bool
) -> list[tuple[str, Callable[[], tuple[float, int]]]]:
    """The pool and ``hush batch`` (configured, and unconfigured when ``learn``)."""
    runners: list[tuple[str, Callable[[], tuple[float, int]]]] = [
        (POOL_NAME, functools.partial(thread_pool, base_url, texts)),
        (
            "hush batch, rpm: 1200 configured",
            functools.partial(hush_batch, base_url, workdir, source, SERVER_RPM),
        ),
    ]
    if learn:
        runners.append(
            (
                "hush batch, nothing configured",
                functools.partial(hush_batch, base_url, workdir, source, None),
            )
        )
    return runners


def span(values: list[float], digits: int = 2) -> str:
    """``min-max`` of ``values``."""
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def print_scenario(results: dict[str, list[RunFigures]]) -> None:
    """One line per runner: ranges over its runs, and its ratio to the pool run beside it."""
    print(
        f"{'run':<46} {'rows/s':>11} {'of limit':>11} {'pacing rows/s':>13} {'429s':>6} "
        f"{'unanswered':>10} {'hush:pool':>11} {'pacing':>11} {'CPU ms/row':>11}"
    )
    pool = results[POOL_NAME]
    limit = SERVER_RPM / 60
    for name, runs in results.items():
        rates = [r.rows_per_s for r in runs]
        pacing = [r.pacing_rows_per_s for r in runs]
        versus = versus_pacing = ""
        if name != POOL_NAME:
            versus = span([r.rows_per_s / p.rows_per_s for r, p in zip(runs, pool, strict=True)])
            versus_pacing = span(
                [r.pacing_rows_per_s / p.pacing_rows_per_s for r, p in zip(runs, pool, strict=True)]
            )
        print(
            f"{name:<46} {span(rates):>11} {span([r / limit * 100 for r in rates], 1):>10}% "
            f"{span(pacing):>13} {max(r.limited for r in runs):6d} "
            f"{max(r.unanswered for r in runs):10d} {versus:>11} {versus_pacing:>11} "
            f"{span([r.cpu_ms_per_row for r in runs], 1):>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="only the first scenario")
    parser.add_argument(
        "--scenario",
        type=int,
        choices=(1, 2, 3),
        help="only this scenario (1 sweet spot, 2 fast, 3 slow)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--compare", metavar="DIR", help="also run hush batch from this checkout")
    parser.add_argument("--stall", action="store_true", help="the loop's stall while writing")
    parser.add_argument("--packing", action="store_true", help="--rows-per-call 1 vs 10")
    parser.add_argument("--first-request", action="store_true", help="only import-to-first-request")
    args = parser.parse_args()
    if args.stall:
        stall(args.rows or 20000)
        return
    if args.packing:
        packing(args.rows or 2000)
        return
    args.rows = args.rows or 2000
    server = ServerProcess(rpm=SERVER_RPM, seed=3)
    if args.first_request:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                print_first_request(server, Path(tmp))
        finally:
            server.stop()
        return
    print(f"server: {SERVER_RPM} RPM ({SERVER_RPM / 60:.0f} rows/s at most), one-second burst")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            chosen = SCENARIOS[:1] if args.quick else SCENARIOS
            if args.scenario:
                chosen = [SCENARIOS[args.scenario - 1]]
            for label, latency, share, learn in chosen:
                rows = max(50, int(args.rows * share))
                server.configure(latency=list(latency))
                source = workdir / f"rows-{rows}.csv"
                texts = write_rows(source, rows)
                runners = scenario_runners(server.base_url, workdir, source, texts, learn)
                if args.compare:
                    runners.append(
                        (
                            f"hush batch, rpm: 1200, code at {Path(args.compare).name}",
                            functools.partial(
                                hush_batch,
                                server.base_url,
                                workdir,
                                source,
                                SERVER_RPM,
                                args.compare,
                            ),
                        )
                    )
                print(f"\n{rows} rows, {label}; {args.runs} runs each, alternating, min-max")
                results: dict[str, list[RunFigures]] = {name: [] for name, _ in runners}
                for _ in range(args.runs):
                    for name, run in runners:
                        results[name].append(measure(server, rows, run))
                print_scenario(results)
            print_first_request(server, workdir)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
