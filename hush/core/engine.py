"""``Hush``: runs a built graph, as many times and as concurrently as you like."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import difflib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

from hush.core import run_resources
from hush.core.checkpointing import RunCheckpoint
from hush.core.context import RunContext
from hush.core.errors import MissingInputError, RunError, RunOptionError
from hush.core.events import Event
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.nodes.iteration.base import IterationNode
from hush.core.options import check_run_options, describe_value
from hush.core.progress import ProgressCallback, ProgressReporter, want_display
from hush.core.run_events import Announcement, run_metadata
from hush.core.runtime import GraphOutcome, execute
from hush.core.state import RunRecord
from hush.core.streaming import DEFAULT_LIMIT, EventBuffer

if TYPE_CHECKING:
    from hush.core.executor import ItemExecutor
    from hush.core.plan import GraphPlan
    from hush.observability.tracer import Tracer
    from hush.providers.cache import ResponseCache

logger = logging.getLogger("hush.engine")

_streamed_to: contextvars.ContextVar[EventBuffer | None] = contextvars.ContextVar(
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
        """Raise :class:`MissingInputError` when root nodes read keys the inputs lack,
        naming the keys given that nothing reads (with the likely intended one)."""
        missing = sorted(self.plan.required_inputs - set(inputs))
        if not missing:
            return
        readers = []
        for np in self.plan.nodes:
            for b in np.bindings:
                if b.key in missing and b.source.startswith("PARENT"):
                    readers.append(f"{np.node.path} (input '{b.name}' reads {b.source})")
        message = (
            f"run inputs of graph '{self.name}' lack {', '.join(repr(k) for k in missing)}, "
            f"read by: {'; '.join(readers)}"
        )
        unread = sorted(str(k) for k in inputs if k not in self.plan.reads_parent)
        if unread:
            message += "; got unexpected " + ", ".join(_did_you_mean(k, missing) for k in unread)
        raise MissingInputError(message)

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

        Every option is checked before anything is opened; the cache, the checkpoint and
        the ledger are opened before ``run_start`` and closed in one place, and
        ``run_end`` always follows ``run_start``. The root graph's ``timeout`` bounds the
        run: nodes still running then are cancelled and the timeout is the run's error.
        """
        stream = _streamed_to.get()
        if stream is not None:
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
        record = RunRecord(run_id=run_id or uuid.uuid4().hex, graph=self.name)
        result: dict[str, Any] = {}
        announced = Announcement(
            self.name,
            record,
            inputs,
            run_metadata(user_id, session_id, tags, metadata),
            tracer=tracer,
            reporter=(
                ProgressReporter(show=want_display(progress), callback=on_progress)
                if want_display(progress) or on_progress is not None
                else None
            ),
            stream=stream,
        )
        stack = contextlib.AsyncExitStack()
        try:
            stack.push_async_callback(announced.end, result, flush_timeout)
            resources = await stack.enter_async_context(
                run_resources.opened(
                    self.graph,
                    record,
                    checkpoint=checkpoint,
                    on_mismatch=on_checkpoint_mismatch,
                    restart=restart,
                    cache=cache,
                    max_cost=max_cost,
                    max_total_tokens=max_total_tokens,
                )
            )
            await self._execute(
                inputs, record, result, resources, announced, max_concurrency, executor
            )
        finally:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
        if raise_on_error and record.errors:
            raise RunError(record.errors, result)
        return result

    async def _execute(
        self,
        inputs: Mapping[str, Any],
        record: RunRecord,
        result: dict[str, Any],
        resources: run_resources.RunResources,
        announced: Announcement,
        max_concurrency: int | None,
        executor: ItemExecutor | None,
    ) -> None:
        """Announce the run, walk the root graph, and fill in the record and the result."""
        emit = announced.start()
        record.started_at = time.time()
        store = resources.store
        ctx = RunContext(
            record.run_id,
            record,
            emit=emit,
            slot=asyncio.Semaphore(max_concurrency) if max_concurrency else None,
            checkpoint=RunCheckpoint(store) if store is not None else None,
            executor=executor,
        )
        spend = resources.spend
        outcome: GraphOutcome | None = None
        llm_before = run_resources.llm_stats()
        try:
            outcome = await execute(
                self.plan,
                dict(inputs),
                ctx,
                self.name,
                static=True,
                defer=False,
                timeout=self.graph.timeout,
            )
        finally:
            record.duration = ctx.now()
            record.llm = run_resources.llm_delta(llm_before, run_resources.llm_stats(), spend)
            record.cost = spend.cost
            record.tokens = spend.tokens
            if outcome is not None:
                record.errors = list(outcome.errors)
                record.unhandled = list(outcome.unhandled)
                result.update(outcome.written)
                announced.output = dict(outcome.written)
            result["$state"] = record
            record.status = "cancelled" if outcome is None else ("error" if record.errors else "ok")
            if ctx.checkpoint is not None:
                resources.write_error = ctx.checkpoint.write_error

    async def stream(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        buffer: int = DEFAULT_LIMIT,
        **options: Any,
    ) -> AsyncIterator[Event]:
        """Run the graph and yield its events as they happen (see :mod:`hush.core.events`).

        Takes the same options as :meth:`run`. The last event is ``run_end``,
        whose ``result`` is what :meth:`run` returns. Leaving the loop early
        (``break``, an exception) cancels the run; wrap the call in
        ``contextlib.aclosing`` to have that happen at once rather than when the
        iterator is garbage-collected. When ``buffer`` events wait for the loop, the
        run holds back its next nodes and drops (and counts, in ``$state.dropped_tokens``)
        further ``token`` events, so a slow loop never makes it buffer without bound.
        """
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise RunOptionError(f"buffer must be a positive int, got {describe_value(buffer)}")
        events = EventBuffer(buffer)
        context = contextvars.copy_context()
        context.run(_streamed_to.set, events)
        task = asyncio.get_running_loop().create_task(self.run(inputs, **options), context=context)
        task.add_done_callback(lambda _: events.close())
        try:
            while True:
                event = await events.get()
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
        unpriced = run_resources.unpriced_resources(self.graph)
        if unpriced:
            names = ", ".join(repr(k) for k in unpriced)
            which = f"resource {names} has" if len(unpriced) == 1 else f"resources {names} have"
            raise RunOptionError(
                f"max_cost needs a price for every LLM resource of graph '{self.name}', "
                f"but {which} none (set input_cost_per_mtok and output_cost_per_mtok)"
            )


def _did_you_mean(key: str, missing: list[str]) -> str:
    """``'qeury' (did you mean 'query'?)``, or just ``'qeury'``."""
    close = difflib.get_close_matches(key, missing, n=1, cutoff=0.6)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
