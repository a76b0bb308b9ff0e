"""A response cache: LLM answers kept in SQLite, reused when the same request comes again.

The key of a request is the SHA-256 of its canonical JSON: the resource's model
name, the messages, and every generation parameter sent (``temperature``,
``max_tokens``, ``tools``, ``extra_body`` ...), with a pydantic
``response_format`` as its JSON schema. The endpoint and API key are not part of
it: the same model asked the same thing through two resources shares an entry.
Only complete, successful answers are stored (not a reply cut off by the token
limit or stopped by the content filter, unless asked), committed by a
:class:`~hush.background.BackgroundWriter` of the cache's own within
milliseconds (a crash loses at most the last few), in a WAL-mode file that
concurrent runs and processes can share.

Clear it with ``hush cache clear PATH``, :meth:`ResponseCache.clear`, or by
deleting the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hush.background import BackgroundWriter

logger = logging.getLogger(__name__)

KEY_VERSION = 1
"""Part of every key: bumped when the way keys are formed changes."""

INCOMPLETE = frozenset({"length", "content_filter"})
"""``finish_reason`` values of a reply that is not a whole answer (not cached by default)."""
MAX_QUEUED = 10_000
"""Answers that may wait for the cache's writer; more are not stored (one warning)."""
BATCH = 500
"""Answers committed in one transaction at most."""
EXIT_TIMEOUT_S = 30.0
"""How long interpreter exit waits for the answers an open cache still holds."""

Row = tuple[str, str, str]
"""``(key, model, answer as JSON)``"""


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
    written by a background writer of the cache's own, many per commit, a few
    milliseconds after they arrive; until then :meth:`get` finds them in memory.
    :meth:`flush` waits until everything stored is committed; the engine flushes at the
    end of each run, and an open cache is closed (committed) at interpreter exit. Storing
    never blocks the event loop: past :data:`MAX_QUEUED` answers waiting for the writer,
    answers are not stored (one warning).

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
        self._db = writer
        self._writer = BackgroundWriter[Row](
            self._commit,
            name=f"hush-response-cache[{self.path.name}]",
            maxsize=MAX_QUEUED,
            batch_size=BATCH,
            exit_timeout=EXIT_TIMEOUT_S,
            on_error="count",
            on_failure=self._write_failed,
            rejected=lambda batch, exc: self._forget(batch),
            on_close=writer.close,
        )

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
        if not self._writer.offer((key, model, text)):
            self._forget([(key, model, text)])
            if self._off is None:
                self._warn(
                    "full",
                    "fell behind (%s): answers are not stored, calls are sent next time",
                    f"{MAX_QUEUED} answers waiting for its writer",
                )

    def _keeps(self, answer: Mapping[str, Any]) -> bool:
        return self.store_incomplete or answer.get("finish_reason") not in INCOMPLETE

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every answer stored so far is committed; ``False`` on timeout."""
        if self._closed:
            return True
        return self._writer.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` without blocking the event loop."""
        if self._closed:
            return True
        return await self._writer.aflush(timeout)

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
        self._closed = True
        self._writer.close()
        with self._read_lock:
            self._reader.close()

    def _warn(self, what: str, message: str, cause: object) -> None:
        """Log ``message`` about this cache once per kind of trouble ``what``."""
        with self._pending_lock:
            if what in self._warned:
                return
            self._warned.add(what)
        logger.warning("response cache %s " + message, self.path, cause)

    def _commit(self, batch: list[Row]) -> None:
        """Store ``batch`` in one transaction (in the writer's thread)."""
        now = time.time()
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO answers (key, model, created, answer) VALUES (?, ?, ?, ?)",
                [(key, model, now, text) for key, model, text in batch],
            )
            self._db.commit()
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()
            raise
        finally:
            self._forget(batch)

    def _write_failed(self, exc: BaseException) -> None:
        """A write failed: the cache is off for the rest of its life (one warning)."""
        self._off = exc if isinstance(exc, sqlite3.Error) else sqlite3.Error(repr(exc))
        with self._pending_lock:
            self._pending.clear()
        self._warn(
            "write",
            "cannot store answers (%s): the cache is off for the rest of this run, calls are sent",
            exc,
        )

    def _forget(self, batch: list[Row]) -> None:
        """Drop ``batch`` from the answers :meth:`get` finds in memory (unless replaced)."""
        with self._pending_lock:
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
