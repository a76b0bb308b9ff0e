"""LocalTracer: traces runs to a JSON-lines file, no server needed.

Each line is one finished span or generation (fields in
:mod:`hush.observability.records`). Read a file back with :func:`read_trace`
and print it with :func:`~hush.observability.tree.format_tree`::

    tracer = LocalTracer("traces/run.jsonl")
    result = await engine.run(inputs, tracer=tracer)
    print(format_tree(read_trace("traces/run.jsonl")))
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hush.observability.records import Record, RecordingTracer
from hush.observability.serialize import DEFAULT_MAX_CHARS
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS

logger = logging.getLogger(__name__)


class LocalTracer(RecordingTracer):
    """Appends one JSON line per finished span and generation to ``path``.

    The tracer's thread writes the lines and flushes the file whenever it has nothing else to
    do. The file is opened (its directory created) at construction, so a bad path fails
    early. Several runs may share a file; use one tracer per file. ``sample`` traces that
    share of map items (failed ones always).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        sample: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        super().__init__(
            self._write,
            max_field_chars=max_field_chars,
            max_queued_events=max_queued_events,
            sample=sample,
        )

    @property
    def destination(self) -> str:
        return str(self.path)

    def _closing(self) -> None:
        with self._lock:
            self._file.close()

    def _write(self, record: Record) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)

    def _idle(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()


RECORD_TYPES = frozenset({"span", "generation"})
"""The ``type`` of every trace record."""


@dataclass(frozen=True)
class TraceFile:
    """What a trace file holds: its records, and the lines that are not records."""

    path: Path
    records: list[Record]
    lines: int
    """Lines that are not blank."""
    skipped: list[int]
    """Numbers of the lines that are not trace records."""

    def warn_skipped(self) -> None:
        """One warning if some lines are not trace records."""
        if self.skipped:
            logger.warning(
                "%s: %d line(s) are not trace records and were skipped (first: line %d)",
                self.path,
                len(self.skipped),
                self.skipped[0],
            )


def scan_trace(path: str | Path) -> TraceFile:
    """The records of a trace file in file order, and the lines that are not records
    (not JSON, or not an object with ``type`` span or generation). Says nothing."""
    records: list[Record] = []
    skipped: list[int] = []
    lines = 0
    with Path(path).open(encoding="utf-8", errors="replace") as text:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            lines += 1
            try:
                record: Any = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and record.get("type") in RECORD_TYPES:
                records.append(record)
            else:
                skipped.append(number)
    return TraceFile(Path(path), records, lines, skipped)


def read_trace(path: str | Path) -> list[Record]:
    """The records of a trace file, in file order; lines that are not trace records are
    skipped with one warning."""
    scanned = scan_trace(path)
    scanned.warn_skipped()
    return scanned.records
