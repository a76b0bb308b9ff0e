"""What one run's requests did at each resource, apart from every other run of the process.

The process-wide limiter of a resource counts every request of the process. A run
that wants its own figures enters :func:`counting`: the :class:`RunCounters` it
makes is the current one (a context variable) for everything the run does, so
the limiter's permits and waits report to it besides the process-wide stats. A
run started inside another (by a node) counts in its own counters and in the
enclosing run's. Outside :func:`counting` the limiter pays one context variable
read per request.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ResourceCounts",
    "RunCounters",
    "counting",
    "current",
    "llm_report",
    "resource_status",
]


@dataclass(slots=True)
class ResourceCounts:
    """One run's requests to one resource."""

    sent: int = 0
    """Requests given leave to go (a retry is sent again and counts again)."""
    ok: int = 0
    rate_limited: int = 0
    """Answers that were 429s."""
    retries: int = 0
    errors: int = 0
    """Requests that failed otherwise (5xx, timeouts, cut replies, no connection)."""
    tokens_used: int = 0
    """Tokens the answered requests counted against the resource's TPM limit."""
    wait_time_s: float = 0.0
    """Seconds the run's requests waited for their leave to go."""
    paused_for_s: float = 0.0
    """Seconds of pause the run's 429s put on the resource."""

    def any(self) -> bool:
        """Whether a request was sent, or refused by the server."""
        return bool(self.sent or self.errors or self.rate_limited)


class RunCounters:
    """Per resource key, what the requests of one run (and the runs inside it) did.

    Updated from whichever thread sends the run's requests, under its own lock.
    """

    __slots__ = ("_by_key", "_lock", "parent")

    def __init__(self, parent: RunCounters | None = None) -> None:
        self.parent = parent
        """The enclosing run's counters, which are updated too."""
        self._by_key: dict[str, ResourceCounts] = {}
        self._lock = threading.Lock()

    def _chain(self) -> Iterator[RunCounters]:
        counters: RunCounters | None = self
        while counters is not None:
            yield counters
            counters = counters.parent

    def _entry(self, key: str) -> ResourceCounts:
        entry = self._by_key.get(key)
        if entry is None:
            entry = self._by_key[key] = ResourceCounts()
        return entry

    def sent(self, key: str, waited_s: float) -> None:
        """A request got leave to go after waiting ``waited_s``."""
        for counters in self._chain():
            with counters._lock:
                entry = counters._entry(key)
                entry.sent += 1
                entry.wait_time_s += waited_s

    def answered(self, key: str, tokens: int) -> None:
        """A request was answered, counting ``tokens`` against the limit."""
        for counters in self._chain():
            with counters._lock:
                entry = counters._entry(key)
                entry.ok += 1
                entry.tokens_used += tokens

    def rate_limited(self, key: str, pause_s: float) -> None:
        """A request got a 429 that paused the resource ``pause_s``."""
        for counters in self._chain():
            with counters._lock:
                entry = counters._entry(key)
                entry.rate_limited += 1
                entry.paused_for_s += pause_s

    def failed(self, key: str) -> None:
        """A request failed otherwise."""
        for counters in self._chain():
            with counters._lock:
                counters._entry(key).errors += 1

    def retried(self, key: str) -> None:
        """A request is about to be sent again."""
        for counters in self._chain():
            with counters._lock:
                counters._entry(key).retries += 1

    def add(self, counts: Mapping[str, Mapping[str, Any]]) -> None:
        """Add what requests counted elsewhere did (a :meth:`snapshot` taken in a Ray
        worker, sent back with its item)."""
        for counters in self._chain():
            with counters._lock:
                for key, values in counts.items():
                    entry = counters._entry(key)
                    for name, value in values.items():
                        setattr(entry, name, getattr(entry, name) + value)

    def get(self, key: str) -> ResourceCounts:
        """A copy of the counts of ``key`` (zeros if the run sent it nothing)."""
        with self._lock:
            entry = self._by_key.get(key)
            return dataclasses.replace(entry) if entry is not None else ResourceCounts()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The counts of every resource the run sent to (or was refused by), by key."""
        with self._lock:
            return {
                key: dataclasses.asdict(entry) for key, entry in self._by_key.items() if entry.any()
            }

    def __repr__(self) -> str:
        return f"RunCounters({self.snapshot()!r})"


current: contextvars.ContextVar[RunCounters | None] = contextvars.ContextVar(
    "hush_run_counters", default=None
)
"""The counters of the run the running code belongs to (``None``: no run counts)."""


@contextlib.contextmanager
def counting() -> Iterator[RunCounters]:
    """Fresh counters, current for the ``with`` block (inside the enclosing run's, if any)."""
    counters = RunCounters(current.get())
    token = current.set(counters)
    try:
        yield counters
    finally:
        current.reset(token)


_STATUS = (
    "rpm",
    "tpm",
    "rpm_limit",
    "tpm_limit",
    "max_in_flight",
    "max_concurrency",
    "in_flight",
    "waiting",
)
"""What :func:`resource_status` reports of a limiter: its rates and limits now."""


def resource_status(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The current rates (per minute), limits and occupancy of each of ``keys`` that has a
    limiter in this process; ``max_concurrency`` repeats ``max_in_flight`` (its old name,
    kept for one release)."""
    from hush.providers.limiter import all_limiters

    limiters = all_limiters()
    status = {}
    for key in keys:
        limiter = limiters.get(key)
        if limiter is not None:
            stats = dataclasses.asdict(limiter.stats())
            status[key] = {name: stats[name] for name in _STATUS}
    return status


def llm_report(counters: RunCounters) -> dict[str, dict[str, Any]]:
    """Per resource the run sent to: its current rates and limits, and what the run's own
    requests did (the shape of ``$state.llm`` before spend is added)."""
    counts = counters.snapshot()
    status = resource_status(counts)
    return {key: {**status.get(key, {}), **count} for key, count in counts.items()}
