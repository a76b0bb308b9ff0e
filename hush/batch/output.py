"""The output file of a batch, written off the event loop while the batch runs.

Writing a table of tens of thousands of rows takes seconds; it happens in a
worker thread, so timeouts, streams and requests in flight never wait for it.
One write at a time, each of a snapshot taken on the loop, and an older
snapshot never replaces a newer one (a write abandoned by a cancelled task
still finishes in its thread, atomically, and is superseded).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from hush.batch.errors import TableError
from hush.batch.tables import write_table

logger = logging.getLogger("hush.batch")

Snapshot = Callable[[], Callable[[], Iterable[Mapping[str, Any]]]]
"""Called on the loop: returns a function (run in the thread) that builds the rows."""


class OutputWriter:
    """Writes ``path`` every ``interval`` seconds once :meth:`start` is called, and a last
    time when the ``async with`` block ends (if it was started or ended without error).

    ``start`` is called once the run is known to be valid (its checkpoint opened and
    matched), so a refused run never touches an existing output.
    """

    def __init__(
        self,
        path: Path | None,
        columns: Sequence[str],
        snapshot: Snapshot,
        *,
        sheet: str | None = None,
        interval: float = 5.0,
    ) -> None:
        self.path = path
        self.columns = list(columns)
        self.snapshot = snapshot
        self.sheet = sheet
        self.interval = interval
        self.writes = 0
        """Writes that reached the file."""
        self._lock = threading.Lock()
        self._taken = 0
        self._written = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Whether periodic writes began."""
        return self._task is not None

    def start(self) -> None:
        """Begin writing now and every ``interval`` seconds (idempotent; nothing without a
        path)."""
        if self._task is None and self.path is not None:
            self._task = asyncio.get_running_loop().create_task(self._periodically())

    async def write(self) -> None:
        """Write the current snapshot, in a worker thread."""
        if self.path is None:
            return
        self._taken += 1
        build = self.snapshot()
        await asyncio.to_thread(self._write, self._taken, build)

    def _write(self, number: int, build: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        assert self.path is not None
        with self._lock:
            if number <= self._written:
                return
            rows = write_table(self.path, self.columns, build(), self.sheet)
            logger.debug("wrote %s: %d rows", self.path, rows)
            self._written = number
            self.writes += 1

    async def _periodically(self) -> None:
        while True:
            try:
                await self.write()
            except TableError as exc:
                logger.warning("could not write the rows done so far: %s", exc)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                continue
            return

    async def __aenter__(self) -> OutputWriter:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the periodic writes (a write in flight finishes), then write the last table:
        its errors are raised after a clean block, logged after a failed one."""
        with anyio.CancelScope(shield=True):
            self._stop.set()
            if self._task is not None:
                await self._task
            if exc is None:
                await self.write()
            elif self.started:
                try:
                    await self.write()
                except TableError as error:
                    logger.warning("could not write the rows done so far: %s", error)
