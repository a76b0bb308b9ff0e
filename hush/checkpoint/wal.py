"""Copying the write-ahead log into the database file, off the writer's path.

SQLite's automatic checkpoint runs inside a commit and, at ``synchronous=NORMAL``,
fsyncs the database: a commit that triggers it takes tens of milliseconds, and
every map item waiting for that commit waits too. The writer turns automatic
checkpoints off; a background writer of this module's own, with its own
connection, runs a passive checkpoint (which never blocks the writer) about once
a second while commits keep coming (its ``linger`` gathers the commits of that
second into one checkpoint), and the last connection to close checkpoints what
is left.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from hush.background import BackgroundWriter
from hush.checkpoint.schema import BUSY_TIMEOUT_S

logger = logging.getLogger("hush.checkpoint")

INTERVAL_S = 1.0


class WalCheckpointer:
    """Checkpoints the WAL of ``file`` about once a second while commits are made."""

    def __init__(self, file: Path) -> None:
        self._file = file
        self._conn: sqlite3.Connection | None = None
        self._stopping = False
        self.checkpoints = 0
        """Checkpoints run so far."""
        self._background = BackgroundWriter[None](
            self._checkpoint,
            name=f"hush-checkpoint-wal[{file.name}]",
            maxsize=1,
            linger=INTERVAL_S,
            exit_timeout=BUSY_TIMEOUT_S,
            on_error="count",
            on_failure=self._failed,
            on_close=self._close,
        )

    def committed(self) -> None:
        """Note that the WAL grew; a checkpoint follows within about a second (one already
        due covers this commit too)."""
        if not self._background.pending:
            self._background.offer(None)

    def flush(self, timeout: float | None = None) -> bool:
        """Run a checkpoint still due now; ``False`` after ``timeout`` seconds."""
        return self._background.flush(timeout)

    def stop(self) -> None:
        """Stop (a checkpoint under way finishes first; one still due is skipped)."""
        self._stopping = True
        self._background.close(BUSY_TIMEOUT_S)

    def _checkpoint(self, batch: list[None]) -> None:
        if self._stopping:
            return
        if self._conn is None:  # mode=rw: a removed file is not created again
            uri = f"{self._file.resolve().as_uri()}?mode=rw"
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False
            )
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1

    def _failed(self, exc: BaseException) -> None:
        logger.warning("checkpoint %s: copying the WAL failed (%s)", self._file, exc)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
