"""Timing helpers shared by the benchmark scripts: best of N in one process, ranges over runs,
and event counts of a child process under callgrind."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar


async def best_of(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    """Fastest wall time of ``repeat`` runs, in seconds (after one warm-up run)."""
    await fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - start)
    return best


def row(label: str, seconds: float, baseline: float, per: int | None = None) -> str:
    """One result line: time, ratio to the baseline and per-unit cost."""
    text = f"{label:<34} {seconds * 1e3:9.2f} ms   x{seconds / baseline:6.2f} vs baseline"
    if per:
        text += f"   {seconds / per * 1e6:8.2f} us/node"
    return text


def spread(values: Sequence[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    """``min–max`` of ``values`` over runs, with how many runs: ``0.48–0.55x (3 runs)``."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    text = low if low == high else f"{low}–{high}"
    return f"{text}{unit} ({len(values)} runs)"


async def alternating(
    arms: Mapping[str, Callable[[], Awaitable[object]]],
    runs: int,
    repeat: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Per run, each arm's best time of ``repeat``; the arms take turns in every round.

    ``clock`` is wall time by default; pass ``time.process_time`` for the CPU a
    run costs this process (every thread), which other jobs on the machine do
    not inflate.

    Every arm runs once first as a warm-up. Alternating in one process and minute
    means a load spike on a shared machine hits every arm alike, so ratios taken
    within a run are comparable even when absolute times are not.
    """
    for fn in arms.values():
        await fn()
    result: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(runs):
        best = dict.fromkeys(arms, float("inf"))
        for _ in range(repeat):
            for name, fn in arms.items():
                start = clock()
                await fn()
                best[name] = min(best[name], clock() - start)
        for name, seconds in best.items():
            result[name].append(seconds)
    return result


def ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Run-by-run ratios of two arms measured in the same runs."""
    return [v / b for v, b in zip(values, baseline, strict=True)]


def child_values(argvs: Mapping[str, Sequence[str]], runs: int) -> dict[str, list[float]]:
    """Run each command ``runs`` times, alternating, each in a fresh process.

    Each child prints one number as its last line of stdout (a memory figure
    measured with ``tracemalloc`` or ``/proc/self/status``, so no run inherits
    another's heap); returns those numbers per command.
    """
    result: dict[str, list[float]] = {name: [] for name in argvs}
    for _ in range(runs):
        for name, argv in argvs.items():
            out = subprocess.run(list(argv), capture_output=True, text=True, check=True)
            result[name].append(float(out.stdout.strip().splitlines()[-1]))
    return result


def callgrind(argv: Sequence[str], out: Path, *, cache_sim: bool = False) -> dict[int, list[int]]:
    """Run ``argv`` under ``valgrind --tool=callgrind`` (one count file per thread, hashing
    seeded); return each thread's event totals (1: the main thread's), in callgrind's order
    (``Ir`` first; with ``cache_sim``, then ``Dr Dw I1mr D1mr D1mw ...``)."""
    tool = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
    if cache_sim:
        tool.append("--cache-sim=yes")
    subprocess.run(
        [*tool, f"--callgrind-out-file={out}", *argv],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
    )
    found = {}
    for part in out.parent.glob(f"{out.name}-*"):
        total = re.search(r"^(?:summary|totals): (.+)$", part.read_text(), re.M)
        if total is not None:
            found[int(part.name.rsplit("-", 1)[1])] = [int(v) for v in total.group(1).split()]
    return found


R = TypeVar("R")


def one_and_two_runs(
    count: Callable[[str, int], R], arms: Sequence[str], jobs: int = 2
) -> dict[str, tuple[R, R]]:
    """``count(arm, runs)`` for one run and for two of each arm, ``jobs`` children at a time
    (what one warm run costs is the difference: a run's start-up counts once in both)."""
    with ThreadPoolExecutor(jobs) as pool:
        futures = {(arm, runs): pool.submit(count, arm, runs) for arm in arms for runs in (1, 2)}
        return {arm: (futures[arm, 1].result(), futures[arm, 2].result()) for arm in arms}
