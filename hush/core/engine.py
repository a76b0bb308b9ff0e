"""``Hush``: runs a built graph, as many times and as concurrently as you like."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

from hush.core.checkpointing import RunCheckpoint
from hush.core.context import RunContext
from hush.core.errors import MissingInputError, NodeError, RunError, RunOptionError
from hush.core.events import Emitter, Event, Subscriber
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.nodes.iteration.base import IterationNode
from hush.core.options import check_run_options
from hush.core.progress import ProgressCallback, ProgressReporter, want_display
from hush.core.runtime import GraphOutcome, execute
from hush.core.state import RunRecord
from hush.providers.spend import RunSpend
from hush.providers.spend import current as current_spend

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.executor import ItemExecutor
    from hush.core.plan import GraphPlan
    from hush.observability.tracer import Tracer
    from hush.providers.cache import ResponseCache

logger = logging.getLogger("hush.engine")

_streamed_to: contextvars.ContextVar[Subscriber | None] = contextvars.ContextVar(
    "hush_streamed_to", default=None
)
"""Where :meth:`Hush.stream` wants the events of the run it starts (that run only: the run
clears it for the tasks it starts)."""


class Hush:
    """The engine for one graph: ``result = await Hush(graph).run(inputs)``.

    Building happens once here; every ``run`` gets its own state, so concurrent
    runs on one engine share nothing but the compiled plan.
    """

    def __init__(self, graph: GraphNode) -> None:
        if not isinstance(graph, GraphNode):
            raise TypeError(f"Hush() takes a GraphNode, got {type(graph).__name__}")
        if graph.parent is not None:
            raise TypeError(
                f"Hush() takes a root graph, but '{graph.name}' is a node of graph "
                f"'{graph.parent.path}'; run the root graph"
            )
        if isinstance(graph, IterationNode):
            raise TypeError(
                f"Hush() takes a graph, not the {type(graph).__name__} '{graph.name}': put it "
                "inside `with GraphNode(name=...) as graph:` and run that graph"
            )
        self.graph = graph.build()
        assert graph.plan is not None
        self.plan: GraphPlan = graph.plan

    @property
    def name(self) -> str:
        """The graph's name (also the trace name)."""
        return self.graph.name

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Raise :class:`MissingInputError` when root nodes read keys the inputs lack."""
        missing = sorted(self.plan.required_inputs - set(inputs))
        if not missing:
            return
        readers = []
        for np in self.plan.nodes:
            for b in np.bindings:
                if b.key in missing and b.source.startswith("PARENT"):
                    readers.append(f"{np.node.path} (input '{b.name}' reads {b.source})")
        raise MissingInputError(
            f"run inputs of graph '{self.name}' lack {', '.join(repr(k) for k in missing)}, "
            f"read by: {'; '.join(readers)}"
        )

    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        tracer: Tracer | None = None,
        raise_on_error: bool = False,
        max_concurrency: int | None = None,
        run_id: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        on_checkpoint_mismatch: Literal["error", "restart"] = "error",
        restart: bool = False,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        flush_timeout: float | None = None,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
        max_cost: float | None = None,
        max_total_tokens: int | None = None,
        cache: bool | str | os.PathLike[str] | ResponseCache | None = None,
        executor: ItemExecutor | None = None,
    ) -> dict[str, Any]:
        """Run the graph once and return what its nodes wrote to ``PARENT``.

        ``result["$state"]`` is the :class:`~hush.core.state.RunRecord`. With
        ``max_concurrency`` at most that many leaf nodes run at once across all
        nesting levels. With ``checkpoint`` (a SQLite path) finished nodes and
        map items are saved as they finish, keyed by their inputs, and reused
        when the same ``run_id`` runs again (``restart=True`` forgets them and
        starts over; ``on_checkpoint_mismatch="restart"`` does so only when the
        graph changed). ``progress`` shows live bars for
        maps (default: when stderr is a terminal); ``on_progress`` receives the
        same counters a few times a second. ``tracer`` receives the run's events;
        at the end the run waits at most ``flush_timeout`` seconds (default: the
        tracer's own) for it to export them.

        ``max_cost`` (USD) and ``max_total_tokens`` (prompt plus completion tokens of
        every LLM call) bound what the run's LLM calls may spend: a call that does not
        fit is not sent and fails with ``BudgetExceededError`` (resumable with a larger
        budget). ``cache`` (a SQLite path, ``True`` for the default location) answers
        LLM calls asked before from it and stores every new answer. ``$state.cost`` is
        what the run's priced calls cost, in USD (see :mod:`hush.providers.spend`).
        ``executor`` (a :class:`~hush.distributed.RayExecutor`) runs the items of every
        map that sets none and is not inside another map's item.
        """
        subscriber = _streamed_to.get()
        if subscriber is not None:
            _streamed_to.set(None)
        if inputs is None:
            inputs = {}
        check_run_options(
            inputs=inputs,
            max_concurrency=max_concurrency,
            run_id=run_id,
            checkpoint=checkpoint,
            on_checkpoint_mismatch=on_checkpoint_mismatch,
            restart=restart,
            flush_timeout=flush_timeout,
            progress=progress,
            on_progress=on_progress,
            user_id=user_id,
            session_id=session_id,
            tags=tags,
            metadata=metadata,
            max_cost=max_cost,
            max_total_tokens=max_total_tokens,
            cache=cache,
            executor=executor,
        )
        self.check_inputs(inputs)
        if max_cost is not None:
            self._check_prices()
        run_id = run_id or uuid.uuid4().hex
        record = RunRecord(run_id=run_id, graph=self.name, started_at=time.time())
        store = await self._open_store(checkpoint, run_id, on_checkpoint_mismatch, restart)
        started = Event(
            "run_start",
            self.name,
            run_id,
            type="run",
            name=self.name,
            input=dict(inputs),
            node=self.name,
            metadata=_run_metadata(user_id, session_id, tags, metadata),
        )
        subscribers: list[Subscriber] = []
        traced = _subscribe(tracer, started)
        if traced is not None:
            subscribers.append(traced)
        reporter = None
        if want_display(progress) or on_progress is not None:
            reporter = ProgressReporter(show=want_display(progress), callback=on_progress)
            subscribers.append(reporter)
        if subscriber is not None:
            subscribers.append(subscriber)
        emit = Emitter(subscribers) if subscribers else None
        ctx = RunContext(
            run_id,
            record,
            emit=emit,
            slot=asyncio.Semaphore(max_concurrency) if max_concurrency else None,
            checkpoint=RunCheckpoint(store) if store is not None else None,
            executor=executor,
        )
        outcome: GraphOutcome | None = None
        llm_before = _llm_stats()
        result: dict[str, Any] = {}
        if emit is not None:
            emit(started)
        spend = self._open_spend(max_cost, max_total_tokens, cache, store)
        spending = current_spend.set(spend)
        try:
            outcome = await execute(
                self.plan, dict(inputs), ctx, self.name, static=True, defer=False
            )
        finally:
            current_spend.reset(spending)
            spend.save()
            record.duration = ctx.now()
            record.llm = _llm_delta(llm_before, _llm_stats(), spend)
            record.cost = spend.cost
            record.tokens = spend.tokens
            if outcome is not None:
                record.errors = list(outcome.errors)
                record.unhandled = list(outcome.unhandled)
            record.status = "cancelled" if outcome is None else ("error" if record.errors else "ok")
            with anyio.CancelScope(shield=True):
                await _close_store(store, ctx, record)
                await _close_cache(spend, opened=spend.cache is not cache)
                if outcome is not None:
                    result.update(outcome.written)
                result["$state"] = record
                if reporter is not None:
                    reporter.close()
                if emit is not None:
                    emit(_run_end(started, record, outcome, result))
                await _flush(tracer, flush_timeout)
        if raise_on_error and record.errors:
            raise RunError(record.errors, result)
        return result

    async def stream(
        self, inputs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncIterator[Event]:
        """Run the graph and yield its events as they happen (see :mod:`hush.core.events`).

        Takes the same options as :meth:`run`. The last event is ``run_end``,
        whose ``result`` is what :meth:`run` returns. Leaving the loop early
        (``break``, an exception) cancels the run; wrap the call in
        ``contextlib.aclosing`` to have that happen at once rather than when the
        iterator is garbage-collected.
        """
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        context = contextvars.copy_context()
        context.run(_streamed_to.set, queue.put_nowait)
        task = asyncio.get_running_loop().create_task(self.run(inputs, **options), context=context)
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
                if event.kind == "run_end" and event.path == self.name:
                    break
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)

    def run_sync(self, inputs: Mapping[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        """Blocking ``run`` for scripts; inside a running event loop (Jupyter, an
        ``async def``) use ``await engine.run(...)`` instead."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                f"run_sync() of graph '{self.name}' was called inside a running event loop "
                "(Jupyter, or an async function); use 'await engine.run(...)' there"
            )

        async def main() -> dict[str, Any]:
            return await self.run(inputs, **options)

        return anyio.run(main)

    def _check_prices(self) -> None:
        """With ``max_cost``, every LLM resource the graph names must have a price."""
        unpriced = _unpriced_resources(self.graph)
        if unpriced:
            names = ", ".join(repr(k) for k in unpriced)
            which = f"resource {names} has" if len(unpriced) == 1 else f"resources {names} have"
            raise RunOptionError(
                f"max_cost needs a price for every LLM resource of graph '{self.name}', "
                f"but {which} none (set input_cost_per_mtok and output_cost_per_mtok)"
            )

    def _open_spend(
        self,
        max_cost: float | None,
        max_total_tokens: int | None,
        cache: bool | str | os.PathLike[str] | ResponseCache | None,
        store: CheckpointStore | None,
    ) -> RunSpend:
        """The run's spending ledger: inside the enclosing run's (a run started by a node),
        starting from what the run spent before it was resumed, saved in its checkpoint."""
        from hush.providers.cache import ResponseCache, default_cache_path

        opened: ResponseCache | None = None
        if isinstance(cache, ResponseCache):
            opened = cache
        elif cache is True:
            opened = _open_cache(default_cache_path())
        elif cache is not None and cache is not False:
            opened = _open_cache(cache)
        enclosing = current_spend.get()
        spend = RunSpend(
            max_cost=max_cost,
            max_total_tokens=max_total_tokens,
            cache=opened if opened is not None else (enclosing.cache if enclosing else None),
            parent=enclosing,
        )
        if store is not None:
            saved = store.get(SPEND_PATH, SPEND_KEY)
            if isinstance(saved, dict):
                spend.absorb(saved, propagate=False)
            spend.on_change = functools.partial(_save_spend, store)
        return spend

    async def _open_store(
        self,
        checkpoint: str | os.PathLike[str] | None,
        run_id: str,
        on_mismatch: Literal["error", "restart"],
        restart: bool,
    ) -> CheckpointStore | None:
        if checkpoint is None:
            return None
        from hush.checkpoint import fingerprint, open_checkpoint
        from hush.core.describe import describe

        digest = fingerprint(describe(self.graph))
        return await open_checkpoint(
            checkpoint, run_id, digest, on_mismatch=on_mismatch, restart=restart
        )


async def _close_store(store: CheckpointStore | None, ctx: RunContext, record: RunRecord) -> None:
    """Commit and close the checkpoint; a write failure becomes an error of the run."""
    if store is None:
        return
    from hush.checkpoint.errors import CheckpointWriteError

    assert ctx.checkpoint is not None
    failure = ctx.checkpoint.write_error
    try:
        if not store.failed:
            store.mark_finished(record.status)
        await store.aclose()
    except CheckpointWriteError as exc:
        if failure is None:
            failure = NodeError.from_exception(exc, record.graph)
    except Exception:
        logger.error("checkpoint: closing the store failed", exc_info=True)
    if failure is not None:
        record.errors.append(failure)
        record.unhandled.append(failure)
        if record.status == "ok":
            record.status = "error"


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


def _llm_stats() -> dict[str, dict[str, Any]]:
    """Snapshot of every LLM resource limiter in the process (none if LLMs are unused)."""
    limiter = sys.modules.get("hush.providers.limiter")
    if limiter is None:
        return {}
    return {key: dataclasses.asdict(lim.stats()) for key, lim in limiter.all_limiters().items()}


def _llm_delta(
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


def _unpriced_resources(graph: GraphNode) -> list[str]:
    """The LLM resources the graph's nodes name that have no price."""
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


SPEND_PATH, SPEND_KEY = "$spend", "totals"
"""Where a checkpoint keeps what its run's LLM calls spent."""


def _save_spend(store: CheckpointStore, summary: dict[str, dict[str, Any]]) -> None:
    if store.failed:
        return
    try:
        store.put(SPEND_PATH, SPEND_KEY, summary)
    except Exception:
        logger.warning("checkpoint: could not save the run's LLM spend", exc_info=True)


async def _close_cache(spend: RunSpend, *, opened: bool) -> None:
    """Commit the answers the run stored (and close the cache if the run opened it)."""
    if spend.cache is None or (spend.parent is not None and spend.cache is spend.parent.cache):
        return
    try:
        if opened:
            await asyncio.to_thread(spend.cache.close)
        else:
            await spend.cache.aflush()
    except Exception:
        logger.warning("response cache: could not commit the run's answers", exc_info=True)


def _open_cache(path: str | os.PathLike[str]) -> ResponseCache:
    from hush.providers.cache import ResponseCache

    try:
        return ResponseCache(path)
    except (OSError, sqlite3.Error) as exc:
        raise RunOptionError(f"cache: cannot open {os.fspath(path)!r} ({exc})") from exc


def _run_metadata(
    user_id: str | None,
    session_id: str | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"user_id": user_id, "session_id": session_id, "tags": list(tags or ())}
    out["metadata"] = dict(metadata or {})
    return out


def _subscribe(tracer: Tracer | None, started: Event) -> Subscriber | None:
    """The tracer's subscriber for this run; a tracer that fails here is left out."""
    if tracer is None:
        return None
    try:
        return tracer.subscribe(started)
    except Exception:
        logger.warning("tracer failed to start the run; continuing without tracing", exc_info=True)
        return None


def _run_end(
    started: Event, record: RunRecord, outcome: GraphOutcome | None, result: dict[str, Any]
) -> Event:
    error = record.errors[0] if record.errors else None
    return Event(
        "run_end",
        started.path,
        started.run_id,
        type="run",
        name=started.name,
        output=dict(outcome.written) if outcome is not None else None,
        status=record.status,
        error=error,
        duration=record.duration,
        node=started.node,
        result=result,
    )


async def _flush(tracer: Tracer | None, timeout: float | None) -> None:
    """Let the tracer export the run, for at most ``timeout`` (its own default if ``None``)."""
    if tracer is None:
        return
    try:
        with anyio.move_on_after((timeout if timeout is not None else 30.0) + 1):
            await tracer.flush(timeout)
    except Exception:
        logger.warning("tracer failed to finish the run", exc_info=True)
