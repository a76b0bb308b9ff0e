"""The checkpoint writer: group commits of queued checkpoint entries.

The event loop only enqueues; a :class:`~hush.background.BackgroundWriter` thread
takes everything queued (up to :data:`MAX_BATCH` batches) and commits it in one
transaction: the results as one chunk (one row, its body pickled in one call: see
:mod:`hush.checkpoint.schema`), the bookkeeping as upserts; then it raises the store's commit watermark (:class:`~hush.checkpoint.
commits.Commits`, which wakes the loop only if someone waits) and settles the futures of
``flush`` and ``aclose`` on their own loops. The first failure is kept: every later put
and waiter gets a :class:`CheckpointWriteError`.

A busy event loop can starve the thread of the GIL, so submissions nudge it (see
:class:`~hush.background.handoff.Nudge`); a whole batch being one statement, a commit needs
the GIL back only once, and the thread does no Python work per entry. The thread follows the background writers' shutdown policy;
closing commits what is queued, closes the connection and releases the run's lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hush.background import BackgroundWriter, WriterFailedError
from hush.checkpoint.chunks import chunked
from hush.checkpoint.claim import SPEND_PATH
from hush.checkpoint.commits import Commits
from hush.checkpoint.errors import CheckpointWriteError
from hush.checkpoint.lock import RunLock
from hush.checkpoint.schema import (
    APPEND_CHUNK,
    CHUNK_ROW,
    SET_STATUS,
    STATEMENT_SIZES,
    TOUCH_RUN,
    upsert_entries,
)
from hush.checkpoint.wal import WalCheckpointer

logger = logging.getLogger("hush.checkpoint")

MAX_BATCH = STATEMENT_SIZES[-1]
TOUCH_EVERY_S = 1.0
CHECK_FILE_EVERY_S = 0.1
"""How often a commit checks that the file is still the run's (``os.stat`` hands the GIL
back and forth: while the event loop is busy, each hand-off can wait Python's switch
interval, 5 ms). Closing always checks."""
PAUSE_S = 0.002
"""How long the thread rests after a commit, gathering entries, unless someone waits for
them (``flush``, ``aclose``, :meth:`Writer.hurry`): a busy loop hands entries over every
few hundred microseconds, and each commit takes the GIL from the loop two or three times,
so 5,000 items of 5 ms I/O at cap 100 made about 500 commits, and make about 70 with it."""
EXIT_TIMEOUT_S = 30.0
"""How long interpreter exit waits for a writer still open to commit what it holds."""

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
    """What a writer thread did: transactions, entries, the worst put-to-commit delay, and
    how many times the event loop waited for a commit."""

    commits: int
    entries: int
    max_lag: float
    waits: int = 0


class Writer:
    """Owns the write connection of one run and the background writer that uses it."""

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
        self._close_waiters: list[Futures] | None = []
        """Futures of ``aclose`` calls; ``None`` once the writer has closed."""
        self._close_lock = threading.Lock()
        self._cause: BaseException | None = None
        self.failed = False
        """Whether a write has failed."""
        self._commits = 0
        self._entries = 0
        self._max_lag = 0.0
        self._touched_at = 0.0
        self._checked_at = 0.0
        self._wal = WalCheckpointer(file)
        self._background = BackgroundWriter[Op](
            self._commit,
            name=f"hush-checkpoint-writer[{run_id}]",
            batch_size=MAX_BATCH,
            pause=PAUSE_S,
            exit_timeout=EXIT_TIMEOUT_S,
            on_failure=self._fail,
            rejected=self._reject,
            on_close=self._closed,
            nudge=True,
        )

    def start(self) -> None:
        """Turn SQLite's automatic WAL checkpoints off (:mod:`hush.checkpoint.wal` does
        them); the thread starts with the first submission."""
        self._conn.execute("PRAGMA wal_autocheckpoint=0")

    def submit(self, op: Op) -> None:
        """Queue ``op``; thread-safe, and blocks for at most a few microseconds. After a
        failure, its waiters get the error at once."""
        if isinstance(op, Close):
            self._submit_close(op)
            return
        try:
            self._background.put(op)
        except (WriterFailedError, RuntimeError):
            self._fail_ops([op])

    def _submit_close(self, op: Close) -> None:
        with self._close_lock:
            waiters = self._close_waiters
            if op.waiter is not None and waiters is not None:
                waiters.append(_alone(op.waiter))
        if op.waiter is not None and waiters is None:
            self._settle([_alone(op.waiter)], failed=False)
        self._background.begin_close()

    def hurry(self) -> None:
        """Someone waits for a commit: do not linger."""
        self._background.hurry()

    def error(self) -> CheckpointWriteError:
        """A fresh exception describing the first failure."""
        cause = self._cause or RuntimeError("the writer is closed")
        error = CheckpointWriteError(
            f"checkpoint writer of run {self._run_id!r} in {self._file} failed: {cause!r}; "
            "results finished since its last commit may not be saved"
        )
        error.__cause__ = cause
        return error

    @property
    def stats(self) -> WriterStats:
        """Commits, entries written and the longest put-to-commit delay so far."""
        return WriterStats(commits=self._commits, entries=self._entries, max_lag=self._max_lag)

    def shutdown(self, timeout: float) -> None:
        """Commit what is queued and stop, waiting up to ``timeout`` seconds."""
        self._background.begin_close()
        self._background.wait_closed(timeout)

    def _commit(self, batch: list[Op]) -> None:
        """Write ``batch`` in one transaction, then raise the commit watermarks and settle
        the barriers (the background writer hands a batch that fails to :meth:`_reject`)."""
        rows: list[object] = []
        keyed: list[object] = []
        done: list[Many] = []
        waiters: list[Futures] = []
        statuses: list[Status] = []
        oldest = newest = 0.0
        for op in batch:
            if isinstance(op, Many):
                rows += op.rows
                if op.keyed:
                    op.keyed[3::ROW] = [op.at] * (len(op.keyed) // ROW)
                    keyed += op.keyed
                done.append(op)
                oldest = oldest or op.at
                newest = op.at
            elif isinstance(op, Status):
                statuses.append(op)
            elif isinstance(op, Barrier):
                waiters.append(_alone(op.waiter))
        if rows or keyed:
            self._write(rows, keyed, oldest, newest)
        if statuses:
            self._write_run(statuses)
        for many in done:
            many.commits.advance(many.last)
        self._settle(waiters, failed=False)

    def _reject(self, batch: list[Op], failure: BaseException) -> None:
        self._fail_ops(batch)

    def _fail_ops(self, ops: list[Op]) -> None:
        """Give the waiters of ``ops`` the writer's error."""
        for op in ops:
            if isinstance(op, Many):
                op.commits.fail(self.error)
        self._settle(_waiters(ops), failed=True)

    def _closed(self) -> None:
        """The thread's last act: record the run's update time, close the connection,
        release the lock, settle ``aclose``."""
        try:
            if self._entries and self._cause is None:
                self._write_run([])
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._wal.stop()
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                self._fail(exc)
            if self._lock is not None:
                self._lock.release()
            with self._close_lock:
                waiters, self._close_waiters = self._close_waiters or [], None
            self._settle(waiters, failed=False)

    def _write(self, rows: list[object], keyed: list[object], oldest: float, at: float) -> None:
        """Commit the results of ``rows`` (a chunk's flat body) as chunks (several, in one
        transaction, past :func:`~hush.checkpoint.chunks.chunked`'s bounds) finished ``at``,
        and upsert the bookkeeping of ``keyed``
        (:data:`ROW` per entry) in statements of at most :data:`MAX_BATCH` entries: one
        autocommit statement (one GIL hand-off) when that is all, else one transaction."""
        statements: list[tuple[str, list[object]]] = []
        for body in chunked(rows) if rows else ():
            blob = pickle.dumps(body, protocol=5)
            results = len(body) // CHUNK_ROW - body[0::CHUNK_ROW].count(SPEND_PATH)
            statements.append((APPEND_CHUNK, [self._run_id, results, blob, at]))
        step = MAX_BATCH * ROW
        for start in range(0, len(keyed), step):
            statements.append(self._upsert(keyed[start : start + step]))
        if len(statements) == 1:
            self._conn.execute(*statements[0])
        else:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    self._conn.execute(*statement)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        self._committed(len(rows) // CHUNK_ROW + len(keyed) // ROW)
        self._max_lag = max(self._max_lag, time.time() - oldest)

    def _upsert(self, keyed: list[object]) -> tuple[str, list[object]]:
        """One upsert statement of the entries of ``keyed`` (padded to a prepared size by
        repeating the last entry without its spend)."""
        count = len(keyed) // ROW
        size = next(size for size in STATEMENT_SIZES if size >= count)
        params: list[object] = [self._run_id, *keyed]
        params += [*keyed[-ROW:-1], None] * (size - count)
        return upsert_entries(size), params

    def _committed(self, entries: int) -> None:
        """After a commit: check the file now and then, note the WAL grew, count, and
        record the run's update time once a second."""
        now = time.monotonic()
        if now - self._checked_at > CHECK_FILE_EVERY_S:
            self._check_file()
            self._checked_at = now
        self._wal.committed()
        self._commits += 1
        self._entries += entries
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

    def _fail(self, exc: BaseException) -> None:
        if self._cause is None:
            self._cause = exc
            self.failed = True
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


def _waiters(ops: list[Op]) -> list[Futures]:
    """The futures waiting on ``ops``' commit."""
    waiters: list[Futures] = []
    for op in ops:
        if isinstance(op, Barrier | Close) and op.waiter is not None:
            waiters.append(_alone(op.waiter))
    return waiters


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
