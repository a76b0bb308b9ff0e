"""What the server received and how it answered, readable from any thread."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One received request. Times are ``time.monotonic()`` seconds."""

    method: str
    path: str
    headers: dict[str, str]
    arrived_at: float
    body: Any = None
    status: int | None = None
    """HTTP status answered; ``None`` while in flight or when no response was sent."""
    fault: str | None = None
    """Injected fault or outcome: ``"500"``, ``"hang"``, ``"drop"``, ``"malformed"``, ``"rate_limited"``."""
    finished_at: float | None = None


class Recorder:
    """Request log, status counts and in-flight gauge."""

    def __init__(self, max_records: int) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._statuses: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self.total = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def reset(self, max_records: int) -> None:
        """Forget everything (requests still in flight keep counting)."""
        with self._lock:
            self._records = deque(maxlen=max_records)
            self._statuses.clear()
            self._faults.clear()
            self.total = 0
            self.peak_in_flight = self.in_flight

    def begin(self, record: RequestRecord) -> None:
        """A request arrived."""
        with self._lock:
            self._records.append(record)
            self.total += 1
            self.in_flight += 1
            if self.in_flight > self.peak_in_flight:
                self.peak_in_flight = self.in_flight

    def fault(self, record: RequestRecord, kind: str) -> None:
        """A fault was injected into (or a rate limit refused) this request."""
        record.fault = kind
        with self._lock:
            self._faults[kind] += 1

    def end(self, record: RequestRecord, finished_at: float) -> None:
        """A request was answered or abandoned; ``record.status`` is final."""
        record.finished_at = finished_at
        with self._lock:
            self.in_flight -= 1
            if record.status is not None:
                self._statuses[record.status] += 1

    def records(self) -> list[RequestRecord]:
        """A snapshot of the kept records, oldest first."""
        with self._lock:
            return list(self._records)

    def statuses(self) -> dict[int, int]:
        """Responses sent, by HTTP status."""
        with self._lock:
            return dict(self._statuses)

    def faults(self) -> dict[str, int]:
        """Injected faults and rate-limit refusals, by kind."""
        with self._lock:
            return dict(self._faults)
