"""LocalTracer: traces runs to a JSON-lines file, no server needed.

Each line is one finished span or generation (fields in
:mod:`hush.observability.records`). Read a file back with :func:`read_trace`
and print it with :func:`~hush.observability.tree.format_tree`::

    tracer = LocalTracer("traces/run.jsonl")
    result = await engine.run(graph, inputs, tracer=tracer)
    print(format_tree(read_trace("traces/run.jsonl")))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from hush.observability.jsonl import JsonlWriter
from hush.observability.records import Record, RecordingTracer
from hush.observability.serialize import DEFAULT_MAX_CHARS

logger = logging.getLogger(__name__)


class LocalTracer(RecordingTracer):
    """Appends one JSON line per finished span and generation to ``path``.

    Lines are written by a background thread; :meth:`flush` waits until the
    lines of everything ended so far are on disk. Several runs may share a
    file; use one tracer per file.
    """

    def __init__(self, path: str | Path, *, max_field_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._writer = JsonlWriter(path)
        self.path = self._writer.path
        super().__init__(self._writer.write, max_field_chars=max_field_chars)

    async def flush(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for queued lines to reach the file; never raises."""
        try:
            loop = asyncio.get_running_loop()
            written: asyncio.Future[None] = loop.create_future()
            self._writer.when_written(lambda: _resolve_from_thread(loop, written))
            await asyncio.wait_for(asyncio.shield(written), max(timeout, 0.0))
        except TimeoutError:
            logger.warning("trace file %s not written within %.1f s", self.path, timeout)
        except Exception:
            logger.warning("could not flush trace file %s", self.path, exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        """Write pending lines and close the file; later spans are dropped."""
        self._writer.close(timeout)


def read_trace(path: str | Path) -> list[Record]:
    """The records of a trace file, in file order; malformed lines are skipped with a warning."""
    records: list[Record] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d is not valid JSON; skipped", path, number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                logger.warning("%s:%d is not a trace record; skipped", path, number)
    return records


def _resolve_from_thread(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(resolve)
