"""How a run uses its checkpoint store: content keys, lookups, saves and deferred saves.

A result is saved under its path and a digest of the inputs it ran with, and
reused only for the same inputs. Inside a map item, nodes are not saved one by
one while the item runs: a clean item is saved whole, and only an item with
failures inside saves its clean nodes, read back from its graph executions
(so a resumed item redoes only what failed, and a clean one costs one entry). Saving never fails the work: a value that
does not pickle costs a warning, and a write failure is kept for the run's
record while the run goes on with its results in memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from hush.checkpoint.errors import CheckpointValueError, CheckpointWriteError, UnstableValueError
from hush.checkpoint.hashing import digest
from hush.core.errors import NodeError, NodeInputError
from hush.core.inputs import OK, resolve_inputs

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.runtime import Frame

logger = logging.getLogger("hush.checkpoint")
_INDEX = re.compile(r"\[\d+\]")


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
        except UnstableValueError as exc:
            self._warn_once(path, f"its inputs cannot be keyed ({exc})")
            return None

    def item_key(self, path: str, shared: str | None, own: Mapping[str, Any]) -> str | None:
        """The digest of an item's inputs: the map's shared inputs (digested once) and its own."""
        if shared is None:
            return None
        try:
            return digest((shared, own))
        except UnstableValueError as exc:
            self._warn_once(path, f"its inputs cannot be keyed ({exc})")
            return None

    def load(self, path: str, key: str | None) -> Mapping[str, Any] | None:
        """The result saved for ``path`` with these inputs, if any."""
        if key is None or not self.resuming:
            return None
        value: Mapping[str, Any] | None = self.store.get(path, key)
        return value

    def saved(self, path: str, inputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Like :meth:`load`, digesting the inputs only when something is saved under ``path``."""
        if not self.resuming or not self.store.has(path):
            return None
        return self.load(path, self.key(path, inputs))

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

    def put_clean_nodes(self, frames: list[Frame]) -> asyncio.Future[None] | None:
        """Save the clean nodes of an item that did not end clean; return the last commit."""
        waiter = None
        for path, inputs, value in _clean_nodes(frames):
            waiter = self.put(path, self.key(path, inputs), value) or waiter
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


def _clean_nodes(frames: list[Frame]) -> Iterator[tuple[str, dict[str, Any], Mapping[str, Any]]]:
    """Path, inputs and outputs of every node that ran clean in these executions."""
    for frame in frames:
        for np in frame.plan.nodes:
            i = np.index
            if frame.status[i] != OK or i in frame.skip_save:
                continue
            try:
                inputs = resolve_inputs(frame, np)
            except NodeInputError:
                continue
            yield frame.path_of(np), inputs, frame.outputs[i]
