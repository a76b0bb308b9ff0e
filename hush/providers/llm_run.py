"""The LLM side of a run, plugged in as run extensions (:mod:`hush.core.extensions`).

:func:`run_extensions` (registered by :mod:`hush`) gives every run an :class:`LLMRun`:
the run's spending ledger (:class:`~hush.providers.spend.RunSpend`, current for the
run's tasks, held to the ``budget=``, restored from and saved to the checkpoint), and
the counters of the run's own LLM calls (:mod:`hush.providers.run_counters`: not those
of other runs of the process) that fill ``$state.llm``, ``$state.cost`` and
``$state.tokens``. With ``cache=`` it also gives a :class:`CacheOpening`, which opens
the response cache before the checkpoint (so a cache that cannot open leaves no run
row) and commits or closes it when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import sqlite3
from typing import TYPE_CHECKING, Any

from hush.core.errors import RunOptionError
from hush.core.run_options import describe_value
from hush.providers import run_counters
from hush.providers.client_scope import client_scope
from hush.providers.spend import RunSpend, current
from hush.providers.usage import WorkSpend

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.extensions import RunExtension, RunScope
    from hush.core.nodes.graph.graph_node import GraphNode
    from hush.core.options import RunOptions
    from hush.core.run_options import Budget
    from hush.core.state import RunRecord
    from hush.providers.cache import ResponseCache

logger = logging.getLogger("hush.engine")

SPEND_PATH, SPEND_KEY = "$spend", "totals"
"""Where a checkpoint keeps what its run's LLM calls spent."""


def run_extensions(options: RunOptions) -> tuple[RunExtension, ...]:
    """The LLM extensions of a run with ``options`` (the ledger; the cache if asked)."""
    llm = LLMRun(options.budget)
    cache = options.cache
    if cache is None:
        return (llm,)
    if isinstance(cache, bool | str | os.PathLike):
        return CacheOpening(cache, llm), llm
    from hush.providers.cache import ResponseCache

    if not isinstance(cache, ResponseCache):
        raise RunOptionError(
            f"cache must be a file path, True or a ResponseCache, got {describe_value(cache)}"
        )
    return CacheOpening(cache, llm), llm


class LLMRun:
    """One run's spending ledger and LLM counters (a run extension and a meter)."""

    name = "llm"
    reads_checkpoint = True
    __slots__ = ("_clients", "_counters", "_tokens", "budget", "cache", "spend")

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.cache: ResponseCache | None = None
        """The run's response cache (set by its :class:`CacheOpening`)."""
        self.spend: RunSpend | None = None
        """The run's ledger, from :meth:`open` on."""
        self._counters: run_counters.RunCounters | None = None
        self._tokens: tuple[contextvars.Token[Any], contextvars.Token[Any]] | None = None
        self._clients: contextlib.AbstractAsyncContextManager[Any] | None = None

    def check(self, graph: GraphNode) -> None:
        """With ``max_cost``, every LLM resource the graph names must have a price."""
        if self.budget is None or self.budget.max_cost is None:
            return
        unpriced = unpriced_resources(graph)
        if unpriced:
            names = ", ".join(repr(k) for k in unpriced)
            which = f"resource {names} has" if len(unpriced) == 1 else f"resources {names} have"
            raise RunOptionError(
                f"max_cost needs a price for every LLM resource of graph '{graph.name}', "
                f"but {which} none (set input_cost_per_mtok and output_cost_per_mtok)"
            )

    def open(self, scope: RunScope) -> LLMRun:
        """Make the run's ledger current and count its LLM calls while the run lasts."""
        self.spend = _ledger(self.budget, self.cache, scope.store)
        return self

    async def __aenter__(self) -> None:
        # What run_counters.counting() does, without a generator per run: fresh counters
        # inside the enclosing run's, current for the run's tasks.
        counters = self._counters = run_counters.RunCounters(run_counters.current.get())
        self._clients = client_scope()
        await self._clients.__aenter__()
        self._tokens = (current.set(self.spend), run_counters.current.set(counters))

    async def __aexit__(self, *exc: object) -> None:
        assert self.spend is not None and self._tokens is not None
        spend_token, counters_token = self._tokens
        try:
            self.spend.save()
        finally:
            run_counters.current.reset(counters_token)
            current.reset(spend_token)
            if self._clients is not None:
                await self._clients.__aexit__(None, None, None)

    def finish(self, record: RunRecord) -> None:
        """Fill ``$state.llm``, ``$state.cost`` and ``$state.tokens``."""
        spend, counters = self.spend, self._counters
        assert spend is not None
        counted = {}
        if counters is not None and counters.snapshot():
            counted = run_counters.llm_report(counters)
        for key, spent in spend.summary().items():
            counted[key] = {**counted.get(key, {}), **spent}
        record.llm = counted
        record.cost = spend.cost
        record.tokens = spend.tokens

    def work(self) -> WorkSpend:
        """Count what one piece of work's calls spend apart, to be saved with it."""
        assert self.spend is not None
        return WorkSpend(self.spend)

    def flush(self) -> None:
        """Hand what no saved work holds to the checkpoint now."""
        if self.spend is not None:
            self.spend.save()


class CacheOpening:
    """Opens the run's response cache before the checkpoint; commits or closes it at the end."""

    name = "cache"
    reads_checkpoint = False
    __slots__ = ("cache", "given", "llm")

    def __init__(self, given: Any, llm: LLMRun) -> None:
        self.given = given
        self.llm = llm
        self.cache: ResponseCache | None = None

    def check(self, graph: GraphNode) -> None:
        """Nothing to check before opening (the file is tried when the run opens)."""

    @contextlib.asynccontextmanager
    async def open(self, scope: RunScope) -> Any:
        """The cache while the run lasts: one it opened is closed, one it was handed committed."""
        from hush.providers.cache import ResponseCache, default_cache_path

        given = self.given
        if isinstance(given, ResponseCache):
            self.llm.cache = given
            try:
                yield
            finally:
                await given.aflush()
            return
        path = default_cache_path() if given is True else given
        try:
            cache = ResponseCache(path)
        except (OSError, sqlite3.Error) as exc:
            raise RunOptionError(f"cache: cannot open {os.fspath(path)!r} ({exc})") from exc
        self.llm.cache = cache
        try:
            yield
        finally:
            await asyncio.to_thread(cache.close)

    def finish(self, record: RunRecord) -> None:
        """The cache fills nothing in the record (its answers are counted by the ledger)."""


def _ledger(
    budget: Budget | None, cache: ResponseCache | None, store: CheckpointStore | None
) -> RunSpend:
    """The run's spending ledger: inside the enclosing run's (a run started by a node),
    starting from what the run spent before it was resumed, saved in its checkpoint."""
    enclosing = current.get()
    spend = RunSpend(
        max_cost=budget.max_cost if budget is not None else None,
        max_total_tokens=budget.max_total_tokens if budget is not None else None,
        cache=cache if cache is not None else (enclosing.cache if enclosing else None),
        parent=enclosing,
    )
    if store is not None:
        saved = store.load(SPEND_PATH, SPEND_KEY)
        if isinstance(saved, dict):
            spend.absorb(saved, propagate=False)
        spend.on_change = functools.partial(_save_spend, store)
    return spend


def _save_spend(store: CheckpointStore, summary: dict[str, dict[str, Any]]) -> None:
    if store.failed:
        return
    try:
        store.save(SPEND_PATH, SPEND_KEY, summary)
    except Exception:
        logger.warning("checkpoint: could not save the run's LLM spend", exc_info=True)


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
