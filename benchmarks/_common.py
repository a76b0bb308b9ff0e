"""Timing helpers shared by the benchmark scripts (best of N runs in one process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


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
