"""``hush batch`` against our users' thread-pool script, on one rate-limited local server.

The local server runs in a process of its own, limited to 1,200 requests/min (a
one-second burst). The same rows go through, in the same few minutes:

pool   the thread-pool script: ThreadPoolExecutor(10), time.sleep(0.1) before each
       call, sync openai client without its own retries, three attempts with
       time.sleep(3) between them, a row that fails all three left unanswered
hush   ``hush batch`` as a user runs it (a subprocess, CSV in and out), rpm: 1200
       in resources.yaml
learn  ``hush batch`` with no limit configured (learned from the server's headers)

Each prints rows/s (answered rows over wall time, start-up included), the 429s
the server sent, the rows left unanswered and, for hush, hush over pool (its rows/s
over the pool's in the same scenario; the aim is at least 1.0x). The first
scenario answers in 0.2-0.6 s, where 10 workers with a 0.1 s sleep happen to
send about the server's limit; the next two change only the answer time, as a
model or a prompt change does, to show what a fixed worker count does then.

    python benchmarks/bench_batch.py [--rows N] [--quick]

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
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def hush_batch(base_url: str, workdir: Path, source: Path, rpm: int | None) -> tuple[float, int]:
    """``hush batch`` in a subprocess; returns (seconds, rows answered)."""
    config = workdir / "resources.yaml"
    limit = f"  rpm: {rpm}\n" if rpm else ""
    config.write_text(f"llm:gpt-4o-mini:\n  base_url: {base_url}\n  model: gpt-4o-mini\n{limit}")
    output = workdir / f"out-{source.stem}-{rpm or 'learned'}.csv"
    command = [sys.executable, "-m", "hush.cli", "batch", str(source), "-o", str(output)]
    command += ["--prompt", PROMPT, "--model", "gpt-4o-mini", "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        env={**os.environ, "HUSH_CONFIG": str(config)},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="only the first scenario")
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
            for label, latency, share, learn in SCENARIOS[:1] if args.quick else SCENARIOS:
                rows = max(50, int(args.rows * share))
                server.configure(latency=list(latency))
                source = workdir / f"rows-{rows}.csv"
                texts = write_rows(source, rows)
                print(f"\n{rows} rows, {label}")
                print(
                    f"{'run':<46} {'rows/s':>7} {'of limit':>9} {'429s':>6} "
                    f"{'unanswered':>11} {'hush:pool':>10}"
                )
                pool_rate = 0.0
                runs = [
                    (
                        "thread pool (10 workers, sleep 0.1, 3 tries)",
                        functools.partial(thread_pool, server.base_url, texts),
                    ),
                    (
                        "hush batch, rpm: 1200 configured",
                        functools.partial(hush_batch, server.base_url, workdir, source, SERVER_RPM),
                    ),
                ]
                if learn:
                    runs.append(
                        (
                            "hush batch, nothing configured",
                            functools.partial(hush_batch, server.base_url, workdir, source, None),
                        )
                    )
                for name, run in runs:
                    server.reset()
                    time.sleep(1.5)
                    elapsed, answered = run()
                    limited = sum(1 for r in server.requests if r.status == 429)
                    rate = answered / elapsed
                    pool_rate = pool_rate or rate
                    versus = f"{rate / pool_rate:9.2f}x" if name.startswith("hush") else ""
                    print(
                        f"{name:<46} {rate:7.2f} {rate / (SERVER_RPM / 60):8.1%} "
                        f"{limited:6d} {rows - answered:11d} {versus:>10}"
                    )
            print_first_request(server, workdir)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
