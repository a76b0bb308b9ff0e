"""How a run uses its checkpoint store: content keys, lookups, saves and snapshots.

A result is saved under its path and a digest of the inputs it ran with (taken
before it runs), and reused only for the same inputs. Inside a map item, a
clean node's result is pickled the moment it finishes (a :class:`Snapshot`, so
that later changes to shared objects do not leak into it) but written only if
the item does not end clean; a clean item is saved whole, as one entry. Saving
never fails the work: a value that cannot be keyed or pickled costs a warning,
and a write failure is kept for the run's record while the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.checkpoint.digest import digest
from hush.checkpoint.errors import CheckpointValueError, CheckpointWriteError
from hush.core.errors import NodeError

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore

logger = logging.getLogger("hush.checkpoint")
_INDEX = re.compile(r"\[\d+\]")


class Snapshot(NamedTuple):
    """A clean node's result inside a map item, pickled when it finished."""

    path: str
    key: str
    blob: bytes


class RunCheckpoint:
    """One run's view of its store."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.resuming = store.has_under("")
        """The file held results of this run when it opened: lookups can find something."""
        self.write_error: NodeError | None = None
        self._warned: set[str] = set()

    def key(self, path: str, inputs: Mapping[str, Any]) -> str | None:
        """The digest of ``inputs``, or ``None`` when they cannot be digested (warned once)."""
        try:
            return digest(inputs)
        except Exception as exc:
            self._warn_once(path, f"its inputs cannot be keyed ({type(exc).__name__}: {exc})")
            return None

    def item_key(self, path: str, shared: str | None, own: Mapping[str, Any]) -> str | None:
        """The digest of an item's inputs: the map's shared inputs (digested once) and its own."""
        if shared is None:
            return None
        try:
            return digest((shared, own))
        except Exception as exc:
            self._warn_once(path, f"its inputs cannot be keyed ({type(exc).__name__}: {exc})")
            return None

    def load(self, path: str, key: str | None) -> Mapping[str, Any] | None:
        """The result saved for ``path`` with these inputs, if any."""
        if key is None or not self.resuming:
            return None
        value: Mapping[str, Any] | None = self.store.get(path, key)
        return value

    async def save(self, path: str, key: str | None, value: Mapping[str, Any]) -> None:
        """Save ``value`` and wait for its commit."""
        waiter = self.put(path, key, value)
        if waiter is not None:
            try:
                await waiter
            except CheckpointWriteError as exc:
                self.failed(path, exc)

    def put(
        self, path: str, key: str | None, value: Mapping[str, Any]
    ) -> asyncio.Future[None] | None:
        """Save ``value``; return the future of its commit (``None`` if it is not saved)."""
        if key is None or self.write_error is not None:
            return None
        try:
            return self.store.put_pending(path, key, value)
        except CheckpointValueError as exc:
            self._warn_once(path, str(exc))
        except CheckpointWriteError as exc:
            self.failed(path, exc)
        return None

    def snapshot(self, path: str, key: str | None, value: Mapping[str, Any]) -> Snapshot | None:
        """Pickle ``value`` now, to be written later if its map item does not end clean."""
        if key is None:
            return None
        try:
            return Snapshot(path, key, pickle.dumps(dict(value), protocol=5))
        except Exception as exc:
            self._warn_once(path, f"its result does not pickle ({exc})")
            return None

    def put_snapshots(self, snapshots: list[Snapshot]) -> asyncio.Future[None] | None:
        """Write the snapshots of an item that did not end clean; return the last commit."""
        if self.write_error is not None:
            return None
        waiter = None
        for snapshot in snapshots:
            try:
                waiter = self.store.put_pickled(snapshot.path, snapshot.key, snapshot.blob)
            except CheckpointWriteError as exc:
                self.failed(snapshot.path, exc)
                return None
        return waiter

    def failed(self, path: str, exc: CheckpointWriteError) -> None:
        """Keep the first write failure for the run's record; later saves are skipped."""
        if self.write_error is None:
            self.write_error = NodeError.from_exception(exc, path)
            logger.error("checkpoint: %s; the run goes on without saving", exc)

    def _warn_once(self, path: str, why: str) -> None:
        pattern = _INDEX.sub("[*]", path)
        if pattern not in self._warned:
            self._warned.add(pattern)
            logger.warning(
                "checkpoint: %s is not saved: %s; it will run again on resume", path, why
            )
