"""A checkpoint store in a SQLite file: finished results survive a killed process.

Durability: the file uses WAL with ``synchronous=NORMAL``. A committed
transaction survives the process being killed (even by SIGKILL); a power loss
or OS crash may lose the last few commits, never corrupt the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import pickle
import sqlite3
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio.to_thread

from hush.checkpoint.errors import CheckpointError, CheckpointMismatchError, CheckpointValueError
from hush.checkpoint.lock import RunLock
from hush.checkpoint.schema import connect
from hush.checkpoint.writer import (
    MAX_BATCH,
    Barrier,
    Close,
    Entry,
    Many,
    Status,
    Writer,
    WriterStats,
)

logger = logging.getLogger("hush.checkpoint")

OnMismatch = Literal["error", "restart"]

_SHUTDOWN_TIMEOUT_S = 30.0


class SQLiteCheckpointStore:
    """Finished results of one run, read from memory and written by a background thread.

    Create it with :func:`open_checkpoint`. ``get`` is a dictionary lookup;
    ``put`` pickles the value and buffers it; the buffer is handed to the
    writer thread once per event-loop iteration (or every :data:`MAX_BATCH`
    entries), so the thread wakes once per batch rather than once per entry,
    and commits whatever it has in one transaction. A result is durable within
    one loop iteration and one commit (typically a few milliseconds).
    """

    def __init__(
        self,
        *,
        file: Path,
        run_id: str,
        fingerprint: str,
        blobs: dict[tuple[str, str], bytes],
        writer: Writer,
    ) -> None:
        self.file = file
        self.run_id = run_id
        self.fingerprint = fingerprint
        self.restored = len(blobs)
        self._blobs = blobs
        self._paths: set[str] = set()
        self._prefixes: set[str] = set()
        for path, _ in blobs:
            self._note(path)
        self._writer = writer
        self._closed = False
        self._pending: list[Entry] = []
        self._pending_waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer = weakref.finalize(self, writer.shutdown, _SHUTDOWN_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"<SQLiteCheckpointStore run_id={self.run_id!r} file={str(self.file)!r}>"

    def __len__(self) -> int:
        return len(self._blobs)

    @property
    def stats(self) -> WriterStats:
        """Transactions committed and entries written by this store so far."""
        return self._writer.stats

    @property
    def failed(self) -> bool:
        """Whether a write has failed (nothing more will be saved)."""
        return self._writer.failed

    def has(self, path: str) -> bool:
        """Whether anything was saved under ``path`` (for any inputs) when the store opened."""
        return path in self._paths

    def has_under(self, prefix: str) -> bool:
        """Whether anything was saved below ``prefix`` (a path ending in ``/``, or ``""`` for
        anything at all) when the store opened."""
        return prefix in self._prefixes

    def _note(self, path: str) -> None:
        self._paths.add(path)
        self._prefixes.add("")
        cut = path.rfind("/")
        while cut > 0:
            prefix = path[: cut + 1]
            if prefix in self._prefixes:
                break
            self._prefixes.add(prefix)
            cut = path.rfind("/", 0, cut)

    def get(self, path: str, digest: str) -> Any | None:
        """Return a fresh copy of the result saved under ``path`` for inputs ``digest``, or ``None``.

        Lookups see what the file held when the store was opened (what a resumed
        run reuses); results put since are written to the file, not kept in memory.

        A saved result that no longer unpickles (its class changed or moved) is
        logged and treated as missing, so that work runs again.
        """
        blob = self._blobs.get((path, digest))
        if blob is None:
            return None
        try:
            return pickle.loads(blob)
        except Exception:
            logger.warning(
                "checkpoint %s: cannot load the saved result of %r in run %r; running it again",
                self.file,
                path,
                self.run_id,
                exc_info=True,
            )
            return None

    def put(self, path: str, digest: str, value: Any) -> None:
        """Save ``value`` under ``path`` and ``digest``; returns at once, the commit follows shortly.

        Raises :class:`CheckpointValueError` if ``value`` cannot be pickled and
        :class:`CheckpointWriteError` if an earlier write failed.
        """
        blob = self._prepare(path, digest, value)
        self._buffer((path, digest, blob, 0.0, None, None), durable=False)

    async def put_durable(self, path: str, digest: str, value: Any) -> None:
        """Save ``value`` under ``path`` and ``digest``; return once it is committed."""
        await self.put_pending(path, digest, value)

    def put_pending(
        self, path: str, digest: str, value: Any, spend: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Save ``value`` under ``path`` and ``digest``; return a future done once it is committed.

        ``spend`` (what the work's LLM calls spent, per resource) is saved in the same
        row: a resumed run counts it (see :func:`open_checkpoint`). Each call gets its
        own future (cancelling it affects nobody else); the futures of one batch are
        settled by the one commit that holds it.
        """
        return self.put_pickled(path, digest, self._prepare(path, digest, value), spend)

    def put_pickled(
        self, path: str, digest: str, blob: bytes, spend: Mapping[str, Any] | None = None
    ) -> asyncio.Future[None]:
        """Like :meth:`put_pending` for a value pickled already (``pickle`` protocol 5)."""
        if self._closed or self._writer.failed:
            self._check_open()
        spent = None if not spend else json.dumps(spend, separators=(",", ":"))
        waiter = self._buffer((path, digest, blob, 0.0, spent, None), durable=True)
        assert waiter is not None
        return waiter

    def _buffer(self, entry: Entry, *, durable: bool) -> asyncio.Future[None] | None:
        """Add ``entry`` to this loop iteration's batch; return a future of its commit."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        self._pending.append(entry)
        waiter = None
        if durable:
            waiter = loop.create_future()
            self._pending_waiters.append(waiter)
        if len(self._pending) >= MAX_BATCH:
            self._submit_pending()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._submit_pending)
        return waiter

    def _submit_pending(self) -> None:
        """Hand the buffered batch (and its waiters) to the writer thread."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        entries, waiters = self._pending, self._pending_waiters
        self._pending, self._pending_waiters = [], []
        if not entries and not waiters:
            return
        assert self._loop is not None
        self._writer.submit(Many(entries, waiters, self._loop, time.time()))

    async def flush(self) -> None:
        """Return once everything put so far is committed."""
        self._check_open()
        self._submit_pending()
        future = self._new_waiter()
        self._writer.submit(Barrier((future, asyncio.get_running_loop())))
        await future

    def mark_finished(self, status: str = "ok") -> None:
        """Record the run's final status (for example ``ok``, ``error``, ``cancelled``)."""
        if not isinstance(status, str) or not status:
            raise ValueError(f"status must be a non-empty string, not {status!r}")
        self._check_open()
        self._submit_pending()
        self._writer.submit(Status(status, time.time()))

    async def aclose(self) -> None:
        """Commit everything still queued and close the file.

        Raises :class:`CheckpointWriteError` if any write failed. Closing twice
        does nothing.
        """
        if self._closed:
            return
        self._submit_pending()
        self._closed = True
        future = self._new_waiter()
        self._writer.submit(Close((future, asyncio.get_running_loop())))
        await future
        self._finalizer.detach()
        if self._writer.failed:
            raise self._writer.error()

    async def __aenter__(self) -> SQLiteCheckpointStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"checkpoint store of run {self.run_id!r} is closed")
        if self._writer.failed:
            raise self._writer.error()

    def _prepare(self, path: str, digest: str, value: Any) -> bytes:
        if self._closed or self._writer.failed:
            self._check_open()
        try:
            blob = pickle.dumps(value, protocol=5)
        except Exception as exc:
            raise CheckpointValueError(
                f"cannot checkpoint the result of {path!r}: it does not pickle ({exc})"
            ) from exc
        return blob

    @staticmethod
    def _new_waiter() -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()


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
class _Opened:
    conn: sqlite3.Connection
    blobs: dict[tuple[str, str], bytes]
    lock: RunLock
    identity: tuple[int, int]
    """The file's device and inode: the writer checks the file is still there."""


async def open_checkpoint(
    path: str | os.PathLike[str],
    run_id: str,
    fingerprint: str,
    *,
    on_mismatch: OnMismatch = "error",
    restart: bool = False,
) -> SQLiteCheckpointStore:
    """Open (or create) the checkpoint file ``path`` and the run ``run_id`` in it.

    One file holds any number of runs. If ``run_id`` was saved with another
    ``fingerprint`` (see :func:`hush.checkpoint.fingerprint`), raise
    :class:`CheckpointMismatchError`, or with ``on_mismatch="restart"`` delete
    its saved results and start it over. ``restart=True`` deletes them whatever
    the fingerprint (a run started over on purpose). The run's saved results are loaded
    into memory; all file work happens off the event loop. A run is taken by one process
    at a time (:class:`~hush.checkpoint.lock.RunLockedError` for a second one).

    What the run spent (the spend saved with its results, and the rests written under
    ``SPEND_PATH``) is read back summed, as the value of ``get(SPEND_PATH, SPEND_KEY)``;
    an opening's own rest is then written there again.
    """
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, not {run_id!r}")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(f"fingerprint must be a non-empty string, not {fingerprint!r}")
    if on_mismatch not in ("error", "restart"):
        raise ValueError(f"on_mismatch must be 'error' or 'restart', not {on_mismatch!r}")
    file = Path(path).expanduser()
    opened = await anyio.to_thread.run_sync(
        functools.partial(_open_run, file, run_id, fingerprint, on_mismatch, restart)
    )
    writer = Writer(opened.conn, run_id, file, lock=opened.lock, identity=opened.identity)
    writer.start()
    return SQLiteCheckpointStore(
        file=file, run_id=run_id, fingerprint=fingerprint, blobs=opened.blobs, writer=writer
    )


def _open_run(
    file: Path, run_id: str, fingerprint: str, on_mismatch: OnMismatch, restart: bool
) -> _Opened:
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
        return _Opened(conn, blobs, lock, (stat.st_dev, stat.st_ino))
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
        (count,) = conn.execute(
            "SELECT count(*) FROM entries WHERE run_id = ? AND path NOT LIKE '$%'", (run_id,)
        ).fetchone()
        if on_mismatch == "error" and not restart:
            raise CheckpointMismatchError(
                run_id=run_id,
                file=file,
                stored_fingerprint=row[0],
                fingerprint=fingerprint,
                entries=count,
            )
        conn.execute("DELETE FROM entries WHERE run_id = ?", (run_id,))
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
    for path, digest, value, spend in conn.execute(
        "SELECT path, digest, value, spend FROM entries WHERE run_id = ?", (run_id,)
    ):
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
