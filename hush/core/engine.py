"""``Hush``: runs a built graph, as many times and as concurrently as you like."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import difflib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from hush.core import run_resources
from hush.core.checkpointing import RunCheckpoint
from hush.core.context import RunContext
from hush.core.errors import MissingInputError, RunError, RunOptionError
from hush.core.events import Event
from hush.core.extensions import extensions_for
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.nodes.iteration.base import IterationNode
from hush.core.options import (
    DEFAULT_OPTIONS,
    DEPRECATED,
    RunOptions,
    run_options,
    translate_deprecated,
)
from hush.core.progress import reporter_for
from hush.core.run_events import Announcement
from hush.core.run_options import (
    Budget,
    Checkpoint,
    Labels,
    Progress,
    ProgressCallback,
    describe_value,
)
from hush.core.runtime import GraphOutcome, execute
from hush.core.state import RunRecord
from hush.core.streaming import DEFAULT_LIMIT, EventBuffer

if TYPE_CHECKING:
    from hush.core.executor import ItemExecutor
    from hush.core.plan import GraphPlan
    from hush.core.run_events import Tracer

logger = logging.getLogger("hush.engine")

_streamed_to: contextvars.ContextVar[EventBuffer | None] = contextvars.ContextVar(
    "hush_streamed_to", default=None
)
"""Where :meth:`Hush.stream` wants the events of the run it starts (that run only: the run
clears it for the tasks it starts)."""

_Run = TypeVar("_Run", bound=Callable[..., Coroutine[Any, Any, dict[str, Any]]])


def _accepting_deprecated_options(run: _Run) -> _Run:
    """``Hush.run`` that also takes the keywords of earlier releases (one warning naming
    the new spelling). A wrapper rather than a ``**deprecated`` catch-all, so that
    ``inspect.signature`` and editors show only the current options and a misspelt
    keyword is still a ``TypeError``."""

    @functools.wraps(run)
    async def accepting(
        self: Hush, inputs: Mapping[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        if not options:
            return await self._run(inputs, DEFAULT_OPTIONS)
        if not DEPRECATED.keys().isdisjoint(options):
            return await self._run(inputs, translate_deprecated("Hush.run", options))
        result: dict[str, Any] = await run(self, inputs, **options)
        return result

    return accepting  # type: ignore[return-value]


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

    @_accepting_deprecated_options
    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        tracer: Tracer | None = None,
        labels: Labels | None = None,
        checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
        budget: Budget | None = None,
        cache: bool | str | os.PathLike[str] | Any = None,
        progress: bool | ProgressCallback | Progress | None = None,
        max_running_nodes: int | None = None,
        executor: ItemExecutor | None = None,
        raise_on_error: bool = False,
    ) -> dict[str, Any]:
        """Run the graph once and return what its nodes wrote to ``PARENT``.

        ``result["$state"]`` is the :class:`~hush.core.state.RunRecord`. ``tracer``
        receives the run's events; ``labels`` (:class:`Labels`) name the user, session,
        tags and metadata on its trace. With ``checkpoint`` (a SQLite path, or a
        :class:`Checkpoint` to say what to do with what an earlier run saved) finished
        nodes and map items are saved as they finish, keyed by their inputs, and reused
        when the same ``run_id`` runs again. ``budget`` (:class:`Budget`) bounds what the
        run's LLM calls may spend: a call that does not fit is not sent and fails with
        ``BudgetExceededError``. ``cache`` (``True`` for the default file, a path, or a
        ``ResponseCache``) answers LLM calls asked before. ``progress`` shows live bars for
        maps (default: when stderr is a terminal); a callable (or
        ``Progress(on_update=...)``) receives the counters a few times a second. With
        ``max_running_nodes`` at most that many leaf nodes run at once across all nesting
        levels. ``executor`` (such as ``RayExecutor``) runs the items of every map that
        sets none and is not inside another map's item. ``raise_on_error`` raises
        :class:`RunError` when a node failed.

        The keywords of earlier releases (``max_concurrency``, ``user_id``, ``max_cost``,
        ``restart``...) still work, with a ``DeprecationWarning`` naming the new spelling.

        Every option is checked before anything is opened; the run's extensions (LLM spend,
        cache) and the checkpoint are opened before ``run_start`` and closed in one place,
        and ``run_end`` always follows ``run_start``. The root graph's ``timeout`` bounds
        the run: nodes still running then are cancelled and the timeout is the run's error.
        """
        options = run_options(
            run_id=run_id,
            tracer=tracer,
            labels=labels,
            checkpoint=checkpoint,
            budget=budget,
            cache=cache,
            progress=progress,
            max_running_nodes=max_running_nodes,
            executor=executor,
            raise_on_error=raise_on_error,
        )
        return await self._run(inputs, options)

    async def _run(self, inputs: Mapping[str, Any] | None, options: RunOptions) -> dict[str, Any]:
        """The run itself, with checked options (see :meth:`run`)."""
        stream = _streamed_to.get()
        if stream is not None:
            _streamed_to.set(None)
        if inputs is None:
            inputs = {}
        elif not isinstance(inputs, Mapping):
            raise RunOptionError(f"inputs must be a dict, got {type(inputs).__name__}")
        self.check_inputs(inputs)
        extensions = extensions_for(options)
        for extension in extensions:
            extension.check(self.graph)
        record = RunRecord(run_id=options.run_id or new_run_id(), graph=self.name)
        result: dict[str, Any] = {}
        announced = Announcement(
            self.name,
            record,
            inputs,
            options.labels.as_metadata(),
            tracer=options.tracer,
            reporter=reporter_for(options.progress),
            stream=stream,
        )
        stack = contextlib.AsyncExitStack()
        try:
            stack.push_async_callback(announced.end, result, options.flush_timeout)
            resources = await run_resources.open_into(
                stack, self.graph, record, options.checkpoint, extensions
            )
            await self._execute(inputs, record, result, resources, announced, options)
        finally:
            with _shielded():
                await stack.aclose()
        if options.raise_on_error and record.errors:
            raise RunError(record.errors, result)
        return result

    async def _execute(
        self,
        inputs: Mapping[str, Any],
        record: RunRecord,
        result: dict[str, Any],
        resources: run_resources.RunResources,
        announced: Announcement,
        options: RunOptions,
    ) -> None:
        """Announce the run, walk the root graph, and fill in the record and the result."""
        emit = announced.start()
        record.started_at = time.time()
        store = resources.store
        cap = options.max_running_nodes
        ctx = RunContext(
            record.run_id,
            record,
            emit=emit,
            slot=asyncio.Semaphore(cap) if cap else None,
            checkpoint=RunCheckpoint(store) if store is not None else None,
            executor=options.executor,
            meters=resources.meters,
        )
        outcome: GraphOutcome | None = None
        try:
            outcome = await execute(
                self.plan,
                dict(inputs),
                ctx,
                self.name,
                in_item=False,
                timeout=self.graph.timeout,
            )
        finally:
            record.duration = ctx.now()
            for extension in resources.extensions:
                extension.finish(record)
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


def new_run_id() -> str:
    """A fresh run id: the 32 hex digits of a random (version 4) UUID, as
    ``uuid.uuid4().hex`` gives, made from ``os.urandom`` directly (a quarter of the cost,
    and no ``uuid`` import before a command's first request)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


_shield_type: type[anyio.CancelScope] | None = None


def _shielded() -> anyio.CancelScope:
    """A cancel scope shielding what it holds: the running backend's scope class, looked
    up once (``anyio.CancelScope()`` asks ``sniffio`` for the backend at every call; the
    engine runs on asyncio only)."""
    global _shield_type
    if _shield_type is None:
        _shield_type = type(anyio.CancelScope())
    return _shield_type(shield=True)


def _did_you_mean(key: str, missing: list[str]) -> str:
    """``'qeury' (did you mean 'query'?)``, or just ``'qeury'``."""
    close = difflib.get_close_matches(key, missing, n=1, cutoff=0.6)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
