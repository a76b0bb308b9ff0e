"""The writer thread: group commits of queued checkpoint entries.

The event loop only enqueues; this thread takes everything queued (up to
:data:`MAX_BATCH` entries), upserts it in one statement (one transaction),
then settles the futures waiting on that commit (``put_durable``, ``flush``,
``aclose``) on their own loops. The first failure is kept: every later put
and waiter gets a :class:`CheckpointWriteError`.

A busy event loop releases the GIL for an instant on every iteration (its
``select`` call) and takes it straight back, which can starve this thread for
as long as the loop stays busy. So :meth:`Writer.submit` checks whether queued
work has waited longer than :data:`STALL_S` and, at most every
:data:`NUDGE_EVERY_S`, sleeps :data:`NUDGE_S` to hand the GIL over. A whole
batch being one statement, a commit needs the GIL back only once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hush.checkpoint.errors import CheckpointWriteError
from hush.checkpoint.lock import RunLock
from hush.checkpoint.schema import SET_STATUS, STATEMENT_SIZES, TOUCH_RUN, upsert_entries
from hush.checkpoint.wal import WalCheckpointer

logger = logging.getLogger("hush.checkpoint")

MAX_BATCH = STATEMENT_SIZES[-1]
TOUCH_EVERY_S = 1.0
STALL_S = 0.002
NUDGE_EVERY_S = 0.001
NUDGE_S = 0.00005

Waiter = tuple["asyncio.Future[None]", asyncio.AbstractEventLoop]
Futures = tuple[list["asyncio.Future[None]"], asyncio.AbstractEventLoop]
"""Futures of one loop, settled together (a batch's are handed over as one list)."""
Entry = tuple[str, str, bytes, float, str | None, Waiter | None]
"""``(path, digest, pickled value, finished_at, spend, waiter)``; ``finished_at`` 0 means
"the time of the batch that carries it"; ``spend`` is what the saved work's LLM calls spent
(JSON), committed in the same statement as the value."""


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
    """Several entries gathered on the event loop, and the futures awaiting their commit."""

    entries: list[Entry]
    waiters: list[asyncio.Future[None]]
    loop: asyncio.AbstractEventLoop
    at: float
    """When the batch was handed over (the finish time of entries stamped 0)."""


Op = Entry | Many | Status | Barrier | Close


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What a writer thread did: transactions, entries, and the worst put-to-commit delay."""

    commits: int
    entries: int
    max_lag: float


class Writer:
    """Owns the write connection of one run and the thread that uses it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        file: Path,
        *,
        lock: RunLock | None = None,
        identity: tuple[int, int] | None = None,
    ) -> None:
        self._conn = conn
        self._run_id = run_id
        self._file = file
        self._lock = lock
        self._identity = identity
        self._queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._close_waiters: list[Futures] = []
        self._closing = False
        self._cause: BaseException | None = None
        self._commits = 0
        self._entries = 0
        self._max_lag = 0.0
        self._submitted = 0
        self._processed = 0
        self._waiting_since = 0.0
        self._progress_at = 0.0
        self._nudged_at = 0.0
        self._touched_at = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"hush-checkpoint-writer[{run_id}]", daemon=True
        )
        self._wal = WalCheckpointer(file)

    def start(self) -> None:
        """Start the writer thread (and the thread that checkpoints its WAL)."""
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._wal.start()
        self._thread.start()

    def submit(self, op: Op) -> None:
        """Queue ``op``; thread-safe, and blocks for at most :data:`NUDGE_S`."""
        now = time.monotonic()
        if self._processed == self._submitted:
            self._waiting_since = now
        self._submitted += 1
        self._queue.put(op)
        if (
            now - max(self._waiting_since, self._progress_at) > STALL_S
            and now - self._nudged_at > NUDGE_EVERY_S
        ):
            self._nudged_at = now
            time.sleep(NUDGE_S)

    @property
    def failed(self) -> bool:
        """Whether a write has failed."""
        return self._cause is not None

    def error(self) -> CheckpointWriteError:
        """A fresh exception describing the first failure."""
        error = CheckpointWriteError(
            f"checkpoint writer of run {self._run_id!r} in {self._file} failed: {self._cause!r}; "
            "results finished since its last commit may not be saved"
        )
        error.__cause__ = self._cause
        return error

    @property
    def stats(self) -> WriterStats:
        """Commits, entries written and the longest put-to-commit delay so far."""
        return WriterStats(commits=self._commits, entries=self._entries, max_lag=self._max_lag)

    def shutdown(self, timeout: float) -> None:
        """Commit what is queued and stop, waiting up to ``timeout`` seconds."""
        if self._thread.is_alive():
            self._queue.put(Close(None))
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._closing:
                self._commit(self._take())
        except BaseException as exc:
            self._fail(exc)
            self._reject_until_closed()
        finally:
            self._wal.stop()
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                self._fail(exc)
            if self._lock is not None:
                self._lock.release()
            self._settle(self._close_waiters, failed=False)

    def _take(self) -> list[Op]:
        batch = [self._queue.get()]
        self._progress_at = time.monotonic()
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, batch: list[Op]) -> None:
        """Write ``batch`` in one transaction, then settle its waiters."""
        entries: list[Entry] = []
        waiters: list[Futures] = []
        statuses: list[Status] = []
        for op in batch:
            if isinstance(op, tuple):
                entries.append(op)
                if op[5] is not None:
                    waiters.append(_alone(op[5]))
            elif isinstance(op, Many):
                entries.extend(
                    e if e[3] else (e[0], e[1], e[2], op.at, e[4], e[5]) for e in op.entries
                )
                waiters.append((op.waiters, op.loop))
            elif isinstance(op, Status):
                statuses.append(op)
            elif isinstance(op, Barrier):
                waiters.append(_alone(op.waiter))
            else:
                self._closing = True
                if op.waiter is not None:
                    self._close_waiters.append(_alone(op.waiter))
        try:
            if entries:
                self._write(entries)
            if statuses or (self._closing and self._entries):
                self._write_run(statuses)
        except BaseException as exc:
            self._fail(exc)
            self._settle(waiters, failed=True)
            raise
        self._processed += len(batch)
        self._settle(waiters, failed=False)

    def _write(self, entries: list[Entry]) -> None:
        """Upsert ``entries`` in statements of at most :data:`MAX_BATCH` rows (in one
        transaction when there are several)."""
        if len(entries) <= MAX_BATCH:
            self._write_chunk(entries)
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(entries), MAX_BATCH):
                self._write_chunk(entries[start : start + MAX_BATCH])
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _write_chunk(self, entries: list[Entry]) -> None:
        """Upsert ``entries`` in one autocommit statement: one GIL hand-off per commit."""
        size = next(size for size in STATEMENT_SIZES if size >= len(entries))
        params: list[object] = [self._run_id]
        for entry in entries:
            params += entry[:5]
        last = entries[-1]
        params += (last[0], last[1], last[2], last[3], None) * (size - len(entries))
        self._conn.execute(upsert_entries(size), params)
        self._check_file()
        self._wal.committed()
        self._progress_at = now = time.monotonic()
        self._commits += 1
        self._entries += len(entries)
        self._max_lag = max(self._max_lag, time.time() - entries[0][3])
        if now - self._touched_at > TOUCH_EVERY_S:
            self._touched_at = now
            self._conn.execute(TOUCH_RUN, (time.time(), self._run_id))

    def _check_file(self) -> None:
        """Raise if the file was removed or replaced: what was committed went nowhere."""
        if self._identity is None:
            return
        try:
            stat = os.stat(self._file)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"checkpoint file {self._file} was removed while the run wrote to it"
            ) from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise FileExistsError(
                f"checkpoint file {self._file} was replaced by another file while the run "
                "wrote to it"
            )

    def _write_run(self, statuses: list[Status]) -> None:
        """Record the run's latest status and update time."""
        for status in statuses:
            self._conn.execute(SET_STATUS, (status.status, status.at, self._run_id))
        self._conn.execute(TOUCH_RUN, (time.time(), self._run_id))
        self._check_file()

    def _reject_until_closed(self) -> None:
        while not self._closing:
            waiters: list[Futures] = []
            for op in self._take():
                if isinstance(op, tuple):
                    if op[5] is not None:
                        waiters.append(_alone(op[5]))
                elif isinstance(op, Many):
                    waiters.append((op.waiters, op.loop))
                elif isinstance(op, Barrier):
                    waiters.append(_alone(op.waiter))
                elif isinstance(op, Close):
                    self._closing = True
                    if op.waiter is not None:
                        self._close_waiters.append(_alone(op.waiter))
            self._settle(waiters, failed=True)

    def _fail(self, exc: BaseException) -> None:
        if self._cause is None:
            self._cause = exc
            logger.error(
                "checkpoint writer of run %r in %s failed; no further results will be saved",
                self._run_id,
                self._file,
                exc_info=exc,
            )

    def _settle(self, waiters: Iterable[Futures], *, failed: bool) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for futures, loop in waiters:
            by_loop.setdefault(loop, []).extend(futures)
        for loop, futures in by_loop.items():
            errors = [self.error() for _ in futures] if failed else None
            try:
                loop.call_soon_threadsafe(_settle_futures, futures, errors)
            except RuntimeError:
                logger.debug("event loop closed; %d checkpoint waiter(s) dropped", len(futures))


def _alone(waiter: Waiter) -> Futures:
    return [waiter[0]], waiter[1]


def _settle_futures(
    futures: list[asyncio.Future[None]], errors: list[CheckpointWriteError] | None
) -> None:
    for index, future in enumerate(futures):
        if future.done():
            continue
        if errors is None:
            future.set_result(None)
        else:
            future.set_exception(errors[index])
