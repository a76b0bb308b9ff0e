"""What runs in a Ray worker: map items of the driver's run, on the worker's own event loop.

An :class:`ItemRunner` is an async actor: it keeps one event loop (so HTTP
connections to LLM providers are reused between items), the LLM resources of
the driver, and the bodies it was sent (each body once). Its LLM calls draw on
the cluster's limiters (:mod:`hush.distributed.limits`). An item runs with the
local engine; what it reports (events, LLM spend) goes back with its result for
the driver to emit and count.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import ray

from hush.core import runtime
from hush.core.context import RunContext
from hush.core.errors import NodeError
from hush.core.events import Emitter, Event
from hush.core.state import RunRecord
from hush.providers.resources import LLMResource


class ItemResult(NamedTuple):
    """One item's outcome, as the worker sends it back."""

    written: dict[str, Any]
    error: NodeError | None
    errors: list[NodeError]
    unhandled: list[NodeError]
    events: list[Event]
    spend: dict[str, dict[str, Any]]
    pid: int


@ray.remote(num_cpus=1)
class ItemRunner:
    """Runs map items in this worker process (see the module docstring)."""

    def __init__(self) -> None:
        from hush.distributed.limits import ClusterLimiter
        from hush.providers.limiter import use_limiters

        use_limiters(ClusterLimiter)
        self.bodies: dict[str, asyncio.Future[Any]] = {}

    def pid(self) -> int:
        """This worker's process id."""
        return os.getpid()

    async def run(
        self,
        body_id: str,
        body: list[Any],
        state: dict[str, Any],
        path: str,
        run_id: str,
        observed: bool,
    ) -> ItemResult:
        """Run one item of the body ``body_id`` with ``state`` as its ``PARENT``. The first
        item of a body sent to this worker carries its object ref in ``body`` (the driver
        sends it once per worker; Ray starts an actor's calls in the order they were sent,
        so the items after it wait for that fetch)."""
        from hush.providers.spend import RunSpend
        from hush.providers.spend import current as current_spend

        loading = self.bodies.get(body_id)
        if loading is None:
            loading = self.bodies[body_id] = asyncio.ensure_future(_load(body[0]))
        plan = await loading
        events: list[Event] = []
        ctx = RunContext(
            run_id,
            RunRecord(run_id=run_id, graph=path),
            emit=Emitter([events.append]) if observed else None,
        )
        spend = RunSpend()
        token = current_spend.set(spend)
        try:
            outcome = await runtime.execute(
                plan, state, ctx, path, static=False, defer=True, owner=None
            )
        finally:
            current_spend.reset(token)
        return ItemResult(
            outcome.written,
            outcome.error,
            outcome.errors,
            outcome.unhandled,
            events,
            spend.summary(),
            os.getpid(),
        )

    async def ping(self) -> None:
        """Returns once the actor is up."""
        await asyncio.sleep(0)


async def _load(ref: Any) -> Any:
    """Fetch a body and make its LLM resources this worker's."""
    plan, resources = await ref
    _register(resources)
    return plan


def _register(resources: Mapping[str, LLMResource]) -> None:
    """Make the driver's LLM resources (as of the body's shipping) this worker's."""
    from hush.providers.resources import get_registry

    registry = get_registry()
    for key, resource in resources.items():
        if not registry.has(key) or registry.get(key) != resource:
            registry.register(key, resource)
