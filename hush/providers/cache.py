"""A response cache: LLM answers kept in SQLite, reused when the same request comes again.

The key of a request is the SHA-256 of its canonical JSON: the resource's model
name, the messages, and every generation parameter sent (``temperature``,
``max_tokens``, ``tools``, ``extra_body`` ...), with a pydantic
``response_format`` as its JSON schema. The endpoint and API key are not part of
it: the same model asked the same thing through two resources shares an entry.
Only complete, successful answers are stored (not a reply cut off by the token
limit or stopped by the content filter, unless asked), committed by a thread of the cache's own within
milliseconds (a crash loses at most the last few), in a WAL-mode file that
concurrent runs and processes can share.

Clear it with ``hush cache clear PATH``, :meth:`ResponseCache.clear`, or by
deleting the file.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KEY_VERSION = 1
"""Part of every key: bumped when the way keys are formed changes."""

INCOMPLETE = frozenset({"length", "content_filter"})
"""``finish_reason`` values of a reply that is not a whole answer (not cached by default)."""


def default_cache_path() -> Path:
    """``$HUSH_CACHE_DIR/llm-cache.sqlite``, else under ``$XDG_CACHE_HOME/hush`` or
    ``~/.cache/hush``."""
    base = os.environ.get("HUSH_CACHE_DIR")
    if base:
        return Path(base) / "llm-cache.sqlite"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "hush" / "llm-cache.sqlite"


def request_key(body: Mapping[str, Any]) -> str:
    """The cache key of a chat completion request body (see the module docstring)."""
    canonical = {"v": KEY_VERSION, **{k: _canonical(v) for k, v in body.items()}}
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {"pydantic": value.__name__, "schema": value.model_json_schema()}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


class ResponseCache:
    """LLM answers by request key, in the SQLite file at ``path`` (created if missing).

    Lookups read the file directly (WAL readers never wait for a writer). Answers are
    written by a thread of the cache's own, many per commit, a few milliseconds after
    they arrive; until then :meth:`get` finds them in memory. :meth:`flush` waits until
    everything stored is committed; the engine flushes at the end of each run, and an
    open cache is closed (committed) at interpreter exit.

    Only complete answers are stored: a reply whose ``finish_reason`` is ``length``
    (cut off by the token limit) or ``content_filter`` is not (nor found again, if an
    older cache holds one), unless ``store_incomplete=True``.

    A damaged file never fails a call: a file that is not a database or has a
    damaged page is a miss (one warning naming the file) and the calls are sent; a
    write that fails turns the cache off for the rest of the object's life (the run,
    when the engine opened it) with one warning. :meth:`__len__` and :meth:`clear`
    raise ``sqlite3.DatabaseError`` for a file that could not be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, store_incomplete: bool = False) -> None:
        self.path = Path(path)
        self.store_incomplete = store_incomplete
        self._read_lock = threading.Lock()
        self._pending: dict[str, str] = {}
        self._pending_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, str, str] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._warned: set[str] = set()
        self._off: sqlite3.Error | None = None
        """Why the cache is off (a damaged file, a failed write), or ``None``."""
        self._closed = False
        self._unopened: sqlite3.DatabaseError | None = None
        """Why the file could not be opened (not a database, damaged), or ``None``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer: sqlite3.Connection | None = None
        try:
            writer = _connect(self.path)
            writer.execute(
                "CREATE TABLE IF NOT EXISTS answers ("
                "key TEXT PRIMARY KEY, model TEXT NOT NULL, created REAL NOT NULL, "
                "answer TEXT NOT NULL)"
            )
            writer.commit()
            self._reader = _connect(self.path)
        except sqlite3.DatabaseError as exc:
            if writer is not None:
                writer.close()
            if not _damaged(exc):
                raise
            self._off = self._unopened = exc
            self._closed = True
            return
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer,), name="hush-response-cache", daemon=True
        )
        self._writer.start()
        atexit.register(self.close)

    def get(self, key: str) -> dict[str, Any] | None:
        """The complete answer stored under ``key``, or ``None`` (also when the file
        cannot be read: one warning, and the call is sent)."""
        text = self._pending.get(key)
        if text is None:
            if self._off is not None:
                if self._unopened is not None:
                    self._warn(
                        "open",
                        "is damaged (%s): it is not used, calls are sent. "
                        "Delete it to start a new cache",
                        self._unopened,
                    )
                return None
            try:
                with self._read_lock:
                    row = self._reader.execute(
                        "SELECT answer FROM answers WHERE key = ?", (key,)
                    ).fetchone()
            except sqlite3.Error as exc:
                self._warn("read", "cannot be read (%s): a miss, the call is sent", exc)
                return None
            if row is None:
                return None
            text = row[0]
        try:
            answer = json.loads(text)
        except ValueError:
            logger.warning("response cache %s: unreadable entry %s ignored", self.path, key)
            return None
        if not isinstance(answer, dict) or not self._keeps(answer):
            return None
        return answer

    def put(self, key: str, model: str, answer: Mapping[str, Any]) -> None:
        """Store ``answer`` under ``key`` (replacing an older one); committed shortly after.

        An incomplete answer (see the class docstring) is not stored, nor anything once
        the cache is off."""
        if self._off is not None or not self._keeps(answer):
            return
        if self._closed:
            raise RuntimeError(f"response cache {self.path} is closed")
        text = json.dumps(answer, ensure_ascii=False)
        with self._pending_lock:
            self._pending[key] = text
        self._queue.put((key, model, text))

    def _keeps(self, answer: Mapping[str, Any]) -> bool:
        return self.store_incomplete or answer.get("finish_reason") not in INCOMPLETE

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every answer stored so far is committed; ``False`` on timeout."""
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` without blocking the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def __len__(self) -> int:
        self._check_opened()
        self.flush()
        with self._read_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def clear(self, model: str | None = None) -> int:
        """Delete every answer (of ``model`` only, if given); return how many were deleted."""
        self._check_opened()
        self.flush()
        with self._read_lock:
            if model is None:
                deleted = self._reader.execute("DELETE FROM answers").rowcount
            else:
                deleted = self._reader.execute(
                    "DELETE FROM answers WHERE model = ?", (model,)
                ).rowcount
            self._reader.commit()
        return int(deleted)

    def _check_opened(self) -> None:
        if self._unopened is not None:
            raise self._unopened

    def close(self) -> None:
        """Commit what is stored and close the file."""
        if self._closed:
            return
        atexit.unregister(self.close)
        self.flush()
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        with self._read_lock:
            self._reader.close()

    def _warn(self, what: str, message: str, exc: sqlite3.Error) -> None:
        """Log ``message`` about this cache once per kind of trouble ``what``."""
        with self._pending_lock:
            if what in self._warned:
                return
            self._warned.add(what)
        logger.warning("response cache %s " + message, self.path, exc)

    def _write_loop(self, db: sqlite3.Connection) -> None:
        while True:
            item = self._queue.get()
            batch: list[tuple[str, str, str]] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                if self._queue.empty() or len(batch) >= 500:
                    break
                item = self._queue.get()
            if batch and self._off is None:
                self._commit(db, batch)
            for waiter in waiters:
                waiter.set()
            if stop:
                db.close()
                return

    def _commit(self, db: sqlite3.Connection, batch: list[tuple[str, str, str]]) -> None:
        now = time.time()
        try:
            db.executemany(
                "INSERT OR REPLACE INTO answers (key, model, created, answer) VALUES (?, ?, ?, ?)",
                [(key, model, now, text) for key, model, text in batch],
            )
            db.commit()
        except sqlite3.Error as exc:
            self._off = exc
            self._warn(
                "write",
                "cannot store answers (%s): the cache is off for the rest of "
                "this run, calls are sent",
                exc,
            )
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
        with self._pending_lock:
            if self._off is not None:
                self._pending.clear()
            for key, _, text in batch:
                if self._pending.get(key) is text:
                    del self._pending[key]

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is not a database or is corrupt."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db
