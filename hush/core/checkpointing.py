"""How a run uses its checkpoint store: content keys, lookups, saves and snapshots.

A result is saved under its path and a digest of the inputs it ran with (taken
before it runs), and reused only for the same inputs. A map item (or loop
iteration) is named by its content, not its position: the k-th item whose
inputs have digest D is saved as ``<node>[D.k]``, and the nodes inside it
below that name, so an inserted, removed or reordered item costs only itself
(:class:`ItemKeys`; events keep the position). Inside a map item, a
clean node's result is pickled the moment it finishes (a :class:`Snapshot`, so
that later changes to shared objects do not leak into it) but written only if
the item does not end clean; a clean item is saved whole, as one entry (so the
node of a one-node item takes no snapshot: see ``Frame.fast``), pickled with the
other results of its loop turn (:mod:`hush.checkpoint.handover`). Saving
never fails the work: a value that cannot be keyed or pickled costs a warning,
and a write failure is kept for the run's record while the run goes on.
"""

from __future__ import annotations

import contextvars
import logging
import pickle
import re
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from itertools import islice
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.checkpoint.digest import digest, digest_after
from hush.checkpoint.errors import CheckpointValueError, CheckpointWriteError
from hush.core.errors import NodeError
from hush.core.extensions import flush_usage

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore

logger = logging.getLogger("hush.checkpoint")
_INDEX = re.compile(r"\[(?:\d+|[0-9a-f]+\.\d+)\]")
"""An item's position, or its content name, in a path (``[3]``, ``[<digest>.0]``)."""

current_store: contextvars.ContextVar[CheckpointStore | None] = contextvars.ContextVar(
    "hush_checkpoint_store", default=None
)
"""The running run's checkpoint store (``None`` outside a run or without a checkpoint):
where work that outlives a node, such as a submitted Batch API batch, keeps its records."""
UNCOMMITTED_PER_WORKER = 2
"""How many finished, uncommitted items a map may hold per worker before a worker waits
for a commit (:class:`SaveWindow`). Of 5,000 trivial items at cap 100 on a loaded
machine, one let about half wait, two at most a third, three almost none
(``benchmarks/bench_checkpoint.py``)."""


BLOCK_S = 0.001
"""How long keying one block of a map's items may hold the event loop before blocks shrink."""


class Snapshot(NamedTuple):
    """A clean node's result inside a map item, pickled when it finished."""

    path: str
    key: str
    blob: bytes


class RunCheckpoint:
    """One run's view of its store.

    Paths given to it are a run's paths, with item positions (``g/m[3]/llm``); it saves
    them under the content names of their items (``g/m[<digest>.0]/llm``) while those
    items run.
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.resuming = store.has_under("")
        """The file held results of this run when it opened: lookups can find something."""
        self.write_error: NodeError | None = None
        self._warned: set[str] = set()
        self._items: dict[str, str] = {}
        """The saved name of every item running now, by its path."""
        store.refused = self._warn_once

    def item_keys(self, path: str) -> ItemKeys:
        """The content keys of the items of iteration node ``path`` (one attempt of it)."""
        return ItemKeys(self, path)

    def saved_path(self, path: str) -> str:
        """Where ``path`` is saved: the positions of its items replaced by their content."""
        cut = path.rfind("]")
        if cut < 0:
            return path
        item = self._items.get(path[: cut + 1])
        return path if item is None else item + path[cut + 1 :]

    def name(self, path: str, saved: str) -> None:
        """Save what runs under item ``path`` as ``saved`` until :meth:`unname`."""
        self._items[path] = saved

    def unname(self, path: str) -> None:
        """Item ``path`` has ended (what it saved is named already)."""
        del self._items[path]

    def has_under(self, prefix: str) -> bool:
        """Whether the file held anything below ``prefix`` (a run's path ending in ``/``)."""
        return self.store.has_under(self.saved_path(prefix))

    def key(self, path: str, inputs: Mapping[str, Any]) -> str | None:
        """The digest of ``inputs``, or ``None`` when they cannot be digested (warned once)."""
        try:
            return digest(inputs)
        except Exception as exc:
            self._warn_once(path, f"its inputs cannot be keyed ({type(exc).__name__}: {exc})")
            return None

    def load_item(self, named: tuple[str, str]) -> Mapping[str, Any] | None:
        """The result saved for an item keyed ``named`` (:meth:`ItemKeys.take`), if any."""
        value: Mapping[str, Any] | None = self.store.load(named[1], named[0])
        return value

    def load(self, path: str, key: str | None) -> Mapping[str, Any] | None:
        """The result saved for ``path`` with these inputs, if any."""
        if key is None or not self.resuming:
            return None
        value: Mapping[str, Any] | None = self.store.load(self.saved_path(path), key)
        return value

    def save(
        self,
        path: str,
        key: str | None,
        value: Mapping[str, Any],
        usage: Mapping[str, Any] | None = None,
        *,
        rest: bool = False,
        saved: str | None = None,
    ) -> int | None:
        """Save ``value`` (with ``usage``, what its work consumed, in the same commit); return
        the number of its commit, for :meth:`saved` (``None`` if it is not saved). ``rest``:
        first write the run's usage that no saved work holds, so that what a node outside
        map items used is saved no later than its result. ``saved``: where ``path`` is saved,
        when the caller knows (an item's name), else :meth:`saved_path`."""
        if rest:
            flush_usage()
        if key is None or self.write_error is not None:
            return None
        try:
            return self.store.queue(saved or self.saved_path(path), key, value, usage=usage)
        except CheckpointValueError as exc:
            self._warn_once(path, str(exc))
        except CheckpointWriteError as exc:
            self.failed(path, exc)
        return None

    def save_item(
        self,
        path: str,
        named: tuple[str, str],
        value: Mapping[str, Any],
        usage: Mapping[str, Any] | None,
    ) -> int | None:
        """Save map item ``path``'s result whole under its name ``named``
        (:meth:`ItemKeys.take`), with ``usage``; pickled with its loop turn's others
        (:mod:`hush.checkpoint.handover`). Return its commit number, as :meth:`save`."""
        if self.write_error is not None:
            return None
        try:
            return self.store.queue_result(named[1], named[0], value, usage, path)
        except CheckpointWriteError as exc:
            self.failed(path, exc)
        return None

    def snapshot_of(self, path: str, key: str | None, value: Mapping[str, Any]) -> Snapshot | None:
        """``value`` pickled now, to be saved later if its map item does not end clean."""
        if key is None:
            return None
        try:
            return Snapshot(self.saved_path(path), key, pickle.dumps(dict(value), protocol=5))
        except Exception as exc:
            self._warn_once(path, f"its result does not pickle ({exc})")
            return None

    def save_snapshots(
        self, snapshots: Sequence[Snapshot], usage: Mapping[str, Any] | None = None
    ) -> int | None:
        """Save the snapshots of an item that did not end clean (the item's ``usage`` with
        the last); return the number of the last commit."""
        if self.write_error is not None:
            return None
        waiter = None
        last = len(snapshots) - 1
        for n, snapshot in enumerate(snapshots):
            try:
                waiter = self.store.queue(
                    snapshot.path,
                    snapshot.key,
                    snapshot.blob,
                    usage=usage if n == last else None,
                    pickled=True,
                )
            except CheckpointWriteError as exc:
                self.failed(snapshot.path, exc)
                return None
        return waiter

    async def saved(self, path: str, number: int | None) -> None:
        """Wait until what :meth:`save` returned is committed (a failure is kept for the run);
        no suspension when it is already."""
        if number is None or self.store.committed(number):
            return
        try:
            await self.store.durable(number)
        except CheckpointWriteError as exc:
            self.failed(path, exc)

    def failed(self, path: str, exc: CheckpointWriteError) -> None:
        """Keep the first write failure for the run's record; later saves are skipped."""
        if self.write_error is None:
            self.write_error = NodeError.from_exception(exc, path)
            logger.error("checkpoint: %s; the run goes on without saving", exc)

    def warn_once(self, path: str, why: str) -> None:
        """Log once per node (all items alike) that ``path`` is not saved, and why."""
        self._warn_once(path, why)

    def _warn_once(self, path: str, why: str) -> None:
        pattern = _INDEX.sub("[*]", path)
        if pattern not in self._warned:
            self._warned.add(pattern)
            logger.warning(
                "checkpoint: %s is not saved: %s; it will run again on resume", path, why
            )


class SaveWindow:
    """The finished items of one map whose commits are under way: at most
    :data:`UNCOMMITTED_PER_WORKER` per worker.

    A worker hands each finished item's commit number to :meth:`finished`, which returns
    at once while the map's uncommitted finished items are within the window and
    otherwise waits for the oldest (commits follow their numbers). So workers take their
    next items while earlier ones are committed (a commit waits for the GIL behind a busy
    loop for milliseconds), and a kill loses at most the ``workers`` items running and
    ``2 * workers`` finished ones.
    """

    __slots__ = ("_checkpoint", "_path", "_pending", "_size")

    def __init__(self, checkpoint: RunCheckpoint | None, path: str, workers: int) -> None:
        self._checkpoint = checkpoint
        self._path = path
        self._size = UNCOMMITTED_PER_WORKER * workers
        self._pending: deque[int] = deque()

    def finished(self, number: int | None) -> Coroutine[Any, Any, None] | None:
        """Item with commit ``number`` finished (``None``: nothing to commit); what to await
        while the map has more uncommitted finished items than the window holds (``None``:
        nothing, the usual case, so no coroutine is made)."""
        checkpoint = self._checkpoint
        if number is None or checkpoint is None:
            return None
        pending = self._pending
        pending.append(number)
        if len(pending) <= self._size:
            return None
        committed = checkpoint.store.committed
        over = pending[-self._size - 1]
        if not committed(over):
            return checkpoint.saved(self._path, over)
        # Commits follow their numbers: the committed ones are a prefix, found by halving and
        # dropped at once, so the next items fit in the window without asking.
        low, high = len(pending) - self._size, len(pending)
        while low < high:
            middle = (low + high) // 2
            if committed(pending[middle]):
                low = middle + 1
            else:
                high = middle
        for _ in range(low):
            pending.popleft()
        return None

    async def drained(self) -> None:
        """Return once every finished item is committed."""
        if self._pending and self._checkpoint is not None:
            await self._checkpoint.saved(self._path, self._pending[-1])
            self._pending.clear()


class ItemKeys:
    """The content keys of one iteration node's items, in one attempt of it.

    An item is keyed by the digest D of its inputs (the node's shared inputs,
    digested once, and its own) and by how many items before it had the same D:
    the k-th such item is saved as ``<node>[D.k]``, so duplicates keep answers
    of their own. Items are counted in input order: a map keys each as it takes
    it (:meth:`keyed`), a loop as it runs it.
    Only the hash of each D is remembered (about 70 bytes an item while the node
    runs); two different digests sharing one can only make an item miss its saved
    result, never take another's.
    """

    __slots__ = ("_checkpoint", "_path", "_ready", "_repeats", "_saved", "_seen", "_shared")

    def __init__(self, checkpoint: RunCheckpoint, path: str) -> None:
        self._checkpoint = checkpoint
        self._path = path
        self._shared: tuple[Mapping[str, Any], Callable[[object], str] | None] | None = None
        self._saved = ""
        """Where the node is saved (its enclosing items named while it runs)."""
        self._seen: set[int] = set()
        self._repeats: dict[str, int] = {}
        self._ready: dict[int, tuple[str, str] | None] = {}

    def keyed(
        self,
        items: Iterator[tuple[int, dict[str, Any]]],
        shared: Mapping[str, Any],
        ahead: int = 1,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``items`` (numbered), each keyed as it is taken: in input order, whichever
        worker runs it and whenever. With ``ahead`` > 1 they are taken and keyed up to that many
        at a time (for items already in memory: keying a block in one go runs its code warm),
        blocks halving while keying one takes over :data:`BLOCK_S` (large inputs) and growing
        back after; an error of ``items`` is raised after the items taken before it."""
        ready, key = self._ready, self.key
        if ahead <= 1:
            for index, own in items:
                ready[index] = key(shared, own)
                yield index, own
            return
        size = ahead
        while True:
            block: list[tuple[int, dict[str, Any]]] = []
            try:
                block.extend(islice(items, size))
            except Exception as exc:
                for index, own in block:
                    ready[index] = key(shared, own)
                yield from block
                raise exc
            if not block:
                return
            started = perf_counter()
            for index, own in block:
                ready[index] = key(shared, own)
            took = perf_counter() - started
            size = max(1, size // 2) if took > BLOCK_S else min(ahead, size * 2)
            yield from block

    def take(
        self, index: int, shared: Mapping[str, Any], own: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """Item ``index``'s key: the one given when it was taken, else the next one."""
        if index in self._ready:
            return self._ready.pop(index)
        return self.key(shared, own)

    def key(self, shared: Mapping[str, Any], own: Mapping[str, Any]) -> tuple[str, str] | None:
        """The digest of the next item's inputs and the name it is saved as; ``None`` when
        its inputs cannot be digested (warned once for the node)."""
        checkpoint = self._checkpoint
        if self._shared is None or self._shared[0] is not shared:
            head = checkpoint.key(f"{self._path}[*]", shared)
            self._shared = (shared, None if head is None else digest_after(head))
            self._saved = checkpoint.saved_path(self._path)
        digest_own = self._shared[1]
        if digest_own is None:
            return None
        try:
            key = digest_own(own)
        except Exception as exc:
            why = f"its inputs cannot be keyed ({type(exc).__name__}: {exc})"
            checkpoint.warn_once(f"{self._path}[*]", why)
            return None
        short = hash(key)
        count = 0
        if short in self._seen:
            count = self._repeats[key] = self._repeats.get(key, 0) + 1
        else:
            self._seen.add(short)
        return key, f"{self._saved}[{key}.{count}]"
