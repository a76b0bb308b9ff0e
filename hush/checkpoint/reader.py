"""Read-only inspection of a checkpoint file, for the CLI and for debugging.

Values are unpickled: only load checkpoint files you trust.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hush.checkpoint.chunks import SAVED_COUNT, saved_entries
from hush.checkpoint.errors import CheckpointError, UnknownRunError
from hush.checkpoint.schema import connect_readonly


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run recorded in a checkpoint file."""

    run_id: str
    fingerprint: str
    created_at: datetime
    updated_at: datetime
    status: str
    entries: int


def list_runs(path: str | os.PathLike[str]) -> list[RunInfo]:
    """Return the runs in the checkpoint file ``path``, most recently updated first."""
    with _reading(path) as conn:
        rows = conn.execute(
            "SELECT r.run_id, r.fingerprint, r.created_at, r.updated_at, r.status, "
            f"{SAVED_COUNT.format(run='r.run_id')} "
            "FROM runs r ORDER BY r.updated_at DESC, r.run_id"
        ).fetchall()
    return [
        RunInfo(
            run_id=run_id,
            fingerprint=fingerprint,
            created_at=datetime.fromtimestamp(created, UTC),
            updated_at=datetime.fromtimestamp(updated, UTC),
            status=status,
            entries=entries,
        )
        for run_id, fingerprint, created, updated, status, entries in rows
    ]


def load_entries(path: str | os.PathLike[str], run_id: str) -> dict[str, Any]:
    """Return the saved results of ``run_id`` by node or item path, in finishing order
    (not the run's own bookkeeping, kept under paths starting with ``$``).

    When a path was saved for several different inputs, the latest one is returned.
    """
    with _reading(path) as conn:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise UnknownRunError(f"no run {run_id!r} in checkpoint file {os.fspath(path)}")
        rows = sorted(
            (
                (finished_at, entry_path, blob)
                for entry_path, _, blob, _, finished_at in saved_entries(conn, run_id)
                if not entry_path.startswith("$")
            ),
            key=lambda row: row[:2],
        )
    entries: dict[str, Any] = {}
    for _, entry_path, blob in rows:
        try:
            entries[entry_path] = pickle.loads(blob)
        except Exception as exc:
            raise CheckpointError(
                f"cannot load the saved result of {entry_path!r} in run {run_id!r}: {exc}"
            ) from exc
    return entries


@contextlib.contextmanager
def _reading(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {os.fspath(path)}")
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint file {os.fspath(path)}: {exc}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint file {os.fspath(path)}: {exc}") from exc
    finally:
        conn.close()
