"""MemoryTracer: keeps every record in a list, for tests and notebooks."""

from __future__ import annotations

import threading
from typing import Any

from hush.observability.records import Record, RecordingTracer
from hush.observability.serialize import DEFAULT_MAX_CHARS
from hush.observability.spans import DEFAULT_MAX_QUEUED_EVENTS
from hush.observability.tree import format_tree


class MemoryTracer(RecordingTracer):
    """Records each finished span and generation in memory (see :mod:`hush.observability.records`).

    Records are built in the tracer's thread: they are all there once the run
    (or :meth:`flush`) returns.
    """

    def __init__(
        self,
        *,
        max_field_chars: int = DEFAULT_MAX_CHARS,
        max_queued_events: int = DEFAULT_MAX_QUEUED_EVENTS,
        sample: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        super().__init__(
            self._append,
            max_field_chars=max_field_chars,
            max_queued_events=max_queued_events,
            sample=sample,
        )

    @property
    def records(self) -> list[Record]:
        """A copy of the records, in the order the spans ended."""
        with self._lock:
            return list(self._records)

    def find(
        self, name: str | None = None, *, kind: str | None = None, **fields: Any
    ) -> list[Record]:
        """The records matching ``name``, ``kind`` and any other field given."""
        wanted = dict(fields)
        if name is not None:
            wanted["name"] = name
        if kind is not None:
            wanted["kind"] = kind
        return [r for r in self.records if all(r.get(k) == v for k, v in wanted.items())]

    def tree(self, *, show_io: bool = False) -> str:
        """The recorded runs as indented trees (see :func:`~hush.observability.tree.format_tree`)."""
        return format_tree(self.records, show_io=show_io)

    def clear(self) -> None:
        """Forget all records."""
        with self._lock:
            self._records.clear()

    def _append(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)
