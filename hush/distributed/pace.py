"""How many items a worker holds: enough to hide the round trip, few enough to share the tail.

A worker runs ``items_at_once`` items at a time. While it runs them, the items that
will replace them must already be on their way, or it idles for a round trip each
time an item ends. :class:`Pace` measures two things as results come back: how long
an item runs in the worker (reported by the worker) and the round trip (the time
from a call's submission to an item's result, less what the worker spent on it). A
worker then holds its ``items_at_once`` plus as many as end during :data:`AHEAD`
round trips (at least ``items_at_once + 1`` more), and is sent more only once half
of that has room (or it is idle): trivial items go by the dozen in one call and
share its round trip, items of 20 ms go two at a time (a call costs the driver and
the worker a few milliseconds of CPU each), so at the end of a map no worker sits
on more than two queued items while another idles.
"""

from __future__ import annotations

import math

MAX_BATCH = 64
"""Items in one call at most."""
CALLS_PER_WORKER = 2
"""Calls in flight per worker: one running, one queued behind it (no idle round trip)."""
WEIGHT = 0.2
"""Weight of the newest measurement in the running averages."""
AHEAD = 2
"""Round trips of work a worker holds beyond its slots."""


class Pace:
    """Running averages of item run time and round trip (seconds), and what follows."""

    def __init__(self) -> None:
        self.item_s: float | None = None
        self.trip_s: float | None = None

    def ran(self, seconds: float) -> None:
        """An item ran ``seconds`` in a worker."""
        self.item_s = _average(self.item_s, seconds)

    def trip(self, seconds: float) -> None:
        """A result came back ``seconds`` later than the worker's own time on it."""
        self.trip_s = _average(self.trip_s, max(seconds, 0.0))

    def held(self, items_at_once: int) -> int:
        """Items a worker of ``items_at_once`` slots should hold (in its calls): its slots
        and the items that end during :data:`AHEAD` round trips, at least one more set
        of slots and one item (so that calls carry two long items, not one)."""
        ahead = items_at_once + 1
        if self.item_s is not None and self.trip_s is not None:
            ending = AHEAD * items_at_once * self.trip_s / max(self.item_s, 1e-6)
            ahead = max(ahead, math.ceil(ending))
        return items_at_once + min(ahead, MAX_BATCH * CALLS_PER_WORKER)

    @staticmethod
    def room(held: int, load: int) -> int:
        """Items to send a worker that holds ``load`` of ``held``: none until half of its
        share has room (so a call carries many small items, not one), unless it is idle."""
        free = held - load
        return free if load == 0 or free >= (held + 1) // 2 else 0


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + WEIGHT * (new - old)
