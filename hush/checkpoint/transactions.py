"""The write connection of one checkpoint run and what each of its transactions writes
(the writer decides where and when: :mod:`hush.checkpoint.writer`)."""

from __future__ import annotations

import pickle
import sqlite3
import time
from pathlib import Path

from hush.checkpoint.chunks import chunked
from hush.checkpoint.claim import SPEND_PATH, check_file
from hush.checkpoint.ops import ROW, Barrier, Futures, Many, Op, Status, alone
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

MAX_BATCH = STATEMENT_SIZES[-1]
TOUCH_EVERY_S = 1.0
CHECK_FILE_EVERY_S = 0.1
"""How often a commit checks that the file is still the run's (``os.stat`` hands the GIL
back and forth: while the event loop is busy, each hand-off can wait Python's switch
interval, 5 ms). Closing always checks."""
_WAIT = f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}"


class RunFile:
    """The run's write connection (used by one thread at a time: the writer's lock), with
    what it has committed."""

    def __init__(
        self, conn: sqlite3.Connection, run_id: str, file: Path, identity: tuple[int, int] | None
    ) -> None:
        self.conn, self.run_id, self.file, self.identity = conn, run_id, file, identity
        self.commits = self.entries = 0
        self.wrote = 0
        """Transactions committed (counted the moment each ends)."""
        self.max_lag = 0.0
        self.committed_at = 0.0
        """When the last commit ended (monotonic)."""
        self.zeroed = False
        """The busy timeout is 0 (set by :meth:`at_once`, an interrupted commit may leave it)."""
        self._touched_at = self._checked_at = 0.0
        self.wal = WalCheckpointer(file)

    def at_once(self, many: Many) -> None:
        """Commit ``many`` or raise SQLite's busy error at once, with nothing written, if
        another connection holds the write lock. The busy timeout stays zero for the loop's
        next commit; the writer's thread gives it back before its own (:meth:`restore_timeout`)."""
        if not self.zeroed:
            self.zeroed = True
            self.conn.execute("PRAGMA busy_timeout=0")
        self.store([many])

    def store(self, batch: list[Op]) -> tuple[list[Many], list[Futures]]:
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
            self.write_run(statuses)
        return done, waiters

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
            statements.append((APPEND_CHUNK, [self.run_id, results, blob, at]))
        step = MAX_BATCH * ROW
        for start in range(0, len(keyed), step):
            statements.append(self._upsert(keyed[start : start + step]))
        now = time.monotonic()
        touch = now - self._touched_at > TOUCH_EVERY_S
        if touch:
            statements.append((TOUCH_RUN, [time.time(), self.run_id]))
        conn = self.conn
        if len(statements) == 1:
            changes = conn.total_changes
            try:
                conn.execute(*statements[0])
            finally:  # a Ctrl-C is raised after the call returns: the row is in, counted
                if conn.total_changes != changes:
                    self.wrote += 1
        else:
            conn.execute("BEGIN IMMEDIATE")
            committing = False
            try:
                for statement in statements:
                    conn.execute(*statement)
                committing = True
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                elif committing:  # interrupted once COMMIT had returned
                    self.wrote += 1
                raise
            self.wrote += 1
        if touch:
            self._touched_at = now
        self._committed(len(rows) // CHUNK_ROW + len(keyed) // ROW, now)
        self.max_lag = max(self.max_lag, time.time() - oldest)

    def _upsert(self, keyed: list[object]) -> tuple[str, list[object]]:
        """One upsert statement of the entries of ``keyed`` (padded to a prepared size by
        repeating the last entry without its spend)."""
        count = len(keyed) // ROW
        size = next(size for size in STATEMENT_SIZES if size >= count)
        params: list[object] = [self.run_id, *keyed]
        params += [*keyed[-ROW:-1], None] * (size - count)
        return upsert_entries(size), params

    def _committed(self, entries: int, now: float) -> None:
        """After a commit (its transaction records the run's update time once a second):
        check the file now and then, note the WAL grew, count."""
        if now - self._checked_at > CHECK_FILE_EVERY_S:
            self.check_file()
            self._checked_at = now
        self.wal.committed()
        self.commits += 1
        self.entries += entries
        self.committed_at = now

    def check_file(self) -> None:
        if self.identity is not None:
            check_file(self.file, self.identity)

    def write_run(self, statuses: list[Status]) -> None:
        """Record the run's latest status and update time."""
        for status in statuses:
            self.conn.execute(SET_STATUS, (status.status, status.at, self.run_id))
        self.conn.execute(TOUCH_RUN, (time.time(), self.run_id))
        self.check_file()

    def restore_timeout(self) -> None:
        """Give the connection its busy timeout back, if a commit on the loop zeroed it."""
        if self.zeroed:
            self.conn.execute(_WAIT)
            self.zeroed = False
