"""A map item (or loop iteration): look up the checkpoint, run the body, save.

The same steps as a node's lifecycle (:mod:`hush.core.lifecycle`) without slot
or retries: an item holds no run-wide slot (its leaves do) and is retried only
as part of its iteration node.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.core import runtime
from hush.core.spans import end_span, open_span

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.errors import NodeError
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
) -> ItemOutcome:
    """One map item (or loop iteration): look up, run the body, save.

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
    span = None
    if call.span is not None:
        span = open_span(call.span, f"{call.node.name}[{index}]", "item", state)
    outcome: GraphOutcome | None = None
    try:
        outcome = await runtime.execute(
            plan, state, call.run, path, span, static=False, defer=True, owner=call
        )
    finally:
        if span is not None:
            if outcome is None:
                end_span(span, None, None, cancelled=True)
            else:
                end_span(span, outcome.written, outcome.error, cancelled=False)
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
