"""What runs in a Ray worker: map items of the driver's run, on the worker's own event loop.

An :class:`ItemRunner` is an async actor: it keeps one event loop (so HTTP
connections to LLM providers are reused between items), the LLM resources of
the driver, and the bodies it loaded. Every call carries the body's object ref,
so a fresh worker (one that replaced a dead one, or one whose calls Ray
delivered out of order) loads what it lacks. A call runs several items (the
driver batches small ones) and streams back, as they happen, what the driver
must see: each item's events (node events, tokens), budget requests (answered
by the driver through :meth:`ItemRunner.answer`), and each item's result as it
ends. LLM calls draw on the cluster's limiters (:mod:`hush.distributed.limits`)
and on the driver's budget (:mod:`hush.distributed.budget`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
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
        ``("done", n, written, error, errors, unhandled)``."""
        outbox = Outbox(self.answers)
        try:
            plan = await self._load(body_id, body[0])
        except Exception as exc:
            error = load_error(exc)
            yield [_failed(n, path, error) for n, path, _ in items]
            return
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.items_at_once)
        tasks = [
            asyncio.ensure_future(self._item(plan, item, run_id, observed, budget, cache, outbox))
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
    ) -> None:
        from hush.providers.spend import RunSpend
        from hush.providers.spend import current as current_spend

        number, path, state = item
        assert self.slots is not None
        async with self.slots:
            emit = Emitter([lambda event: outbox.put(("event", number, event))])
            ctx = RunContext(
                run_id, RunRecord(run_id=run_id, graph=path), emit=emit if observed else None
            )
            spend = RunSpend(
                parent=DriverSpend(outbox) if budget else None,
                cache=None if cache is None else WorkerCache(cache, outbox),  # type: ignore[arg-type]
            )
            token = current_spend.set(spend)
            try:
                outcome = await runtime.execute(plan, state, ctx, path, in_item=True, owner=None)
            except Exception as exc:
                outbox.put(_failed(number, path, NodeError.from_exception(exc, path)))
                return
            finally:
                current_spend.reset(token)
            outbox.put(
                (
                    "done",
                    number,
                    outcome.written,
                    outcome.error,
                    outcome.errors,
                    outcome.unhandled,
                )
            )

    def _load(self, body_id: str, ref: Any) -> asyncio.Future[Any]:
        loading = self.bodies.get(body_id)
        if loading is None or (loading.done() and loading.exception() is not None):
            loading = self.bodies[body_id] = asyncio.ensure_future(_load(ref))
        return loading


def _failed(number: int, path: str, error: NodeError) -> Message:
    error = NodeError(
        type=error.type,
        message=error.message,
        node=path,
        traceback=error.traceback,
        retryable=error.retryable,
        kinds=error.kinds,
    )
    return ("done", number, {}, error, [error], [error])


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
