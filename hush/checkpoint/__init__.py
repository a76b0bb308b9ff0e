"""Checkpoint and resume: finished nodes and map items saved as they finish."""

from hush.checkpoint.digest import UndigestableError, digest
from hush.checkpoint.errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointValueError,
    CheckpointWriteError,
    UnknownRunError,
)
from hush.checkpoint.hashing import fingerprint
from hush.checkpoint.lock import RunLockedError
from hush.checkpoint.ops import WriterStats
from hush.checkpoint.reader import RunInfo, list_runs, load_entries
from hush.checkpoint.sqlite_store import SQLiteCheckpointStore, open_checkpoint
from hush.checkpoint.store import CheckpointStore

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointStore",
    "CheckpointValueError",
    "CheckpointWriteError",
    "RunInfo",
    "RunLockedError",
    "SQLiteCheckpointStore",
    "UndigestableError",
    "UnknownRunError",
    "WriterStats",
    "digest",
    "fingerprint",
    "list_runs",
    "load_entries",
    "open_checkpoint",
]
