"""JsonlWriter: appends JSON lines to a file from a background thread."""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_Item = dict[str, Any] | Callable[[], None] | None


class JsonlWriter:
    """Writes records as JSON lines, in order, without blocking the caller.

    :meth:`write` only enqueues; a daemon thread encodes, writes and flushes the
    file whenever its queue runs empty. The file is opened (and its directory
    created) at construction, so a bad path fails early. Pending lines are
    written at interpreter exit, or by :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._closed = False
        self._failed = False
        self._thread = threading.Thread(
            target=self._loop, name=f"hush-trace-writer:{self.path.name}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called; later records are dropped."""
        return self._closed

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record."""
        if self._closed:
            logger.debug("trace file %s is closed; record dropped", self.path)
            return
        self._queue.put(record)

    def when_written(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the writer thread) once everything queued so far is on disk."""
        if self._closed:
            callback()
            return
        self._queue.put(callback)

    def sync(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far is written; ``False`` on timeout."""
        done = threading.Event()
        self.when_written(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, close the file and stop the thread (waits at most ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._flush()
                self._file.close()
                return
            if callable(item):
                self._flush()
                self._notify(item)
                continue
            self._write(item)
            if self._queue.empty():
                self._flush()

    def _write(self, record: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(record, ensure_ascii=False, default=repr) + "\n")
        except Exception:
            self._report("could not write a trace record to %s")

    def _flush(self) -> None:
        try:
            self._file.flush()
        except Exception:
            self._report("could not flush trace file %s")

    def _notify(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            logger.debug("trace writer callback failed", exc_info=True)

    def _report(self, message: str) -> None:
        level = logging.DEBUG if self._failed else logging.WARNING
        logger.log(level, message, self.path, exc_info=not self._failed)
        self._failed = True
