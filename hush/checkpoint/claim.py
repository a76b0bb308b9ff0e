"""Opening one run in a checkpoint file: its lock, its record, what it saved and spent.

A run is created, resumed (its saved entries loaded into memory, what it spent summed)
or restarted (its entries deleted: the fingerprint changed, or a restart was asked for).
All of it happens in one transaction, off the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hush.checkpoint.chunks import SAVED_COUNT, saved_entries
from hush.checkpoint.errors import CheckpointError, CheckpointMismatchError
from hush.checkpoint.lock import RunLock
from hush.checkpoint.schema import connect

logger = logging.getLogger("hush.checkpoint")

OnMismatch = Literal["error", "restart"]

SPEND_PATH, SPEND_KEY = "$spend", "totals"
"""Where a run's spend that no saved result holds is written (the engine writes there)."""

_SPEND_FIELDS = ("calls", "cached", "prompt_tokens", "completion_tokens", "total_tokens")


def _add_spend(total: dict[str, dict[str, Any]], found: Any) -> None:
    """Add a saved spend (per resource, or a list of such, as two saves of one row keep)
    into ``total``."""
    if isinstance(found, list):
        for each in found:
            _add_spend(total, each)
        return
    if not isinstance(found, dict):
        return
    for key, spent in found.items():
        if not isinstance(spent, dict):
            continue
        into = total.setdefault(key, dict.fromkeys(_SPEND_FIELDS, 0) | {"cost": None})
        for field in _SPEND_FIELDS:
            into[field] += int(spent.get(field) or 0)
        if spent.get("cost") is not None:
            into["cost"] = (into["cost"] or 0.0) + float(spent["cost"])


def _loaded(blob: bytes) -> Any:
    try:
        return pickle.loads(blob)
    except Exception:
        logger.warning("checkpoint: a saved spend does not load; it is not counted", exc_info=True)
        return None


@dataclass(frozen=True, slots=True)
class Opened:
    conn: sqlite3.Connection
    blobs: dict[tuple[str, str], bytes]
    lock: RunLock
    identity: tuple[int, int]
    """The file's device and inode: the writer checks the file is still there."""


def check_file(file: Path, identity: tuple[int, int]) -> None:
    """Raise if ``file`` was removed or replaced since it had ``identity`` (device, inode):
    what was committed to it went nowhere."""
    try:
        stat = os.stat(file)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"checkpoint file {file} was removed while the run wrote to it"
        ) from None
    if (stat.st_dev, stat.st_ino) != identity:
        raise FileExistsError(
            f"checkpoint file {file} was replaced by another file while the run wrote to it"
        )


def open_run(
    file: Path, run_id: str, fingerprint: str, on_mismatch: OnMismatch, restart: bool
) -> Opened:
    """Take the run's lock, then open the file and claim the run; on any failure, let go
    of what was taken (the writer thread releases both once it has started)."""
    lock = RunLock.take(file, run_id)
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(file)
        stat = os.stat(file)
        conn.execute("BEGIN IMMEDIATE")
        blobs = _claim_run(conn, file, run_id, fingerprint, on_mismatch, restart)
        conn.execute("COMMIT")
        return Opened(conn, blobs, lock, (stat.st_dev, stat.st_ino))
    except BaseException as exc:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        lock.release()
        if isinstance(exc, sqlite3.Error | OSError):
            raise CheckpointError(f"cannot open checkpoint file {file}: {exc}") from exc
        raise


def _claim_run(
    conn: sqlite3.Connection,
    file: Path,
    run_id: str,
    fingerprint: str,
    on_mismatch: OnMismatch,
    restart: bool,
) -> dict[tuple[str, str], bytes]:
    """Create, resume or restart the run record; return its saved entries."""
    now = time.time()
    row = conn.execute("SELECT fingerprint FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO runs (run_id, fingerprint, created_at, updated_at, status) "
            "VALUES (?, ?, ?, ?, 'running')",
            (run_id, fingerprint, now, now),
        )
        logger.info("checkpoint %s: new run %r", file, run_id)
        return {}
    if row[0] != fingerprint or restart:
        (count,) = conn.execute(f"SELECT {SAVED_COUNT.format(run='?1')}", (run_id,)).fetchone()
        if on_mismatch == "error" and not restart:
            raise CheckpointMismatchError(
                run_id=run_id,
                file=file,
                stored_fingerprint=row[0],
                fingerprint=fingerprint,
                entries=count,
            )
        conn.execute("DELETE FROM entries WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM chunks WHERE run_id = ?", (run_id,))
        conn.execute(
            "UPDATE runs SET fingerprint = ?, created_at = ?, updated_at = ?, status = 'running' "
            "WHERE run_id = ?",
            (fingerprint, now, now, run_id),
        )
        logger.warning(
            "checkpoint %s: run %r %s; deleted %d saved result(s) and restarting",
            file,
            run_id,
            "restarted" if restart else "changed",
            count,
        )
        return {}
    conn.execute(
        "UPDATE runs SET status = 'running', updated_at = ? WHERE run_id = ?", (now, run_id)
    )
    blobs: dict[tuple[str, str], bytes] = {}
    spent: dict[str, dict[str, Any]] = {}
    rests: dict[str, dict[str, Any]] = {}
    for path, digest, value, spend, _ in saved_entries(conn, run_id):
        if spend is not None:
            _add_spend(spent, json.loads(spend))
        if path == SPEND_PATH:
            _add_spend(rests, _loaded(value))
        else:
            blobs[path, digest] = value
    # The rests of earlier openings become one row; this opening writes its own rest.
    conn.execute("DELETE FROM entries WHERE run_id = ? AND path = ?", (run_id, SPEND_PATH))
    if rests:
        conn.execute(
            "INSERT INTO entries (run_id, path, digest, value, finished_at) VALUES (?, ?, ?, ?, ?)",
            (run_id, SPEND_PATH, "earlier", pickle.dumps(rests, protocol=5), now),
        )
    _add_spend(spent, rests)
    if spent:
        blobs[SPEND_PATH, SPEND_KEY] = pickle.dumps(spent, protocol=5)
    logger.info("checkpoint %s: resuming run %r with %d saved result(s)", file, run_id, len(blobs))
    return blobs
