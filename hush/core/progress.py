"""Progress of iteration nodes from the run's ``progress`` events: a callback and a rich display."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hush.core.run_options import Progress, ProgressCallback

if TYPE_CHECKING:
    from hush.core.events import Event
    from hush.core.state import IterationCounters

logger = logging.getLogger("hush.progress")


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


def snapshot(
    counters: Mapping[str, tuple[str, IterationCounters]], started: float, now: float
) -> list[MapProgress]:
    """Aggregate iteration counters (by instance path) by node: nested instances are summed."""
    groups: dict[str, list[Any]] = {}
    for node, c in counters.values():
        g = groups.setdefault(node, [0, 0, 0, 0, 0, 0, True])
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
    """Subscribes to a run's ``progress`` events; feeds a callback and/or a rich display.

    Reports at most every ``interval`` seconds, and always the latest counters: a change
    that arrives too soon is reported when the interval is up.
    """

    kinds = frozenset({"progress"})
    """The only events it reads (:data:`~hush.core.events.Subscriber`)."""

    def __init__(
        self,
        *,
        show: bool,
        callback: ProgressCallback | None,
        interval: float = 0.2,
    ) -> None:
        self.show = show
        self.callback = callback
        self.interval = interval
        self.started = time.perf_counter()
        self._counters: dict[str, tuple[str, IterationCounters]] = {}
        self._last = float("-inf")
        self._pending: asyncio.TimerHandle | None = None
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        if event.kind != "progress" or event.counters is None:
            return
        self._counters[event.path] = (event.node or event.path, event.counters)
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self.report()
        elif self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._last + self.interval - now, self._due)

    def _due(self) -> None:
        self._pending = None
        self.report()

    def close(self) -> None:
        """Report the final counters and stop the display."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.report()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def report(self) -> None:
        """Emit one snapshot now."""
        self._last = time.perf_counter()
        snap = snapshot(self._counters, self.started, self._last)
        if self.callback is not None:
            try:
                self.callback(snap)
            except Exception:
                logger.warning("progress callback failed", exc_info=True)
        if self.show and snap:
            if self._progress is None:
                self._start_display()
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


def reporter_for(progress: Progress) -> ProgressReporter | None:
    """The reporter a run with the ``progress`` option subscribes (``None``: nothing to do)."""
    show = want_display(progress.show)
    if not show and progress.on_update is None:
        return None
    return ProgressReporter(show=show, callback=progress.on_update)
