"""The checkpoint writer: group commits of queued checkpoint entries.

A batch (one event-loop turn's entries, or a few turns') is committed in one
transaction: the results as one chunk (one row, its body pickled in one call: see
:mod:`hush.checkpoint.schema`), the bookkeeping as upserts; then the store's commit
watermark rises (:class:`~hush.checkpoint.commits.Commits`, which wakes the loop only if
someone waits). The first failure is kept: every later put and waiter gets a
:class:`CheckpointWriteError`.

A batch is committed on the event loop's thread (:meth:`Writer.commit_here`) while that
is quick: the thread holds no earlier batch (commits keep their order), the batch is small
and the file's write lock is free at once (a commit without an fsync takes 50-250 us, less
than a hand-off to a thread that a busy loop starves of the GIL). Otherwise a
:class:`~hush.background.BackgroundWriter` thread commits it, and does so for
:data:`INLINE_BACKOFF_S` after a commit on the loop took over :data:`INLINE_MAX_S`. The
thread is nudged when a busy loop starves it, settles the futures of ``flush`` and
``aclose`` on their loops, and closing commits what is queued, closes the connection and
releases the run's lock. One lock keeps the two from using the connection at once.
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import threading
import time
from pathlib import Path

from hush.background import BackgroundWriter, WriterFailedError
from hush.checkpoint.chunks import chunked, pickled_bytes
from hush.checkpoint.claim import SPEND_PATH, check_file
from hush.checkpoint.commits import Commits
from hush.checkpoint.errors import CheckpointWriteError
from hush.checkpoint.lock import RunLock
from hush.checkpoint.ops import (
    ROW,
    Barrier,
    Close,
    Futures,
    Many,
    Op,
    Status,
    WriterStats,
    alone,
    settle,
    waiters_of,
)
from hush.checkpoint.schema import (
    APPEND_CHUNK,
    BUSY_TIMEOUT_S,
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
"""How long entries are gathered after a commit unless someone waits for them (``flush``,
``aclose``, :meth:`Writer.hurry`): 5,000 items of 5 ms I/O at cap 100 made about 500
commits without it, and make about 110 with it."""
INLINE_MAX_S = 0.002
"""A commit on the event loop's thread that holds it longer than this (a slow disk, a
large batch) sends the commits of the next :data:`INLINE_BACKOFF_S` to the thread."""
INLINE_BACKOFF_S = 1.0
INLINE_MAX_BYTES = 1024 * 1024
"""A batch whose pickled results are larger than this is committed by the thread."""
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
EXIT_TIMEOUT_S = 30.0
"""How long interpreter exit waits for a writer still open to commit what it holds."""


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
        self._on_loop = 0
        self._touched_at = 0.0
        self._using = threading.Lock()
        """Held while the connection is in use (by the thread, or by the loop's commit)."""
        self.pause = PAUSE_S
        """How long entries are gathered after a commit (:data:`PAUSE_S`)."""
        self._handed = 0
        """The last entry number handed to the thread (the loop commits only after it)."""
        self._inline_after = 0.0
        """No commit on the loop before this (monotonic) time."""
        self.committed_at = 0.0
        """When the last commit ended (monotonic)."""
        self._checked_at = 0.0
        self._wal = WalCheckpointer(file)
        self._background = BackgroundWriter[Op](
            self._commit,
            name=f"hush-checkpoint-writer[{run_id}]",
            batch_size=MAX_BATCH,
            pause=self.pause,
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
        if isinstance(op, Many):
            self._handed = op.last
        try:
            self._background.put(op)
        except (WriterFailedError, RuntimeError):
            self._fail_ops([op])

    def idle(self, commits: Commits) -> bool:
        """Whether a batch numbered after those of ``commits`` handed over so far would be
        committed on the loop (:meth:`commit_here`; the batch's size aside)."""
        return (
            commits.committed >= self._handed
            and not self.failed
            and time.monotonic() >= self._inline_after
            and not self._background.closed
        )

    def commit_here(self, many: Many) -> bool:
        """Commit ``many`` on the calling thread (the event loop's) if that cannot hold it
        long: see the module docstring. ``False``: nothing was written, :meth:`submit` it.
        A failure is the writer's, as in its thread (``many``'s waiters get it)."""
        if not self.idle(many.commits) or pickled_bytes(many.rows) > INLINE_MAX_BYTES:
            return False
        if not self._using.acquire(blocking=False):
            return False
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            self._commit_at_once(many)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _BUSY:  # another connection writes: the thread waits
                self._inline_after = time.monotonic() + INLINE_BACKOFF_S
                return False
            failure = exc
        except Exception as exc:
            failure = exc
        except BaseException:  # KeyboardInterrupt mid-commit: the thread commits it (again)
            self.submit(many)
            raise
        finally:
            self._using.release()
        if failure is not None:
            self._background.record_failure(failure)
            self._fail_ops([many])
            return True
        many.commits.advance(many.last)
        if time.perf_counter() - started > INLINE_MAX_S:
            self._inline_after = time.monotonic() + INLINE_BACKOFF_S
        self._on_loop += 1
        return True

    def _commit_at_once(self, many: Many) -> None:
        """Commit ``many`` (the caller holds the connection's lock) or raise SQLite's busy
        error at once, with nothing written, if another connection holds the write lock."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout=0")
        try:
            self._store([many])
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")

    def _submit_close(self, op: Close) -> None:
        with self._close_lock:
            waiters = self._close_waiters
            if op.waiter is not None and waiters is not None:
                waiters.append(alone(op.waiter))
        if op.waiter is not None and waiters is None:
            settle([alone(op.waiter)], None)
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
        return WriterStats(
            commits=self._commits,
            entries=self._entries,
            max_lag=self._max_lag,
            on_loop=self._on_loop,
        )

    def shutdown(self, timeout: float) -> None:
        """Commit what is queued and stop, waiting up to ``timeout`` seconds."""
        self._background.begin_close()
        self._background.wait_closed(timeout)

    def _commit(self, batch: list[Op]) -> None:
        """The thread's handler: write ``batch`` in one transaction, then raise the commit
        watermarks and settle the barriers (the background writer hands a batch that fails
        to :meth:`_reject`)."""
        with self._using:
            done, waiters = self._store(batch)
        for many in done:
            many.commits.advance(many.last)
        settle(waiters, None)

    def _store(self, batch: list[Op]) -> tuple[list[Many], list[Futures]]:
        """Write ``batch`` in one transaction (the caller holds the connection's lock);
        return its entries and its barriers' futures."""
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
                waiters.append(alone(op.waiter))
        if rows or keyed:
            self._write(rows, keyed, oldest, newest)
        if statuses:
            self._write_run(statuses)
        return done, waiters

    def _reject(self, batch: list[Op], failure: BaseException) -> None:
        self._fail_ops(batch)

    def _fail_ops(self, ops: list[Op]) -> None:
        """Give the waiters of ``ops`` the writer's error."""
        for op in ops:
            if isinstance(op, Many):
                op.commits.fail(self.error)
        settle(waiters_of(ops), self.error)

    def _closed(self) -> None:
        """The thread's last act: record the run's update time, close the connection,
        release the lock, settle ``aclose``."""
        try:
            if self._entries and self._cause is None:
                with self._using:
                    self._write_run([])
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._wal.stop()
            try:
                with self._using:
                    self._conn.close()
            except sqlite3.Error as exc:
                self._fail(exc)
            if self._lock is not None:
                self._lock.release()
            with self._close_lock:
                waiters, self._close_waiters = self._close_waiters or [], None
            settle(waiters, None)

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
        now = time.monotonic()
        touch = now - self._touched_at > TOUCH_EVERY_S
        if touch:
            statements.append((TOUCH_RUN, [time.time(), self._run_id]))
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
        if touch:
            self._touched_at = now
        self._committed(len(rows) // CHUNK_ROW + len(keyed) // ROW, now)
        self._max_lag = max(self._max_lag, time.time() - oldest)

    def _upsert(self, keyed: list[object]) -> tuple[str, list[object]]:
        """One upsert statement of the entries of ``keyed`` (padded to a prepared size by
        repeating the last entry without its spend)."""
        count = len(keyed) // ROW
        size = next(size for size in STATEMENT_SIZES if size >= count)
        params: list[object] = [self._run_id, *keyed]
        params += [*keyed[-ROW:-1], None] * (size - count)
        return upsert_entries(size), params

    def _committed(self, entries: int, now: float) -> None:
        """After a commit (its transaction records the run's update time once a second):
        check the file now and then, note the WAL grew, count."""
        if now - self._checked_at > CHECK_FILE_EVERY_S:
            self._check_file()
            self._checked_at = now
        self._wal.committed()
        self._commits += 1
        self._entries += entries
        self.committed_at = now

    def _check_file(self) -> None:
        if self._identity is not None:
            check_file(self._file, self._identity)

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
