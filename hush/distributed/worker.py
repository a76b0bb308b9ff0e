"""What runs in a Ray worker: map items of the driver's run, on the worker's own event loop.

An :class:`ItemRunner` is an async actor: it keeps one event loop (so HTTP
connections to LLM providers are reused between items), one thread pool for the
sync code nodes of every item (Ray's actor loop has no root task for anyio to keep
its threads under, so anyio would start a thread per node), the LLM resources of
the driver, and the bodies it loaded. Every call carries the body's object ref,
so a fresh worker (one that replaced a dead one, or one whose calls Ray
delivered out of order) loads what it lacks. A call runs several items (the
driver batches small ones) and streams back, as they happen, what the driver
must see: each item's events (node events, tokens), budget requests (answered
by the driver through :meth:`ItemRunner.answer`), and each item's result as it
ends, with the counts of its LLM requests (for the driver's ``$state.llm``) and its
run time (for the driver's batching). LLM calls draw on the cluster's limiters
(:mod:`hush.distributed.limits`) and on the driver's budget (:mod:`hush.distributed.budget`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from hush.core import runtime
from hush.core.context import RunContext
from hush.core.errors import NodeError
from hush.core.events import Emitter
from hush.core.state import RunRecord
from hush.distributed.budget import DriverSpend
from hush.distributed.cache import WorkerCache
from hush.distributed.errors import load_error
from hush.distributed.outbox import Message, Outbox
from hush.providers.resources import LLMResource

Item = tuple[int, str, dict[str, Any]]
"""One item of a call: its number in the call, its path, its ``PARENT`` state."""

Pulled = list[Message] | Exception | None
"""What a pulled call queued: a list of messages, what it raised, or ``None`` (it ended)."""

THREADS = 40
"""Threads of a worker's pool for sync code nodes at most (anyio's default limit)."""


@ray.remote(num_cpus=1)
class ItemRunner:
    """Runs map items in this worker process (see the module docstring)."""

    def __init__(self, owner: str, items_at_once: int) -> None:
        from hush.distributed import limits
        from hush.providers.limiter_registry import use_limiters

        limits.OWNER = owner
        use_limiters(limits.ClusterLimiter)
        self.items_at_once = items_at_once
        self.bodies: dict[str, asyncio.Future[Any]] = {}
        self.slots: asyncio.Semaphore | None = None
        self.answers: dict[int, asyncio.Future[Any]] = {}
        self.threads = ThreadPoolExecutor(THREADS, thread_name_prefix="hush-code")
        self.pulled: dict[str, tuple[asyncio.Queue[Pulled], asyncio.Task[None]]] = {}

    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()

    async def ping(self) -> None:
        """Returns once the actor is up."""
        await asyncio.sleep(0)

    def answer(self, number: int, value: Any) -> None:
        """The driver's answer to this worker's request ``number`` (a budget hold)."""
        future = self.answers.pop(number, None)
        if future is not None and not future.done():
            future.set_result(value)

    async def pull(
        self, call: str, arguments: tuple[Any, ...] | None
    ) -> tuple[list[Message], bool]:
        """The call ``call``'s messages so far, and whether it has ended, for a driver that
        cannot take a stream (Ray Client): the first pull starts :meth:`run` with
        ``arguments``; each waits for at least one list. What :meth:`run` raised is
        raised by the pull that reaches it, as a stream would."""
        if call not in self.pulled:
            queue: asyncio.Queue[Pulled] = asyncio.Queue()
            self.pulled[call] = (queue, asyncio.ensure_future(self._pump(queue, arguments or ())))
        queue = self.pulled[call][0]
        parts = [await queue.get()]
        while not queue.empty():
            parts.append(queue.get_nowait())
        ended = not isinstance(parts[-1], list)
        if ended:
            del self.pulled[call]
        if isinstance(parts[-1], BaseException):
            raise parts[-1]
        return [message for part in parts if isinstance(part, list) for message in part], ended

    def drop(self, call: str) -> None:
        """End the pulled call ``call`` (its driver no longer waits for it)."""
        pulled = self.pulled.pop(call, None)
        if pulled is not None:
            pulled[1].cancel()

    async def _pump(self, queue: asyncio.Queue[Pulled], arguments: tuple[Any, ...]) -> None:
        end: Pulled = None
        try:
            async for messages in self.run(*arguments):
                queue.put_nowait(messages)
        except Exception as exc:
            end = exc
        finally:
            queue.put_nowait(end)

    async def run(
        self,
        body_id: str,
        body: list[Any],
        items: list[Item],
        run_id: str,
        observed: bool,
        budget: bool,
        cache: Any = None,
    ) -> AsyncIterator[list[Message]]:
        """Run ``items`` of the body ``body_id`` (whose object ref is ``body[0]``); yield
        lists of messages: ``("event", n, event)``, ``("reserve", id, ...)``,
        ``("settle", id, usage, cost)``, ``("cached", key, price)``,
        ``("cache_put", key, model, answer)`` and, last for each item,
        ``("done", n, written, error, errors, unhandled, llm_counts, times)``
        (``times``: the item's run time and the time since the call arrived, seconds)."""
        arrived = time.perf_counter()
        outbox = Outbox(self.answers, len(items))
        try:
            plan = await self._load(body_id, body[0])
        except Exception as exc:
            error = load_error(exc)
            yield [_failed(n, path, error) for n, path, _ in items]
            return
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.items_at_once)
        tasks = [
            asyncio.ensure_future(
                self._item(plan, item, run_id, observed, budget, cache, outbox, arrived)
            )
            for item in items
        ]
        try:
            remaining = len(items)
            while remaining:
                batch = await outbox.take()
                remaining -= sum(1 for message in batch if message[0] == "done")
                yield batch
        finally:
            for task in tasks:
                task.cancel()

    async def _item(
        self,
        plan: Any,
        item: Item,
        run_id: str,
        observed: bool,
        budget: bool,
        cache: Any,
        outbox: Outbox,
        arrived: float,
    ) -> None:
        # Imported here: Ray pickles the actor's methods by value, and context variables
        # cannot be pickled.
        from hush.core.nodes.code_node import thread_pool
        from hush.providers import run_counters
        from hush.providers.spend import RunSpend
        from hush.providers.spend import current as current_spend

        number, path, state = item
        assert self.slots is not None
        async with self.slots:
            started = time.perf_counter()
            emit = Emitter([lambda event: outbox.put(("event", number, event))])
            ctx = RunContext(
                run_id, RunRecord(run_id=run_id, graph=path), emit=emit if observed else None
            )
            spend = RunSpend(
                parent=DriverSpend(outbox) if budget else None,
                cache=None if cache is None else WorkerCache(cache, outbox),  # type: ignore[arg-type]
            )
            counters = run_counters.RunCounters()
            tokens = (
                current_spend.set(spend),
                run_counters.current.set(counters),
                thread_pool.set(self.threads),
            )
            try:
                outcome = await runtime.execute(plan, state, ctx, path, in_item=True, owner=None)
            except Exception as exc:
                error = NodeError.from_exception(exc, path)
                outbox.put(_failed(number, path, error, counters.snapshot()))
                return
            finally:
                thread_pool.reset(tokens[2])
                run_counters.current.reset(tokens[1])
                current_spend.reset(tokens[0])
            ended = time.perf_counter()
            outbox.put(
                (
                    "done",
                    number,
                    outcome.written,
                    outcome.error,
                    outcome.errors,
                    outcome.unhandled,
                    counters.snapshot(),
                    (ended - started, ended - arrived),
                )
            )

    def _load(self, body_id: str, ref: Any) -> asyncio.Future[Any]:
        loading = self.bodies.get(body_id)
        if loading is None or (loading.done() and loading.exception() is not None):
            loading = self.bodies[body_id] = asyncio.ensure_future(_load(ref))
        return loading


def _failed(
    number: int, path: str, error: NodeError, counts: dict[str, dict[str, Any]] | None = None
) -> Message:
    error = NodeError(
        type=error.type,
        message=error.message,
        node=path,
        traceback=error.traceback,
        retryable=error.retryable,
        kinds=error.kinds,
    )
    return ("done", number, {}, error, [error], [error], counts or {}, None)


async def _load(ref: Any) -> Any:
    """Fetch a body and make its LLM resources and limiter actors this worker's."""
    from hush.distributed import limits

    plan, resources, names = await ref
    _register(resources)
    limits.ACTOR_NAMES.update(names)
    return plan


def _register(resources: Mapping[str, LLMResource]) -> None:
    """Make the driver's LLM resources (as of the body's shipping) this worker's."""
    from hush.providers.resources import get_registry

    registry = get_registry()
    for key, resource in resources.items():
        if not registry.has(key) or registry.get(key) != resource:
            registry.register(key, resource)
