"""What the event loop hands the checkpoint writer, and how the writer settles the futures
that wait for it (on their own loops)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hush.checkpoint.commits import Commits

logger = logging.getLogger("hush.checkpoint")

Waiter = tuple["asyncio.Future[None]", asyncio.AbstractEventLoop]
Futures = tuple[list["asyncio.Future[None]"], asyncio.AbstractEventLoop]
"""Futures of one loop, settled together (a batch's are handed over as one list)."""
ROW = 5
"""Parameters per entry in :attr:`Many.keyed`: ``path, digest, pickled value, finished_at,
spend`` (``finished_at`` is the batch's :attr:`Many.at`; ``spend`` is what the saved work's
LLM calls spent, JSON, committed in the same statement as the value)."""


@dataclass(frozen=True, slots=True)
class Status:
    """Set the run's status."""

    status: str
    at: float


@dataclass(frozen=True, slots=True)
class Barrier:
    """Settle ``waiter`` once everything queued before it is committed."""

    waiter: Waiter


@dataclass(frozen=True, slots=True)
class Close:
    """Commit what is queued, close the connection, settle ``waiter``, stop."""

    waiter: Waiter | None


@dataclass(frozen=True, slots=True)
class Many:
    """The entries one event-loop turn queued, numbered up to ``last`` in ``commits``: the
    results as a chunk's flat body (:data:`~hush.checkpoint.schema.CHUNK_ROW` per entry),
    the bookkeeping (paths starting with ``$``) as flat upsert parameters (:data:`ROW` per
    entry)."""

    rows: list[object]
    keyed: list[object]
    last: int
    commits: Commits
    at: float
    """When the batch was handed over (the finish time of its entries)."""


Op = Many | Status | Barrier | Close


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What a writer did: transactions (``on_loop`` of them on the event loop's thread),
    entries, the worst put-to-commit delay, and how many times the event loop waited for a
    commit."""

    commits: int
    entries: int
    max_lag: float
    waits: int = 0
    on_loop: int = 0


def waiters_of(ops: list[Op]) -> list[Futures]:
    """The futures waiting on ``ops``' commit."""
    waiters: list[Futures] = []
    for op in ops:
        if isinstance(op, Barrier | Close) and op.waiter is not None:
            waiters.append(alone(op.waiter))
    return waiters


def alone(waiter: Waiter) -> Futures:
    """One waiter as a group of futures."""
    return [waiter[0]], waiter[1]


def settle(waiters: Iterable[Futures], error: Callable[[], BaseException] | None) -> None:
    """Settle ``waiters`` on their loops (from any thread): done, or failed with a fresh
    ``error()`` each."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for futures, loop in waiters:
        by_loop.setdefault(loop, []).extend(futures)
    for loop, futures in by_loop.items():
        errors = [error() for _ in futures] if error is not None else None
        try:
            loop.call_soon_threadsafe(_settle_futures, futures, errors)
        except RuntimeError:
            logger.debug("event loop closed; %d checkpoint waiter(s) dropped", len(futures))


def _settle_futures(
    futures: list[asyncio.Future[None]], errors: list[BaseException] | None
) -> None:
    for index, future in enumerate(futures):
        if future.done():
            continue
        if errors is None:
            future.set_result(None)
        else:
            future.set_exception(errors[index])
