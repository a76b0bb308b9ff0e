"""Shared test helpers: concurrency gauges built on counters and events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest


class Gauge:
    """Counts how many holders are inside at once and remembers the peak."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.entered = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self.current += 1
        self.entered += 1
        self.peak = max(self.peak, self.current)
        try:
            yield
        finally:
            self.current -= 1


class CapProbe:
    """Items wait inside until ``target`` of them are in at once (or all remaining are).

    Proves a cap is *reached* without sleeping: if the engine never lets
    ``target`` run together, the waiting items time out and the test fails.
    """

    def __init__(self, target: int, timeout: float = 10.0) -> None:
        self.gauge = Gauge()
        self.target = target
        self.reached = anyio.Event()
        self.timeout = timeout

    async def visit(self) -> None:
        async with self.gauge.hold():
            if self.gauge.current >= self.target:
                self.reached.set()
            with anyio.fail_after(self.timeout):
                await self.reached.wait()
            await anyio.sleep(0)


@pytest.fixture
def gauge() -> Gauge:
    return Gauge()
