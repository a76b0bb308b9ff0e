"""The SQLite layout of a checkpoint file and the connection settings.

Results are saved in chunks: each commit of the writer appends one row to ``chunks``
holding every result it saves (a pickled flat list of ``path, digest, value, spend``, the
value pickled on its own), so a commit costs one append at the end of the run's rows
whatever the number of results, where a row per result (keyed by a random digest) costs
an insert at a random place of the table's B-tree, a page written per result. Readers
expand the chunks in commit order, a later entry of a path and digest winning over an
earlier one (spends all count). ``entries`` holds the run's bookkeeping (paths starting
with ``$``: what it spent outside saved work, submitted Batch API batches), rewritten in
place, and the results of files written before chunks (schema version 3).
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
from pathlib import Path

logger = logging.getLogger("hush.checkpoint")

SCHEMA_VERSION = 4
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    status      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    run_id      TEXT NOT NULL,
    path        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    value       BLOB NOT NULL,
    finished_at REAL NOT NULL,
    spend       TEXT,
    PRIMARY KEY (run_id, path, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    run_id      TEXT NOT NULL,
    entries     INTEGER NOT NULL,
    body        BLOB NOT NULL,
    finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_of_run ON chunks (run_id);
"""

APPEND_CHUNK = "INSERT INTO chunks (run_id, entries, body, finished_at) VALUES (?, ?, ?, ?)"
CHUNK_ROW = 4
"""Items per entry in a chunk's body: ``path, digest, pickled value, spend`` (JSON or
``None``)."""

TOUCH_RUN = "UPDATE runs SET updated_at = ? WHERE run_id = ?"
SET_STATUS = "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?"


# Row counts an upsert statement is prepared for; a batch is padded up to the
# next one by repeating its last row (an idempotent upsert), so a whole batch is
# one statement and a handful of statements are ever prepared.
STATEMENT_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


@functools.cache
def upsert_entries(rows: int) -> str:
    """An upsert of ``rows`` entries of one run (parameter 1) in one statement.

    Parameters after the first are ``path, digest, value, finished_at, spend`` per
    row; a later row wins over an earlier one with the same path and digest, except
    that their spends are both kept (a JSON list of the two; a batch is padded with rows
    without spend).
    """
    values = ", ".join(
        f"(?1, ?{5 * i + 2}, ?{5 * i + 3}, ?{5 * i + 4}, ?{5 * i + 5}, ?{5 * i + 6})"
        for i in range(rows)
    )
    return (
        f"INSERT INTO entries (run_id, path, digest, value, finished_at, spend) VALUES {values} "
        "ON CONFLICT (run_id, path, digest) DO UPDATE SET value = excluded.value, "
        "finished_at = excluded.finished_at, spend = CASE "
        "WHEN entries.spend IS NULL THEN excluded.spend "
        "WHEN excluded.spend IS NULL THEN entries.spend "
        "ELSE '[' || entries.spend || ',' || excluded.spend || ']' END"
    )


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open ``path`` for writing: WAL journal, ``synchronous=NORMAL``, schema created.

    The connection is in autocommit mode (transactions are explicit) and may be
    handed to another thread, one thread at a time.
    """
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("checkpoint %s: journal mode is %s, not WAL", os.fspath(path), mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this hush supports ({SCHEMA_VERSION})"
            )
        if 0 < version < 2:
            raise sqlite3.DatabaseError(
                f"it was written by an earlier hush (schema version {version}), whose saved "
                "results are not keyed by their inputs; use a new checkpoint file"
            )
        if version == 2:  # saved spend came with version 3 (chunks with 4: a new table)
            conn.execute("ALTER TABLE entries ADD COLUMN spend TEXT")
        conn.executescript(_SCHEMA)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open an existing checkpoint file without writing to it. A file written before chunks
    (schema 3) has no ``chunks`` table; the connection gets an empty temporary one, so
    readers see such a file's results in ``entries`` alone."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    has_chunks = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks'"
    ).fetchone()
    if has_chunks is None:
        conn.execute(
            "CREATE TEMP TABLE chunks (run_id TEXT NOT NULL, entries INTEGER NOT NULL, "
            "body BLOB NOT NULL, finished_at REAL NOT NULL)"
        )
    return conn
