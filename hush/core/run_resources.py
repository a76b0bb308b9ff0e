"""What a run opens before it starts and closes after it ends.

:func:`open_into` opens the run's extensions that need no checkpoint (a response
cache), then the checkpoint store, then the extensions that read it (the LLM spend
ledger), after every option was checked and before ``run_start``. Whatever was opened
is closed by the run's one exit stack, however the run ends (also when a later one
fails to open: the run then never starts, and a failure before the store leaves no run
row).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hush.core.checkpointing import current_store
from hush.core.errors import NodeError
from hush.core.extensions import Meter, RunExtension, RunScope, meters_of, running_meters

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.nodes.graph.graph_node import GraphNode
    from hush.core.run_options import Checkpoint
    from hush.core.state import RunRecord

logger = logging.getLogger("hush.engine")


@dataclass(slots=True)
class RunResources:
    """What one run opened: its checkpoint store (or ``None``) and its extensions."""

    store: CheckpointStore | None
    extensions: tuple[RunExtension, ...]
    meters: tuple[Meter, ...]
    """The extensions that count what each piece of work consumes."""
    write_error: NodeError | None = None
    """Set by the run: the first checkpoint write that failed while it ran."""


async def open_into(
    stack: contextlib.AsyncExitStack,
    graph: GraphNode,
    record: RunRecord,
    checkpoint: Checkpoint | None,
    extensions: tuple[RunExtension, ...],
) -> RunResources:
    """Open the extensions and the checkpoint (the current store while the run lasts),
    pushing each one's closing on the run's ``stack``: on exit the extensions close, the
    checkpoint is marked with ``record.status`` (``cancelled`` if the run never started)
    and closed. A checkpoint write failure becomes an error of the run. If one fails to
    open, the caller's closing of ``stack`` (under a cancel shield) closes what opened."""
    scope = RunScope(graph, record)
    for extension in extensions:
        if not extension.reads_checkpoint:
            await _enter(stack, extension, scope)
    store = await _open_store(graph, checkpoint, record.run_id)
    resources = RunResources(store, extensions, meters_of(extensions))
    if store is not None:
        stack.push_async_callback(_logged, _close_store, resources, record)
    scope.store = store
    for extension in extensions:
        if extension.reads_checkpoint:
            await _enter(stack, extension, scope)
    stack.callback(running_meters.reset, running_meters.set(resources.meters))
    stack.callback(current_store.reset, current_store.set(store))
    return resources


async def _enter(
    stack: contextlib.AsyncExitStack, extension: RunExtension, scope: RunScope
) -> None:
    """Enter the extension's ``open``; push its exit on ``stack``."""
    opening = extension.open(scope)
    await opening.__aenter__()
    stack.push_async_callback(_logged, opening.__aexit__, None, None, None)


async def _logged(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run one closing step; log its failure, so that the other steps still run."""
    try:
        await fn(*args)
    except Exception:
        logger.warning("closing what the run opened failed", exc_info=True)


async def _open_store(
    graph: GraphNode, checkpoint: Checkpoint | None, run_id: str
) -> CheckpointStore | None:
    if checkpoint is None:
        return None
    from hush.checkpoint import fingerprint, open_checkpoint
    from hush.core.describe import describe

    digest = fingerprint(describe(graph))
    return await open_checkpoint(
        checkpoint.path,
        run_id,
        digest,
        on_mismatch=checkpoint.on_mismatch,
        restart=checkpoint.restart,
    )


async def _close_store(resources: RunResources, record: RunRecord) -> None:
    """Commit and close the checkpoint; a write failure becomes an error of the run."""
    from hush.checkpoint.errors import CheckpointWriteError

    store = resources.store
    assert store is not None
    failure = resources.write_error
    status = "cancelled" if record.status == "running" else record.status
    try:
        if not store.failed:
            store.mark_finished(status)
        await store.aclose()
    except CheckpointWriteError as exc:
        if failure is None:
            failure = NodeError.from_exception(exc, record.graph)
    if failure is not None:
        record.errors.append(failure)
        record.unhandled.append(failure)
        if record.status == "ok":
            record.status = "error"
