"""Copying the write-ahead log into the database file, off the writer's path.

SQLite's automatic checkpoint runs inside a commit and, at ``synchronous=NORMAL``,
fsyncs the database: a commit that triggers it takes tens of milliseconds, and
every map item waiting for that commit waits too. The writer turns automatic
checkpoints off; this thread, with its own connection, runs a passive
checkpoint (which never blocks the writer) about once a second while commits
keep coming, and the last connection to close checkpoints what is left.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from hush.checkpoint.schema import BUSY_TIMEOUT_S

logger = logging.getLogger("hush.checkpoint")

INTERVAL_S = 1.0


class WalCheckpointer:
    """A daemon thread checkpointing the WAL of ``file`` while commits are made."""

    def __init__(self, file: Path) -> None:
        self._file = file
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"hush-checkpoint-wal[{file.name}]", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def committed(self) -> None:
        """Note that the WAL grew; a checkpoint follows within about a second."""
        self._dirty.set()

    def stop(self) -> None:
        """Stop the thread (it finishes a checkpoint under way first)."""
        self._stop.set()
        self._dirty.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(BUSY_TIMEOUT_S)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._dirty.wait()
                if self._stop.wait(INTERVAL_S):
                    return
                self._dirty.clear()
                if conn is None:  # mode=rw: a removed file is not created again
                    uri = f"{self._file.resolve().as_uri()}?mode=rw"
                    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            logger.warning("checkpoint %s: copying the WAL failed (%s)", self._file, exc)
        finally:
            if conn is not None:
                conn.close()
