"""How a run uses its checkpoint store: content keys, lookups, saves and deferred saves.

A result is saved under its path and a digest of the inputs it ran with, and
reused only for the same inputs. Inside a map item, nodes are not saved one by
one while the item runs: their entries travel up with their outcome and are
written only if the item fails (so a resumed item redoes only what failed);
a clean item is saved whole instead. Saving never fails the work: a value that
does not pickle costs a warning, and a write failure is kept for the run's
record while the run goes on with its results in memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.checkpoint.errors import CheckpointValueError, CheckpointWriteError, UnstableValueError
from hush.checkpoint.hashing import digest
from hush.core.errors import NodeError

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore

logger = logging.getLogger("hush.checkpoint")
_INDEX = re.compile(r"\[\d+\]")


class Pending(NamedTuple):
    """A finished node's entry, written only if its map item does not finish clean."""

    path: str
    inputs: Mapping[str, Any]
    value: Mapping[str, Any]


class RunCheckpoint:
    """One run's view of its store."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.write_error: NodeError | None = None
        self._warned: set[str] = set()

    def key(self, path: str, inputs: Mapping[str, Any]) -> str | None:
        """The digest of ``inputs``, or ``None`` when they cannot be digested (warned once)."""
        try:
            return digest(inputs)
        except UnstableValueError as exc:
            self._warn_once(path, f"its inputs cannot be keyed ({exc})")
            return None

    def item_key(self, path: str, shared: str | None, own: Mapping[str, Any]) -> str | None:
        """The digest of an item's inputs: the map's shared inputs (digested once) and its own."""
        if shared is None:
            return None
        return self.key(path, {"\x00shared": shared, **own})

    def load(self, path: str, key: str | None) -> Mapping[str, Any] | None:
        """The result saved for ``path`` with these inputs, if any."""
        if key is None:
            return None
        value: Mapping[str, Any] | None = self.store.get(path, key)
        return value

    def saved(self, path: str, inputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Like :meth:`load`, digesting the inputs only when something is saved under ``path``."""
        if not self.store.has(path):
            return None
        return self.load(path, self.key(path, inputs))

    async def save(self, path: str, key: str | None, value: Mapping[str, Any]) -> None:
        """Save ``value`` and wait for its commit."""
        if key is None or self.write_error is not None:
            return
        try:
            await self.store.put_durable(path, key, dict(value))
        except CheckpointValueError as exc:
            self._warn_once(path, str(exc))
        except CheckpointWriteError as exc:
            self._failed(path, exc)

    async def commit(self, pending: list[Pending]) -> None:
        """Save the entries a failed item's clean nodes left, and wait for their commit."""
        if not pending or self.write_error is not None:
            return
        waiter: asyncio.Future[None] | None = None
        try:
            for entry in pending:
                key = self.key(entry.path, entry.inputs)
                if key is None:
                    continue
                try:
                    waiter = self.store.put_pending(entry.path, key, dict(entry.value))
                except CheckpointValueError as exc:
                    self._warn_once(entry.path, str(exc))
            if waiter is not None:
                await asyncio.shield(waiter)
        except CheckpointWriteError as exc:
            self._failed(pending[0].path, exc)

    def _failed(self, path: str, exc: CheckpointWriteError) -> None:
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
