"""A map item (or loop iteration): look up the checkpoint, run the body, save.

The same steps as a node's lifecycle (:mod:`hush.core.lifecycle`) without slot
or retries: an item holds no run-wide slot (its leaves do) and is retried only
as part of its iteration node.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.core import runtime
from hush.core.events import Event, status_of

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from hush.core.call import NodeCall
    from hush.core.errors import NodeError
    from hush.core.executor import ItemExecutor
    from hush.core.plan import GraphPlan
    from hush.core.runtime import GraphOutcome


class ItemOutcome(NamedTuple):
    """What one map item (or loop iteration) gives its iteration node."""

    written: dict[str, Any]
    error: NodeError | None
    resumed: bool
    saving: asyncio.Future[None] | None = None
    """With ``run_item(..., wait_saved=False)``: the commit still to wait for (``call.saved``)."""


async def run_item(
    call: NodeCall,
    plan: GraphPlan,
    index: int,
    shared: dict[str, Any],
    own: dict[str, Any],
    *,
    wait_saved: bool = True,
    executor: ItemExecutor | None = None,
) -> ItemOutcome:
    """One map item (or loop iteration): look up, run the body (here, or with ``executor``
    elsewhere), save.

    A clean item is saved whole; one with failures inside saves its clean nodes
    instead, so that resuming redoes only what failed. With ``wait_saved=False``
    the item returns before its commit, which the caller awaits later with
    :meth:`NodeCall.saved` (a map overlaps a worker's next item with it).
    """
    path = f"{call.path}[{index}]"
    state = {**shared, **own}
    checkpoint = call.run.checkpoint
    key = None
    if checkpoint is not None:
        key = checkpoint.item_key(path, call.shared_key(shared), own)
        saved = checkpoint.load(path, key)
        if saved is not None:
            return ItemOutcome(dict(saved), None, True)
    if call.run.emit is None:
        outcome = await _body(call, plan, path, state, executor)
    else:
        outcome = await _traced(call, plan, index, path, state, executor)
    call.errors.extend(outcome.errors)
    call.unhandled.extend(outcome.unhandled)
    waiter = None
    if checkpoint is not None:
        if outcome.clean:
            waiter = checkpoint.put(path, key, outcome.written)
        else:
            waiter = checkpoint.put_snapshots(outcome.saves)
        if waiter is not None and wait_saved:
            await call.saved(waiter)
            waiter = None
    return ItemOutcome(outcome.written, outcome.error, False, waiter)


def _body(
    call: NodeCall,
    plan: GraphPlan,
    path: str,
    state: dict[str, Any],
    executor: ItemExecutor | None,
) -> Coroutine[Any, Any, GraphOutcome]:
    if executor is not None:
        return executor.run_body(call, plan, path, state)
    return runtime.execute(plan, state, call.run, path, static=False, defer=True, owner=call)


async def _traced(
    call: NodeCall,
    plan: GraphPlan,
    index: int,
    path: str,
    state: dict[str, Any],
    executor: ItemExecutor | None,
) -> GraphOutcome:
    """Run the item's body between its ``node_start`` and ``node_end`` events."""
    emit = call.run.emit
    assert emit is not None
    run_id, name, node = call.run.run_id, f"{call.node.name}[{index}]", f"{call.node_path}[]"
    emit(
        Event(
            "node_start",
            path,
            run_id,
            parent=call.path,
            type="item",
            name=name,
            input=state,
            node=node,
        )
    )
    started = perf_counter()
    outcome: GraphOutcome | None = None
    try:
        outcome = await _body(call, plan, path, state, executor)
        return outcome
    finally:
        error = outcome.error if outcome is not None else None
        emit(
            Event(
                "node_end",
                path,
                run_id,
                parent=call.path,
                type="item",
                name=name,
                output=outcome.written if outcome is not None else None,
                status=status_of(error, cancelled=outcome is None),
                error=error,
                duration=perf_counter() - started,
                node=node,
            )
        )
