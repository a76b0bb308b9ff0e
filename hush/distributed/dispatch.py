"""The driver's side of the workers: which items go to which worker, in which call.

An item goes to the least busy worker. Items queued for one worker while its calls
are busy go together in its next call (at most :data:`CALLS_PER_WORKER` calls in
flight per worker, :data:`MAX_BATCH` items per call), so small items share one
round trip and large ones still go one at a time. A call streams back its items'
events, budget requests and results as they happen, and ends as soon as each of
its items is settled, so no call outlives the run that made it.

The only retry here: an item whose worker died is sent again (to a fresh worker)
up to ``max_item_retries`` times, then it is an item error. LLM requests are
retried by the client and nodes by their lifecycle, never by this module.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from hush.core.errors import NodeError, NodeInputError
from hush.core.runtime import GraphOutcome
from hush.distributed.errors import item_error, lost_error
from hush.distributed.shipping import picklable

if TYPE_CHECKING:
    from hush.core.events import Event
    from hush.distributed.outbox import Message
    from hush.providers.spend import Hold, RunSpend

logger = logging.getLogger(__name__)

LOST_WORKER = (ActorDiedError, ActorUnavailableError, RayActorError)
CALLS_PER_WORKER = 2
"""Calls in flight per worker: one running, one queued behind it (no idle round trip)."""
MAX_BATCH = 64
"""Items in one call at most."""


@dataclass(eq=False)
class Item:
    """One item waiting for, or running in, a worker."""

    path: str
    state: dict[str, Any]
    body_id: str
    body_ref: Any
    run_id: str
    emit: Any
    spend: RunSpend | None
    future: asyncio.Future[GraphOutcome]
    attempts: int = 0
    call: asyncio.Task[None] | None = None
    """The call it is in, while it is in one."""

    @property
    def batch_key(self) -> tuple[Any, ...]:
        return (self.body_id, self.run_id, id(self.emit), id(self.spend), self.future.get_loop())


@dataclass(eq=False)
class Worker:
    """One worker actor and what the driver has queued for it."""

    handle: Any
    owner: str
    """Its name at the limiter actors (its permits are leased under it)."""
    pending: list[Item] = field(default_factory=list)
    calls: int = 0
    load: int = 0
    """Items queued or running in it."""
    kicked: bool = False


class WorkerPool:
    """The workers of one executor and the calls in flight to them (see the module
    docstring). ``start_worker`` makes a worker; ``cache_actor`` gives the cache actor of a
    run's spend (or ``None``); ``lost`` is told the owner name of each replaced worker."""

    def __init__(
        self,
        start_worker: Callable[[], Worker],
        cache_actor: Callable[[RunSpend | None], Any],
        lost: Callable[[str], None],
        max_item_retries: int,
    ) -> None:
        self.workers: list[Worker] = []
        self.max_item_retries = max_item_retries
        self._start_worker = start_worker
        self._cache_actor = cache_actor
        self._lost = lost
        self._calls: dict[asyncio.Task[None], _Call] = {}

    def submit(self, item: Item) -> None:
        """Queue ``item`` for the least busy worker."""
        worker = min(self.workers, key=lambda w: w.load)
        worker.pending.append(item)
        worker.load += 1
        self._kick(worker)

    def abandon(self, item: Item) -> None:
        """``item``'s run no longer waits for it: end its call if nothing else is in it."""
        task = item.call
        call = self._calls.get(task) if task is not None else None
        if task is not None and call is not None and not call.wanted():
            task.cancel()

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel the calls still in flight (a run abandoned without cancelling its map);
        return them (they end on their loop's next turns)."""
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        self._calls.clear()
        self.workers = []
        return calls

    def _kick(self, worker: Worker) -> None:
        """Send the worker's pending items at the end of this turn of the event loop (so
        that items queued in the same turn go in one call)."""
        if worker.pending and worker.calls < CALLS_PER_WORKER and not worker.kicked:
            worker.kicked = True
            worker.pending[0].future.get_loop().call_soon(self._dispatch, worker)

    def _dispatch(self, worker: Worker) -> None:
        worker.kicked = False
        if worker not in self.workers:
            for item in worker.pending:
                self._resend(item, None)
            worker.pending.clear()
            return
        while worker.pending and worker.calls < CALLS_PER_WORKER:
            cancelled = [item for item in worker.pending if item.future.done()]
            worker.load -= len(cancelled)
            worker.pending = [item for item in worker.pending if not item.future.done()]
            if not worker.pending:
                return
            key = worker.pending[0].batch_key
            batch = [item for item in worker.pending if item.batch_key == key][:MAX_BATCH]
            taken = set(map(id, batch))
            worker.pending = [item for item in worker.pending if id(item) not in taken]
            worker.calls += 1
            call = _Call(self, worker, batch)
            task = batch[0].future.get_loop().create_task(call.run())
            self._calls[task] = call
            task.add_done_callback(self._ended)
            for item in batch:
                item.call = task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._calls.pop(task, None)

    def _resend(self, item: Item, lost: BaseException | None) -> None:
        """Send an item of a lost worker again, or fail it after ``max_item_retries``."""
        item.call = None
        if item.future.done():
            return
        if lost is not None:
            item.attempts += 1
            if item.attempts > self.max_item_retries:
                item.future.set_result(failed(lost_error(item.path, item.attempts, lost)))
                return
        self.submit(item)

    def _replace(self, lost: Worker) -> None:
        """Replace a lost worker; its limiter leases are returned."""
        if lost not in self.workers:
            return
        index = self.workers.index(lost)
        self.workers[index] = fresh = self._start_worker()
        fresh.pending, lost.pending = lost.pending, []
        fresh.load += len(fresh.pending)
        lost.load -= len(fresh.pending)
        ray.kill(lost.handle)
        self._lost(lost.owner)
        self._kick(fresh)


class _Call:
    """One call of a worker running a batch; its holds, budget requests and leftover items
    end in the one ``finally`` of :meth:`run`."""

    def __init__(self, pool: WorkerPool, worker: Worker, batch: list[Item]) -> None:
        self.pool = pool
        self.worker = worker
        self.first = batch[0]
        self.undone = dict(enumerate(batch))
        self.holds: dict[int, Hold] = {}
        self.asking: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        worker, first = self.worker, self.first
        lost: BaseException | None = None
        try:
            items = [(n, item.path, item.state) for n, item in self.undone.items()]
            try:
                stream = worker.handle.run.remote(
                    first.body_id,
                    [first.body_ref],
                    items,
                    first.run_id,
                    first.emit is not None,
                    first.spend is not None,
                    self.pool._cache_actor(first.spend),
                )
            except (TypeError, ValueError, pickle.PicklingError) as exc:
                self._unpicklable(exc)
                return
            async for ref in stream:
                for message in await ref:
                    self._receive(message)
                if not self.wanted():
                    break
        except LOST_WORKER as exc:
            lost = exc
            logger.warning(
                "a Ray worker was lost (%s); sending its %d items again", exc, len(self.undone)
            )
            self.pool._replace(worker)
        except Exception as exc:
            for item in self.undone.values():
                if not item.future.done():
                    item.future.set_result(failed(item_error(item.path, exc)))
            self._finished(*self.undone)
        finally:
            for task in self.asking:
                task.cancel()
            for hold in self.holds.values():
                hold.settle(None)
            worker.calls -= 1
            worker.load -= len(self.undone)
            for item in self.undone.values():
                self.pool._resend(item, lost)
            self.pool._kick(worker)

    def wanted(self) -> bool:
        """Whether an item of the call is still waited for."""
        return not all(item.future.done() for item in self.undone.values())

    def _finished(self, *numbers: int) -> None:
        for number in numbers:
            self.undone.pop(number).call = None
            self.worker.load -= 1

    def _unpicklable(self, exc: Exception) -> None:
        for number, item in list(self.undone.items()):
            if not picklable(item.state):
                item.future.set_exception(NodeInputError(str(exc)))
                self._finished(number)

    def _receive(self, message: Message) -> None:
        kind, first = message[0], self.first
        if kind == "event":
            if first.emit is not None:
                event: Event = message[2]
                first.emit(event)
        elif kind == "done":
            _, number, written, error, errors, unhandled = message
            item = self.undone[number]
            self._finished(number)
            if not item.future.done():
                item.future.set_result(GraphOutcome(written, error, errors, unhandled, []))
        elif kind == "reserve" and first.spend is not None:
            task = asyncio.ensure_future(self._reserve(first.spend, message))
            self.asking.add(task)
            task.add_done_callback(self.asking.discard)
        elif kind == "settle":
            hold = self.holds.pop(message[1], None)
            if hold is not None:
                hold.settle(message[2], message[3])
        elif kind == "cached" and first.spend is not None:
            first.spend.answered_from_cache(message[1], message[2])
        elif kind == "cache_put" and first.spend is not None and first.spend.cache is not None:
            first.spend.cache.put(message[1], message[2], message[3])

    async def _reserve(self, spend: RunSpend, message: Message) -> None:
        """Hold the driver's budget for a worker's request; answer with the refusal or None."""
        from hush.providers.errors import BudgetExceededError

        _, number, key, price, prompt_tokens, max_tokens = message
        try:
            hold = await spend.reserve(key, price, prompt_tokens, max_tokens)
        except BudgetExceededError as exc:
            self.worker.handle.answer.remote(number, (number, str(exc)))
            return
        self.holds[number] = hold
        self.worker.handle.answer.remote(number, (number, None))


def failed(error: NodeError) -> GraphOutcome:
    """The outcome of an item that failed with ``error``."""
    return GraphOutcome({}, error, [error], [error], [])
