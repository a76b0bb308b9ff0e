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

from hush.core.events import Event
from hush.observability.records import Record, RecordingTracer
from hush.observability.serialize import DEFAULT_MAX_CHARS, json_encoder_for
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS

logger = logging.getLogger(__name__)

_json = json_encoder_for(str, allow_nan=True)
"""A record's JSON (what ``json.dumps(record, ensure_ascii=False, default=str)`` gives)."""


def record_line(record: Record) -> bytes:
    """``record``'s line in UTF-8; a lone surrogate (from undecodable bytes) is written as its
    JSON escape, so the line reads back as the same text."""
    return (_json(record) + "\n").encode("utf-8", "backslashreplace")


class LocalTracer(RecordingTracer):
    """Appends one JSON line per finished span and generation to ``path``.

    The tracer's thread writes the lines of each batch of events at once and flushes the
    file whenever it has nothing else to do. The file is opened (its directory created) at
    construction, so a bad path fails early. Several runs may share a file; use one tracer
    per file. ``sample`` traces that share of map items (failed ones always).
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
        self._file = self.path.open("ab")
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        super().__init__(
            self._add,
            max_field_chars=max_field_chars,
            max_queued_events=max_queued_events,
            sample=sample,
        )

    @property
    def destination(self) -> str:
        return str(self.path)

    def _add(self, record: Record) -> None:
        self._lines.append(record_line(record))

    def _handle_batch(self, events: list[Event]) -> None:
        super()._handle_batch(events)
        self._write_lines()

    def _write_lines(self) -> None:
        """Write the lines made so far in one call."""
        lines, self._lines = self._lines, []
        if not lines:
            return
        try:
            with self._lock:
                if not self._file.closed:
                    self._file.write(b"".join(lines))
        except Exception:
            logger.warning("could not write %d trace record(s) to %s", len(lines), self.path)

    def _idle(self) -> None:
        self._write_lines()
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def _closing(self) -> None:
        self._write_lines()
        with self._lock:
            self._file.close()


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
