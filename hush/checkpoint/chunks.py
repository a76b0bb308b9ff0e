"""Results in chunks (the layout is in :mod:`hush.checkpoint.schema`): how a commit cuts
its results into chunks, and a run's saved results as readers see them: its rows in
``entries`` (bookkeeping, and the results of files written before chunks), then its
chunks expanded in commit order. A later entry of one path and digest wins over an
earlier one; every entry's spend counts."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from collections.abc import Iterator
from typing import Any

from hush.checkpoint.schema import CHUNK_ROW

logger = logging.getLogger("hush.checkpoint")

CHUNK_ENTRIES = 2048
"""The most results one chunk holds: pickling a chunk's body holds the GIL, about a
millisecond for this many."""
CHUNK_BYTES = 32 * 1024 * 1024
"""The most bytes of pickled values one chunk holds (SQLite refuses a value over 1 GB; a
result larger than this is a chunk of its own)."""

Saved = tuple[str, str, bytes, str | None, float]
"""One saved entry: path, digest, pickled value, spend (JSON or ``None``), finish time."""

SAVED_COUNT = (
    "(SELECT count(*) FROM entries e WHERE e.run_id = {run} AND e.path NOT LIKE '$%') + "
    "(SELECT coalesce(sum(c.entries), 0) FROM chunks c WHERE c.run_id = {run})"
)
"""SQL counting the results saved for the run ``{run}`` (an expression of the query), not
its bookkeeping; an entry saved twice counts twice."""


def chunked(rows: list[object]) -> list[list[object]]:
    """The flat entries ``rows`` (:data:`~hush.checkpoint.schema.CHUNK_ROW` items each) cut
    into chunk bodies of at most :data:`CHUNK_ENTRIES` entries and :data:`CHUNK_BYTES`."""
    step = CHUNK_ENTRIES * CHUNK_ROW
    bodies = (
        [rows] if len(rows) <= step else [rows[i : i + step] for i in range(0, len(rows), step)]
    )
    if all(pickled_bytes(body) <= CHUNK_BYTES for body in bodies):
        return bodies
    return [part for body in bodies for part in _by_bytes(body)]


def pickled_bytes(body: list[Any], row: int = CHUNK_ROW) -> int:
    """The bytes of pickled values in ``body`` (flat entries of ``row`` items each, the value
    third: a chunk's body by default)."""
    return sum(map(len, body[2::row]))


def _by_bytes(body: list[Any]) -> list[list[object]]:
    parts: list[list[object]] = []
    start = size = 0
    for end in range(0, len(body), CHUNK_ROW):
        value = len(body[end + 2])
        if size and size + value > CHUNK_BYTES:
            parts.append(body[start:end])
            start, size = end, 0
        size += value
    parts.append(body[start:])
    return parts


def saved_entries(conn: sqlite3.Connection, run_id: str) -> Iterator[Saved]:
    """Every entry saved for ``run_id``, oldest first (a chunk that no longer loads is
    logged and skipped: its results run again)."""
    yield from conn.execute(
        "SELECT path, digest, value, spend, finished_at FROM entries WHERE run_id = ? "
        "ORDER BY finished_at, path",
        (run_id,),
    )
    chunks = conn.execute(
        "SELECT body, finished_at FROM chunks WHERE run_id = ? ORDER BY rowid", (run_id,)
    )
    for body, finished_at in chunks:
        flat = _expanded(body, run_id)
        for start in range(0, len(flat), CHUNK_ROW):
            path, digest, value, spend = flat[start : start + CHUNK_ROW]
            yield path, digest, value, spend, finished_at


def _expanded(body: bytes, run_id: str) -> list[Any]:
    try:
        flat = pickle.loads(body)
    except Exception:
        logger.warning(
            "checkpoint: a chunk of saved results of run %r does not load; they run again",
            run_id,
            exc_info=True,
        )
        return []
    if not isinstance(flat, list) or len(flat) % CHUNK_ROW:
        logger.warning("checkpoint: a chunk of run %r is malformed; its results run again", run_id)
        return []
    return flat
