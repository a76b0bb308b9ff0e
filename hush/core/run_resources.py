"""What a run opens before it starts and closes after it ends.

The response cache, the checkpoint store and the spending ledger are opened by
:func:`opened`, in that order, after every option was checked and before
``run_start``; whatever was opened is closed in its one exit, however the run
ends (also when a later one fails to open: the run then never starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from hush.core.checkpointing import current_store
from hush.core.errors import NodeError, RunOptionError
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.nodes.graph.graph_node import GraphNode
    from hush.core.state import RunRecord
    from hush.providers.cache import ResponseCache

logger = logging.getLogger("hush.engine")

SPEND_PATH, SPEND_KEY = "$spend", "totals"
"""Where a checkpoint keeps what its run's LLM calls spent."""


@dataclass(slots=True)
class RunResources:
    """What one run opened: its checkpoint store (or ``None``) and its spending ledger."""

    store: CheckpointStore | None
    spend: RunSpend
    write_error: NodeError | None = None
    """Set by the run: the first checkpoint write that failed while it ran."""


@contextlib.asynccontextmanager
async def opened(
    graph: GraphNode,
    record: RunRecord,
    *,
    checkpoint: str | os.PathLike[str] | None,
    on_mismatch: Literal["error", "restart"],
    restart: bool,
    cache: Any,
    max_cost: float | None,
    max_total_tokens: int | None,
) -> AsyncIterator[RunResources]:
    """Open the cache, the checkpoint and the ledger (the current one while the run lasts);
    on exit save the spend, mark the
    checkpoint with ``record.status`` (``cancelled`` if the run never started), commit
    and close both. A checkpoint write failure becomes an error of the run."""
    async with contextlib.AsyncExitStack() as stack:
        own_cache = _open_cache(cache)
        if own_cache is not None and own_cache is not cache:
            stack.push_async_callback(_shielded, asyncio.to_thread, own_cache.close)
        store = await _open_store(graph, checkpoint, record.run_id, on_mismatch, restart)
        resources = RunResources(store, _ledger(max_cost, max_total_tokens, own_cache, store))
        if own_cache is not None and own_cache is cache:
            stack.push_async_callback(_shielded, _commit, resources.spend)
        if store is not None:
            stack.push_async_callback(_shielded, _close_store, resources, record)
        stack.callback(resources.spend.save)
        stack.callback(current_spend.reset, current_spend.set(resources.spend))
        stack.callback(current_store.reset, current_store.set(store))
        yield resources


async def _shielded(fn: Any, *args: Any) -> None:
    """Run one closing step to its end even when the run is being cancelled; log its failure."""
    with anyio.CancelScope(shield=True):
        try:
            await fn(*args)
        except Exception:
            logger.warning("closing what the run opened failed", exc_info=True)


def _open_cache(cache: Any) -> ResponseCache | None:
    """The cache the run was given (``None`` for no cache option)."""
    if cache is None or cache is False:
        return None
    from hush.providers.cache import ResponseCache, default_cache_path

    if isinstance(cache, ResponseCache):
        return cache
    path = default_cache_path() if cache is True else cache
    try:
        return ResponseCache(path)
    except (OSError, sqlite3.Error) as exc:
        raise RunOptionError(f"cache: cannot open {os.fspath(path)!r} ({exc})") from exc


async def _open_store(
    graph: GraphNode,
    checkpoint: str | os.PathLike[str] | None,
    run_id: str,
    on_mismatch: Literal["error", "restart"],
    restart: bool,
) -> CheckpointStore | None:
    if checkpoint is None:
        return None
    from hush.checkpoint import fingerprint, open_checkpoint
    from hush.core.describe import describe

    digest = fingerprint(describe(graph))
    return await open_checkpoint(
        checkpoint, run_id, digest, on_mismatch=on_mismatch, restart=restart
    )


def _ledger(
    max_cost: float | None,
    max_total_tokens: int | None,
    cache: ResponseCache | None,
    store: CheckpointStore | None,
) -> RunSpend:
    """The run's spending ledger: inside the enclosing run's (a run started by a node),
    starting from what the run spent before it was resumed, saved in its checkpoint."""
    enclosing = current_spend.get()
    spend = RunSpend(
        max_cost=max_cost,
        max_total_tokens=max_total_tokens,
        cache=cache if cache is not None else (enclosing.cache if enclosing else None),
        parent=enclosing,
    )
    if store is not None:
        saved = store.get(SPEND_PATH, SPEND_KEY)
        if isinstance(saved, dict):
            spend.absorb(saved, propagate=False)
        spend.on_change = functools.partial(_save_spend, store)
    return spend


def _save_spend(store: CheckpointStore, summary: dict[str, dict[str, Any]]) -> None:
    if store.failed:
        return
    try:
        store.put(SPEND_PATH, SPEND_KEY, summary)
    except Exception:
        logger.warning("checkpoint: could not save the run's LLM spend", exc_info=True)


async def _commit(spend: RunSpend) -> None:
    """Commit the answers the run stored in a cache it was handed (not its to close)."""
    if spend.cache is not None:
        await spend.cache.aflush()


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


def unpriced_resources(graph: GraphNode) -> list[str]:
    """The LLM resources the graph's nodes name that have no price."""
    from hush.core.nodes.graph.graph_node import GraphNode
    from hush.providers.errors import ResourceError
    from hush.providers.pricing import price_of
    from hush.providers.resources import get_registry

    keys: dict[str, None] = {}
    graphs = [graph]
    while graphs:
        for node in graphs.pop().nodes.values():
            keys.update(dict.fromkeys(getattr(node, "resource_keys", ())))
            if isinstance(node, GraphNode):
                graphs.append(node)
    unpriced = []
    for key in keys:
        try:
            if price_of(get_registry().get_llm(key)) is None:
                unpriced.append(key)
        except ResourceError:
            unpriced.append(key)
    return unpriced


_COUNTERS = (
    "sent",
    "ok",
    "rate_limited",
    "retries",
    "errors",
    "tokens_used",
    "wait_time_s",
    "paused_for_s",
)


def llm_stats() -> dict[str, dict[str, Any]]:
    """Snapshot of every LLM resource limiter in the process (none if LLMs are unused)."""
    limiter = sys.modules.get("hush.providers.limiter")
    if limiter is None:
        return {}
    return {key: dataclasses.asdict(lim.stats()) for key, lim in limiter.all_limiters().items()}


def llm_delta(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], spend: RunSpend
) -> dict[str, dict[str, Any]]:
    """Per resource: current rates and limits, what the counters did during the run, and
    what the run's calls spent (calls, cached, tokens, cost)."""
    out: dict[str, dict[str, Any]] = {}
    for key, now in after.items():
        old = before.get(key, {})
        delta = {c: now[c] - old.get(c, 0) for c in _COUNTERS}
        if delta["sent"] or delta["errors"] or delta["rate_limited"]:
            out[key] = {**now, **delta}
    for key, spent in spend.summary().items():
        out[key] = {**out.get(key, {}), **spent}
    return out
