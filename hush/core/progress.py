"""Progress of iteration nodes: snapshots of the live counters, a callback and a rich display."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from hush.core.state import RunRecord

logger = logging.getLogger("hush.progress")
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class MapProgress:
    """Counters of one iteration node, summed over every instance of it.

    A map nested in another map has one instance per outer item; ``path`` has
    the indices removed (``graph/outer/inner``) and ``instances`` counts them.
    """

    path: str
    depth: int
    total: int | None
    done: int
    failed: int
    running: int
    resumed: int
    instances: int
    rate: float
    eta: float | None


ProgressCallback = Callable[[list[MapProgress]], Any]


def snapshot(record: RunRecord, started: float, now: float) -> list[MapProgress]:
    """Aggregate the run's iteration counters by node (indices stripped)."""
    groups: dict[str, list[Any]] = {}
    for path, c in list(record.iterations.items()):
        key = _INDEX.sub("", path)
        g = groups.setdefault(key, [0, 0, 0, 0, 0, 0, True])
        if c.total is None:
            g[6] = False
        else:
            g[0] += c.total
        g[1] += c.done
        g[2] += c.failed
        g[3] += c.running
        g[4] += c.resumed
        g[5] += 1
    out = []
    elapsed = max(now - started, 1e-9)
    for key, (total, done, failed, running, resumed, instances, known) in groups.items():
        fresh = done - resumed
        rate = fresh / elapsed
        total_v = total if known else None
        eta = (total_v - done) / rate if total_v is not None and rate > 0 else None
        out.append(
            MapProgress(
                path=key,
                depth=key.count("/") - 1,
                total=total_v,
                done=done,
                failed=failed,
                running=running,
                resumed=resumed,
                instances=instances,
                rate=rate,
                eta=eta,
            )
        )
    out.sort(key=lambda p: p.path)
    return out


class ProgressReporter:
    """Polls the run record a few times a second; feeds a callback and/or a rich display."""

    def __init__(
        self,
        record: RunRecord,
        *,
        show: bool,
        callback: ProgressCallback | None,
        interval: float = 0.2,
    ) -> None:
        self.record = record
        self.show = show
        self.callback = callback
        self.interval = interval
        self.started = time.perf_counter()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    async def watch(self) -> None:
        """Report until cancelled."""
        if self.show:
            self._start_display()
        try:
            while True:
                await anyio.sleep(self.interval)
                self.report()
        finally:
            self.report()
            if self._progress is not None:
                self._progress.stop()

    def report(self) -> None:
        """Emit one snapshot now."""
        snap = snapshot(self.record, self.started, time.perf_counter())
        if self.callback is not None:
            try:
                self.callback(snap)
            except Exception:
                logger.warning("progress callback failed", exc_info=True)
        if self._progress is not None:
            self._render(snap)

    def _start_display(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8.1f}/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.start()

    def _render(self, snap: list[MapProgress]) -> None:
        for p in snap:
            task = self._tasks.get(p.path)
            label = "  " * max(p.depth, 0) + p.path.rsplit("/", 1)[-1]
            if task is None:
                task = self._progress.add_task(label, total=p.total, rate=0.0, failed=0)
                self._tasks[p.path] = task
            self._progress.update(
                task, completed=p.done, total=p.total, rate=p.rate, failed=p.failed
            )


def want_display(progress: bool | None) -> bool:
    """Show bars when asked, or by default when stderr is a terminal."""
    if progress is not None:
        return progress
    return sys.stderr.isatty()
