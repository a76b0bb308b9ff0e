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
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hush.background import BackgroundWriter, WriterFailedError
from hush.checkpoint.chunks import pickled_bytes
from hush.checkpoint.commits import Commits
from hush.checkpoint.errors import CheckpointWriteError
from hush.checkpoint.lock import RunLock
from hush.checkpoint.ops import (
    ROW,
    Close,
    Futures,
    Many,
    Op,
    WriterStats,
    alone,
    settle,
    waiters_of,
)
from hush.checkpoint.transactions import MAX_BATCH, RunFile

logger = logging.getLogger("hush.checkpoint")

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


def _nothing() -> None:
    return None


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
        self._run_id = run_id
        self._file = file
        self._lock = lock
        self.run_file = RunFile(conn, run_id, file, identity)
        """The connection and what it committed."""
        self._close_waiters: list[Futures] | None = []
        """Futures of ``aclose`` calls; ``None`` once the writer has closed."""
        self._close_lock = threading.Lock()
        self._cause: BaseException | None = None
        self.failed = False
        """Whether a write has failed."""
        self._on_loop = 0
        self._using = threading.Lock()
        """Held while the connection is in use (by the thread, or by the loop's commit)."""
        self.pause = PAUSE_S
        """How long entries are gathered after a commit (:data:`PAUSE_S`)."""
        self._handed = 0
        """The last entry number handed to the thread (the loop commits only after it)."""
        self._inline_after = 0.0
        """No commit on the loop before this (monotonic) time."""
        self.leftovers: Callable[[], Many | None] = _nothing
        """What the store still buffers (taken when the writer closes)."""
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
        self.run_file.conn.execute("PRAGMA wal_autocheckpoint=0")

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
        size = pickled_bytes(many.rows) + pickled_bytes(many.keyed, ROW)
        if not self.idle(many.commits) or size > INLINE_MAX_BYTES:
            return False
        if not self._using.acquire(blocking=False):
            return False
        try:
            started, wrote = time.perf_counter(), self.run_file.wrote
            failure: Exception | None = None
            try:
                self.run_file.at_once(many)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY:  # the thread waits
                    self._inline_after = time.monotonic() + INLINE_BACKOFF_S
                    return False
                failure = exc
            except Exception as exc:
                failure = exc
            except BaseException:  # KeyboardInterrupt: the thread commits it unless it was
                if self.run_file.wrote == wrote:
                    self.submit(many)
                else:
                    many.commits.advance(many.last)
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
        done = self.run_file
        return WriterStats(done.commits, done.entries, done.max_lag, on_loop=self._on_loop)

    def shutdown(self, timeout: float) -> None:
        """Commit what is queued and stop, waiting up to ``timeout`` seconds."""
        self._background.begin_close()
        self._background.wait_closed(timeout)

    def _commit(self, batch: list[Op]) -> None:
        """The thread's handler: write ``batch`` in one transaction, then raise the commit
        watermarks and settle the barriers (the background writer hands a batch that fails
        to :meth:`_reject`)."""
        with self._using:
            self.run_file.restore_timeout()
            done, waiters = self.run_file.store(batch)
        for many in done:
            many.commits.advance(many.last)
        settle(waiters, None)

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
            with self._using:
                run_file = self.run_file
                run_file.restore_timeout()
                leftover = self.leftovers() if self._cause is None else None
                if leftover is not None:
                    run_file.store([leftover])
                    leftover.commits.advance(leftover.last)
                if run_file.entries and self._cause is None:
                    run_file.write_run([])
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.run_file.wal.stop()
            try:
                with self._using:
                    self.run_file.conn.close()
            except sqlite3.Error as exc:
                self._fail(exc)
            if self._lock is not None:
                self._lock.release()
            with self._close_lock:
                waiters, self._close_waiters = self._close_waiters or [], None
            settle(waiters, None)

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
