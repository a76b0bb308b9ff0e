"""A checkpoint store in a SQLite file: finished results survive a killed process.

Durability: the file uses WAL with ``synchronous=NORMAL``. A committed
transaction survives the process being killed (even by SIGKILL); a power loss
or OS crash may lose the last few commits, never corrupt the file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import pickle
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread

from hush.checkpoint.buffer import Buffer
from hush.checkpoint.claim import SPEND_KEY, SPEND_PATH, OnMismatch, open_run
from hush.checkpoint.commits import Commits
from hush.checkpoint.errors import CheckpointValueError
from hush.checkpoint.handover import Refused
from hush.checkpoint.ops import Barrier, Close, Status, WriterStats
from hush.checkpoint.renamed import RenamedMethods
from hush.checkpoint.schema import CHUNK_ROW
from hush.checkpoint.transactions import MAX_BATCH
from hush.checkpoint.writer import Writer

logger = logging.getLogger("hush.checkpoint")

__all__ = ["SPEND_KEY", "SPEND_PATH", "OnMismatch", "SQLiteCheckpointStore", "open_checkpoint"]

_SHUTDOWN_TIMEOUT_S = 30.0
_FULL = MAX_BATCH * CHUNK_ROW
_NOW = 64 * CHUNK_ROW
_JSON = (",", ":")


def _not_saved(path: str, why: str) -> None:
    logger.warning("checkpoint: %s is not saved: %s; it will run again on resume", path, why)


class SQLiteCheckpointStore(RenamedMethods):
    """Finished results of one run, read from memory and written in batches.

    Create it with :func:`open_checkpoint`. ``load`` is a dictionary lookup;
    ``queue`` pickles the value, buffers it and returns its number (``queue_result``
    buffers a map item's result as it is: the buffer's results are pickled together when it
    is handed over, :mod:`hush.checkpoint.handover`) at the end of the event-loop turn (or
    past :data:`MAX_BATCH` entries), one batch per transaction, committed on the loop or
    by the writer thread (:mod:`hush.checkpoint.writer`; gathered for the writer's pause
    after a commit). A result is durable within a few milliseconds:
    ``committed(n)`` tells, ``durable(n)`` waits (without suspending when it is);
    ``save`` is ``queue`` with a future of that commit.
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
        self._commits = Commits()
        self._buffer = Buffer(self._commits)
        """What was queued since the last hand-over (the writer takes what is left when it
        closes without :meth:`aclose`)."""
        writer.leftovers = functools.partial(self._buffer.take, _not_saved)
        self.refused: Refused = _not_saved
        """Told (path, why) when a result of :meth:`queue_result` does not pickle."""
        self._flush_handle: asyncio.Handle | None = None
        self._want = 0
        """The highest entry number someone waits for (the writer does not rest before it)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer = weakref.finalize(self, writer.shutdown, _SHUTDOWN_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"<SQLiteCheckpointStore run_id={self.run_id!r} file={str(self.file)!r}>"

    def __len__(self) -> int:
        return len(self._blobs)

    @property
    def stats(self) -> WriterStats:
        """Transactions committed, entries written and commits waited for so far."""
        return dataclasses.replace(self._writer.stats, waits=self._commits.waits)

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

    def load(self, path: str, digest: str) -> Any | None:
        """Return a fresh copy of the result saved under ``path`` for inputs ``digest``, or ``None``.

        Lookups see what the file held when the store was opened (what a resumed
        run reuses); results saved since are written to the file, not kept in memory.

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

    def save(
        self,
        path: str,
        digest: str,
        value: Any,
        *,
        usage: Mapping[str, Any] | None = None,
        pickled: bool = False,
    ) -> asyncio.Future[None]:
        """Save ``value`` under ``path`` and ``digest``; return a future done once it is committed.

        Returns at once: await the future to wait for the commit, or drop it (a failed
        write is raised by every later call and by :meth:`aclose`). Each call gets a future
        of its own (cancelling it affects nobody else), and is committed without the rest
        the writer takes between commits of entries nobody waits for. See :meth:`queue`.
        """
        number = self.queue(path, digest, value, usage=usage, pickled=pickled)
        self._wanted(number)
        return self._commits.waiter(number)

    def queue(
        self,
        path: str,
        digest: str,
        value: Any,
        *,
        usage: Mapping[str, Any] | None = None,
        pickled: bool = False,
    ) -> int:
        """Queue ``value`` under ``path`` and ``digest``; return its number, for
        :meth:`committed` and :meth:`durable`.

        ``pickled``: ``value`` is bytes pickled already (protocol 5). ``usage`` (what the
        work consumed, per resource) is saved in the same row: a resumed run counts it (see
        :func:`open_checkpoint`). Raises :class:`CheckpointValueError` if ``value`` does
        not pickle and :class:`CheckpointWriteError` if an earlier write failed.
        """
        if self._closed or self._writer.failed:
            self._check_open()
        if pickled:
            blob = value if type(value) is bytes else bytes(value)
        else:
            try:
                blob = pickle.dumps(value, protocol=5)
            except Exception as exc:
                raise CheckpointValueError(
                    f"cannot checkpoint the result of {path!r}: it does not pickle ({exc})"
                ) from exc
        spent = None if not usage else json.dumps(usage, separators=(",", ":"))
        if path[:1] == "$":
            self._buffer.keyed += (path, digest, blob, 0.0, spent)
        else:
            self._buffer.rows += (path, digest, blob, spent)
        return self._buffered()

    def queue_result(
        self, path: str, digest: str, value: Any, usage: Mapping[str, Any] | None, shown: str
    ) -> int:
        """:meth:`queue` for a result pickled with the rest of its loop turn's when they are
        handed over (:mod:`hush.checkpoint.handover`): a value that does not pickle is not
        saved and is reported to :attr:`refused` as ``shown`` instead of raising; what
        ``usage`` says it spent is saved all the same. ``path`` does not start with ``$``."""
        if self._closed or self._writer.failed:
            self._check_open()
        buffer = self._buffer
        rows = buffer.rows
        buffer.raw.append((len(rows) + 2, shown))
        rows += (path, digest, value, None if not usage else json.dumps(usage, separators=_JSON))
        return self._buffered()

    def _buffered(self) -> int:
        """Number the entry just buffered; hand the buffer over at the end of this loop turn
        (or now, when it holds :data:`MAX_BATCH` results: numbered first, so that the batch
        handed over covers it)."""
        commits = self._commits
        commits.issued += 1
        if len(self._buffer.rows) >= _FULL:
            self._submit_pending()
        elif self._flush_handle is None or self._loop is not asyncio.get_running_loop():
            self._schedule()
        return commits.issued

    def _schedule(self) -> None:
        """Hand the buffer over at the end of this loop turn (a hand-over scheduled on a loop
        that has since stopped or closed is dropped: its entries go with this one)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        loop = self._loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_soon(self._turn_ended)

    def committed(self, number: int) -> bool:
        """Whether entry ``number`` (from :meth:`queue`) is committed."""
        return self._commits.committed >= number

    async def durable(self, number: int) -> None:
        """Return once entry ``number`` is committed; raise :class:`CheckpointWriteError`
        if the writer failed before. A buffer of :data:`_NOW` results or more is handed over
        now (a map's full window: committed on the loop, no suspension), a smaller one at
        the end of the turn, so that its waits share a commit (a fan of nodes)."""
        if (
            self._commits.committed < number
            and len(self._buffer.rows) >= _NOW
            and self._flush_handle is not None
        ):
            self._submit_pending()
        self._wanted(number)
        await self._commits.wait(number)

    def _wanted(self, number: int) -> None:
        """Someone waits for entry ``number``: it is handed over at the end of this loop
        turn (a gathering, or a hand-over left on a loop since stopped, is cut short), and
        the writer thread does not rest before committing it."""
        if self._commits.committed < number:
            self._want = max(self._want, number)
            late = isinstance(self._flush_handle, asyncio.TimerHandle)
            if late or self._loop is not asyncio.get_running_loop():
                self._schedule()
            self._writer.hurry()

    def _turn_ended(self) -> None:
        """The turn that buffered entries ended: hand them over, or (the loop would commit
        them, nobody waits, its last commit ended under the writer's pause ago) at the end
        of that pause, with what the turns until then add."""
        self._flush_handle = None
        writer = self._writer
        if self._want <= self._commits.committed and writer.idle(self._commits):
            rest = writer.run_file.committed_at + writer.pause - time.monotonic()
            if rest > 0 and self._loop is not None:
                self._flush_handle = self._loop.call_later(rest, self._submit_pending)
                return
        self._submit_pending()

    def _submit_pending(self) -> None:
        """Hand the buffered batch over: committed on this thread if the writer is idle
        (:meth:`~hush.checkpoint.writer.Writer.commit_here`), else by the writer thread."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        many = self._buffer.take(self.refused)
        if many is None:
            return
        writer = self._writer
        if writer.commit_here(many):
            return
        writer.submit(many)
        if self._want > self._commits.committed:
            # The writer may have taken (and cleared) the hurry for an earlier batch.
            writer.hurry()

    async def flush(self) -> None:
        """Return once everything saved so far is committed."""
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
        stats = self.stats
        logger.debug("checkpoint %s closed: %s", self.file, stats, extra={"checkpoint": stats})
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

    @staticmethod
    def _new_waiter() -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()


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
    ``SPEND_PATH``) is read back summed, as the value of ``load(SPEND_PATH, SPEND_KEY)``;
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
        functools.partial(open_run, file, run_id, fingerprint, on_mismatch, restart)
    )
    writer = Writer(opened.conn, run_id, file, lock=opened.lock, identity=opened.identity)
    writer.start()
    return SQLiteCheckpointStore(
        file=file, run_id=run_id, fingerprint=fingerprint, blobs=opened.blobs, writer=writer
    )
