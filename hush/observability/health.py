"""Whether a tracer's backend answers, and the one warning a tracer gives for each problem.

A tracer's exports go through one :class:`BackendHealth`. The first failure
(cannot connect, no answer in time, a refusal such as HTTP 401) marks the
backend *down* and is the outage's one warning; while it is down, exports give
up at once (their spans are counted as dropped) and a run's flush does not
wait. Every :data:`RETRY_DOWN_AFTER` seconds one export tries again; when it
succeeds, the backend is up again (one ``INFO`` line with the count dropped).
An export trouble is said once until an export succeeds, whichever notices it
first: a flush that ran out while the export was under way, or the failure.

The failure's reason quotes the backend (status and text); like every log
line of hush's, it is redacted (:mod:`hush.core.redaction`), so a backend that
echoes the ``Authorization`` header cannot put a key in the log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from time import monotonic

RETRY_DOWN_AFTER = 30.0
"""Seconds after which an export tries a backend that is down again."""


class BackendHealth:
    """Whether ``destination`` answers; decides when exports give up and warns once per outage."""

    def __init__(
        self,
        backend: str,
        destination: str,
        log: logging.Logger,
        *,
        retry_after: float = RETRY_DOWN_AFTER,
    ) -> None:
        self.backend = backend
        self.destination = destination
        self.retry_after = retry_after
        self._log = log
        self._lock = threading.Lock()
        self._down_reason: str | None = None
        self._tried_at = 0.0
        """When the backend was last tried while down (or found down)."""
        self._in_flight_since: float | None = None
        self._said = False
        self.outages = 0
        """How many times the backend was found down."""
        self.dropped = 0
        """Spans given up on because the backend was down or failed."""
        self.attempts = 0
        """Requests sent to the backend."""

    @property
    def down(self) -> bool:
        """Whether the last export failed and no later one succeeded."""
        return self._down_reason is not None

    def available(self) -> bool:
        """Whether an export may be tried now: the backend is up, or its retry is due."""
        return self._down_reason is None or monotonic() >= self._tried_at + self.retry_after

    def try_export(self) -> bool:
        """Whether to send an export now; while down, ``True`` only for the one retry due
        (the next retry is then scheduled)."""
        with self._lock:
            if self._down_reason is None:
                return True
            now = monotonic()
            if now < self._tried_at + self.retry_after:
                return False
            self._tried_at = now
            return True

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Mark a request to the backend as in flight while the block runs."""
        self.attempts += 1
        self._in_flight_since = monotonic()
        try:
            yield
        finally:
            self._in_flight_since = None

    def stalled_for(self) -> float | None:
        """Seconds the request in flight has waited for an answer, or ``None``."""
        since = self._in_flight_since
        return None if since is None else monotonic() - since

    def gave_up(self, spans: int) -> None:
        """Count ``spans`` not exported (the backend is down or refused them)."""
        with self._lock:
            self.dropped += spans

    def failed(self, reason: str, spans: int = 0) -> None:
        """An export failed for ``reason``: the backend is down; the first failure of an
        outage is its one warning (none if a slow export was just said)."""
        with self._lock:
            self.dropped += spans
            if self._down_reason is None:
                self.outages += 1
                self._down_reason = reason
            first, self._said = not self._said, True
            self._tried_at = monotonic()
        if first:
            self._log.warning(
                "%s export to %s failed (%s); spans are dropped until it answers again "
                "(tried again every %.0f s). Runs are not affected.",
                self.backend,
                self.destination,
                reason,
                self.retry_after,
            )
        else:
            self._log.debug("%s export failed again (%s)", self.backend, reason)

    def slow(self, bound: float, what: str) -> None:
        """A wait for an export in progress ran out after ``bound`` seconds: one warning,
        unless this trouble was already said (a failure that follows is not said again)."""
        with self._lock:
            first, self._said = not self._said, True
        if first:
            self._log.warning(
                "%s export to %s did not finish within %.1f s (%s); the run is not affected",
                self.backend,
                self.destination,
                bound,
                what,
            )

    def succeeded(self) -> None:
        """An export succeeded: the backend is up, and a later trouble is said again."""
        self._said = False
        if self._down_reason is None:
            return
        with self._lock:
            was, self._down_reason = self._down_reason, None
            dropped = self.dropped
        self._log.info(
            "%s export to %s works again (it had failed: %s); %d span(s) were dropped so far",
            self.backend,
            self.destination,
            was,
            dropped,
        )
