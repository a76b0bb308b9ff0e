"""The driver's side of the workers: which items go to which worker, in which call.

Items wait in one queue of the pool. A worker with room takes the items at the head
of the queue in one call: it holds what :class:`~hush.distributed.pace.Pace` says
hides the round trip (trivial items by the dozen, items of 20 ms one or two at a
time), at most :data:`~hush.distributed.pace.CALLS_PER_WORKER` calls and
:data:`~hush.distributed.pace.MAX_BATCH` items per call, and what is queued is
shared among the workers with room, so the last items of a map are split finely
and no worker holds a queue while another idles. A call streams back its items'
events, budget requests and results as they happen, and ends as soon as each of
its items is settled, so no call outlives the run that made it.

The only retry here: an item whose worker died is sent again (to a fresh worker)
up to ``max_item_retries`` times, then it is an item error. LLM requests are
retried by the client and nodes by their lifecycle, never by this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import pickle
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.util import client

from hush.core.errors import NodeError, NodeInputError
from hush.core.runtime import GraphOutcome
from hush.distributed.errors import item_error, lost_error
from hush.distributed.pace import CALLS_PER_WORKER, MAX_BATCH, Pace
from hush.distributed.shipping import picklable

if TYPE_CHECKING:
    from hush.core.events import Event
    from hush.distributed.outbox import Message
    from hush.providers.run_counters import RunCounters
    from hush.providers.spend import Hold, RunSpend

logger = logging.getLogger(__name__)

LOST_WORKER = (ActorDiedError, ActorUnavailableError, RayActorError)


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
    counters: RunCounters | None
    """The run's LLM counters (what the item's requests did is added to them)."""
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
    calls: int = 0
    load: int = 0
    """Items in its calls."""


class WorkerPool:
    """The workers of one executor and the calls in flight to them (see the module
    docstring). ``start_worker`` makes a worker; ``cache_actor`` gives the cache actor of a
    run's spend (or ``None``); ``lost`` is told the owner name of each replaced worker;
    ``items_at_once``: the items a worker runs at once."""

    def __init__(
        self,
        start_worker: Callable[[], Worker],
        cache_actor: Callable[[RunSpend | None], Any],
        lost: Callable[[str], None],
        max_item_retries: int,
        items_at_once: int,
    ) -> None:
        self.workers: list[Worker] = []
        self.max_item_retries = max_item_retries
        self.items_at_once = items_at_once
        self.paces: dict[str, Pace] = {}
        """The measured pace of each body's items (by body id)."""
        self._start_worker = start_worker
        self._cache_actor = cache_actor
        self._lost = lost
        self._calls: dict[asyncio.Task[None], _Call] = {}
        self._queue: list[Item] = []
        self._kicked = False

    def submit(self, item: Item) -> None:
        """Queue ``item``; it goes to a worker at the end of this turn of the event loop."""
        self._queue.append(item)
        self._kick()

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
        self._queue.clear()
        self.paces.clear()
        self.workers = []
        return calls

    def pace(self, body_id: str) -> Pace:
        """The measured pace of the items of the body ``body_id``."""
        pace = self.paces.get(body_id)
        if pace is None:
            pace = self.paces[body_id] = Pace()
        return pace

    def _kick(self) -> None:
        """Hand out the queue at the end of this turn of the event loop (so that items
        queued in the same turn go in one call)."""
        if self._queue and not self._kicked:
            self._kicked = True
            self._queue[0].future.get_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Give each worker with room its share of the queue, least busy first."""
        self._kicked = False
        self._queue = [item for item in self._queue if not item.future.done()]
        while self._queue:
            held = self.pace(self._queue[0].body_id).held(self.items_at_once)
            room = [
                w for w in self.workers if w.calls < CALLS_PER_WORKER and Pace.room(held, w.load)
            ]
            if not room:
                return
            worker = min(room, key=lambda w: w.load)
            share = math.ceil(len(self._queue) / len(room))
            key = self._queue[0].batch_key
            batch = [item for item in self._queue if item.batch_key == key]
            batch = batch[: min(Pace.room(held, worker.load), share, MAX_BATCH)]
            taken = set(map(id, batch))
            self._queue = [item for item in self._queue if id(item) not in taken]
            worker.calls += 1
            worker.load += len(batch)
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
        self.workers[self.workers.index(lost)] = self._start_worker()
        ray.kill(lost.handle)
        self._lost(lost.owner)
        self._kick()


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
        self.sent_at = time.perf_counter()

    async def run(self) -> None:
        worker, first = self.worker, self.first
        lost: BaseException | None = None
        try:
            items = [(n, item.path, item.state) for n, item in self.undone.items()]
            arguments = (
                first.body_id,
                [first.body_ref],
                items,
                first.run_id,
                first.emit is not None,
                first.spend is not None,
                self.pool._cache_actor(first.spend),
            )
            async with contextlib.aclosing(streamed(worker.handle, arguments)) as stream:
                try:
                    messages = await anext(stream)
                except (TypeError, ValueError, pickle.PicklingError) as exc:
                    self._unpicklable(exc)
                    return
                while True:
                    received = time.perf_counter()
                    for message in messages:
                        self._receive(message, received)
                    if not self.wanted():
                        break
                    try:
                        messages = await anext(stream)
                    except StopAsyncIteration:
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
            self.pool._kick()

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

    def _receive(self, message: Message, received: float) -> None:
        kind, first = message[0], self.first
        if kind == "event":
            if first.emit is not None:
                event: Event = message[2]
                first.emit(event)
        elif kind == "done":
            _, number, written, error, errors, unhandled, counts, times = message
            item = self.undone[number]
            self._finished(number)
            if counts and item.counters is not None:
                item.counters.add(counts)
            if times is not None:
                ran, since_call = times
                pace = self.pool.pace(first.body_id)
                pace.ran(ran)
                pace.trip(received - self.sent_at - since_call)
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


async def streamed(handle: Any, arguments: tuple[Any, ...]) -> AsyncGenerator[list[Message]]:
    """The lists of messages of one call of ``handle.run``: streamed by Ray, or pulled one
    after another under Ray Client, which cannot stream (see ``ItemRunner.pull``)."""
    if not client.ray.is_connected():
        async for ref in handle.run.remote(*arguments):
            yield await ref
        return
    call, ended = uuid.uuid4().hex, False
    starting: tuple[Any, ...] | None = arguments
    try:
        while not ended:
            messages, ended = await handle.pull.remote(call, starting)
            starting = None
            yield messages
    finally:
        if not ended:
            handle.drop.remote(call)


def failed(error: NodeError) -> GraphOutcome:
    """The outcome of an item that failed with ``error``."""
    return GraphOutcome({}, error, [error], [error], [])
