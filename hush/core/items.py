"""A map item (or loop iteration): look up the checkpoint, run the body, save.

The same steps as a node's lifecycle (:mod:`hush.core.lifecycle`) without slot
or retries: an item holds no run-wide slot (its leaves do) and is retried only
as part of its iteration node.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.core.events import node_end, node_start
from hush.core.quiet_items import quiet_body, trace_if_failed

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from hush.core.call import NodeCall
    from hush.core.errors import NodeError
    from hush.core.events import Emitter
    from hush.core.executor import ItemExecutor
    from hush.core.extensions import Usage
    from hush.core.outcome import GraphOutcome
    from hush.core.plan import GraphPlan


class ItemOutcome(NamedTuple):
    """What one map item (or loop iteration) gives its iteration node."""

    written: dict[str, Any]
    error: NodeError | None
    resumed: bool
    saving: int | None = None
    """With ``run_item(..., wait_saved=False)``: the number of the commit still to wait for
    (``call.saved``)."""


KEY_BLOCK = 64
"""How many items of a map whose inputs are in memory are taken and keyed at a time."""


def in_order(
    call: NodeCall,
    items: Iterator[tuple[int, dict[str, Any]]],
    shared: dict[str, Any],
    *,
    in_memory: bool = False,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """A map's numbered items, keyed for the checkpoint in input order as they are taken
    (``in_memory``: the inputs are sequences, so taking items early costs nothing and they
    are keyed :data:`KEY_BLOCK` at a time)."""
    keys = call.item_keys()
    if keys is None:
        return items
    return keys.keyed(items, shared, KEY_BLOCK if in_memory else 1)


async def run_item(
    call: NodeCall,
    plan: GraphPlan,
    index: int,
    shared: dict[str, Any],
    own: dict[str, Any],
    *,
    wait_saved: bool = True,
    executor: ItemExecutor | None = None,
    usage: Usage | None = None,
) -> ItemOutcome:
    """One map item (or loop iteration): look up, run the body (here, or with ``executor``
    elsewhere), save. The item is looked up and saved by its content (see
    :class:`~hush.core.checkpointing.ItemKeys`), its events carry its position.

    A clean item is saved whole; one with failures inside saves its clean nodes
    instead, so that resuming redoes only what failed. With ``wait_saved=False``
    the item returns before its commit, which the caller awaits later with
    :meth:`NodeCall.saved` (a map overlaps a worker's next item with it). ``usage``: what
    counts the caller's items' consumption, one after another
    (:func:`~hush.core.extensions.work_usage`), saved
    with each item; the item ends its piece of it.
    """
    path = f"{call.path}[{index}]"
    state = {**shared, **own}
    run = call.run
    checkpoint = run.checkpoint
    keys = call.item_keys()
    named = keys.take(index, shared, own) if keys is not None else None
    naming = False
    if checkpoint is not None and named is not None:
        if checkpoint.resuming:
            found = checkpoint.load_item(named)
            if found is not None:
                return ItemOutcome(dict(found), None, True)
        # What runs inside is saved under the item's name; a single plain node on the fast
        # path (no saved results to look up, no run-wide slot) saves nothing there.
        naming = checkpoint.resuming or run.slot is not None or not plan.one_plain
        if naming:
            checkpoint.name(path, named[1])
    try:
        emit = run.emit
        scope = emit if emit is None or executor is not None else emit.item(path)
        if scope is not emit:  # no subscriber wants the item (hush.core.quiet_items)
            started, quiet = perf_counter(), None
            try:
                outcome = quiet = await quiet_body(call, plan, path, state, scope)
            finally:
                trace_if_failed(call, index, path, (shared, own), quiet, started)
        elif emit is None:
            outcome = await _body(call, plan, path, state, executor)
        else:
            outcome = await _observed(call, plan, index, path, state, executor, emit)
        waiter = None
        if checkpoint is not None:
            spent = outcome.usage = usage.summary() if usage is not None else None
            if not outcome.clean:
                waiter = checkpoint.save_snapshots(outcome.take_saves(), spent)
            elif named is not None:
                waiter = checkpoint.save_item(path, named, outcome.written, spent)
            if usage is not None:
                usage.taken = waiter is not None
    finally:
        if usage is not None:
            usage.next()
        if naming and checkpoint is not None:
            checkpoint.unname(path)
    call.outcome.merge(outcome)
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
    return call.frame.execute(plan, state, path, call, in_item=True)


async def _observed(
    call: NodeCall,
    plan: GraphPlan,
    index: int,
    path: str,
    state: dict[str, Any],
    executor: ItemExecutor | None,
    emit: Emitter,
) -> GraphOutcome:
    """The item's body between its events. The event holds a copy of the item's inputs:
    the body writes its outputs into ``state``, and a tracer reads the event later."""
    run_id, name, node = call.run.run_id, f"{call.node.name}[{index}]", f"{call.node_path}[]"
    emit(node_start(path, run_id, call.path, "item", name, dict(state), node))
    started = perf_counter()
    outcome: GraphOutcome | None = None
    try:
        outcome = await _body(call, plan, path, state, executor)
        return outcome
    finally:
        error = outcome.error if outcome is not None else None
        emit(
            node_end(
                path,
                run_id,
                call.path,
                "item",
                name,
                outcome.written if outcome is not None else None,
                error,
                perf_counter() - started,
                node,
                outcome is None,
            )
        )
