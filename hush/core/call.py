"""``NodeCall``: what one attempt of a node is handed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from hush.core.events import Event, LLMCall
from hush.core.events import progress as progress_event
from hush.core.items import ItemOutcome, run_item
from hush.core.outcome import Outcome
from hush.core.state import IterationCounters

if TYPE_CHECKING:
    from hush.core.checkpointing import ItemKeys
    from hush.core.executor import ItemExecutor
    from hush.core.extensions import Usage
    from hush.core.nodes.base import BaseNode
    from hush.core.outcome import GraphOutcome
    from hush.core.plan import GraphPlan, NodePlan
    from hush.core.policies import RetryPolicy
    from hush.core.runtime import Frame

logger = logging.getLogger("hush.runtime")


class NodeCall:
    """What one attempt of a node is handed: its path, the means to run inside it, and to
    report what it does (tokens, LLM calls, progress) to the run's subscribers.

    Containers run sub-graphs with :meth:`run_graph` and items with
    :meth:`run_item`; what those report is merged into this attempt's
    :attr:`outcome`, which the node's graph merges only if the attempt is accepted. Nodes that own their retry
    and timeout (``owns_policy``) read :attr:`retry` and :attr:`timeout`.
    """

    __slots__ = (
        "_shared",
        "_threads",
        "attempt",
        "demanded",
        "frame",
        "node",
        "node_path",
        "outcome",
        "path",
        "run",
    )

    def __init__(self, frame: Frame, np: NodePlan, path: str, attempt: int) -> None:
        self.frame = frame
        self.run = frame.run
        self.node: BaseNode = np.node
        self.demanded = np.demanded
        """Output keys read downstream: an iteration node returns them even when no item ran
        (with, after a ``"*"`` write, the keys read later that the graph's state lacks)."""
        if np.expected:
            self.demanded = np.demanded | (np.expected - frame.state.keys())
        self.path = path
        self.node_path = np.path
        """The node's path without item indices (the same for every item)."""
        self.attempt = attempt
        """This attempt's number (from 1); a node owning its retry loop sets the attempts it made."""
        self.outcome = Outcome()
        """What ran inside this attempt reported (its nested graphs and items)."""
        self._threads: list[asyncio.Future[None]] = []
        self._shared: ItemKeys | None = None

    @property
    def retry(self) -> RetryPolicy | None:
        """The node's retry policy."""
        return self.node.retry

    @property
    def timeout(self) -> float | None:
        """The node's per-attempt timeout."""
        return self.node.timeout

    async def run_graph(self, plan: GraphPlan, state: dict[str, Any]) -> GraphOutcome:
        """Run a nested graph (a ``GraphNode`` body) as part of this attempt."""
        frame = self.frame
        outcome = await frame.execute(plan, state, self.path, self, in_item=frame.in_item)
        self.outcome.merge(outcome)
        return outcome

    def run_item(
        self,
        plan: GraphPlan,
        index: int,
        shared: dict[str, Any],
        own: dict[str, Any],
        *,
        wait_saved: bool = True,
        executor: ItemExecutor | None = None,
        usage: Usage | None = None,
    ) -> Coroutine[Any, Any, ItemOutcome]:
        """Run item ``index`` of an iteration node (await the result).

        ``shared`` inputs are the same dict for every item (digested once),
        ``own`` are this item's. See :func:`hush.core.items.run_item`.
        """
        return run_item(
            self, plan, index, shared, own, wait_saved=wait_saved, executor=executor, usage=usage
        )

    async def saved(self, saving: int | None) -> None:
        """Wait until an item's result is committed (a failed write is kept for the run)."""
        if saving is not None:
            assert self.run.checkpoint is not None
            await self.run.checkpoint.saved(self.path, saving)

    def counters(self, total: int | None) -> IterationCounters:
        """Live counters for an iteration node, registered on the run record."""
        counters = IterationCounters(total=total)
        self.run.record.iterations[self.path] = counters
        self.progress(counters)
        return counters

    @property
    def observed(self) -> bool:
        """Whether anything subscribes to this run's events (tokens, progress)."""
        return self.run.emit is not None

    def progress(self, counters: IterationCounters) -> None:
        """Report an iteration node's counters (a ``progress`` event)."""
        emit = self.run.emit
        if emit is not None:
            emit(
                progress_event(
                    self.path,
                    self.run.run_id,
                    self.node.trace_kind,  # type: ignore[arg-type]
                    self.node.name,
                    counters,
                    self.node_path,
                )
            )

    def token(self, text: str, attempt: int = 1) -> None:
        """Report a piece of a streamed LLM reply (a ``token`` event); ``attempt`` is the
        request's attempt number (a retried request streams again from its start)."""
        emit = self.run.emit
        if emit is not None:
            emit(
                Event(
                    "token",
                    self.path,
                    self.run.run_id,
                    text=text,
                    attempts=attempt,
                    node=self.node_path,
                )
            )

    def llm_call(self, call: LLMCall) -> None:
        """Report one finished LLM request (an ``llm`` event)."""
        emit = self.run.emit
        if emit is not None:
            emit(Event("llm", self.path, self.run.run_id, llm=call, node=self.node_path))

    def track(self, finished: asyncio.Future[None]) -> None:
        """A worker thread started inside this attempt: the next attempt of this node, and of
        every container around it, waits until it ends."""
        self._threads.append(finished)
        owner = self.frame.owner
        if owner is not None:
            owner.track(finished)

    async def threads_ended(self) -> None:
        """Wait for threads this attempt left running (a sync call that timed out)."""
        running = [f for f in self._threads if not f.done()]
        if running:
            logger.info(
                "node %s: waiting for the previous attempt's thread to finish before retrying",
                self.path,
            )
            await asyncio.gather(*(asyncio.shield(f) for f in running))

    def item_keys(self) -> ItemKeys | None:
        """The content keys of an iteration node's items in this attempt (with a checkpoint)."""
        checkpoint = self.run.checkpoint
        if checkpoint is None:
            return None
        if self._shared is None:
            self._shared = checkpoint.item_keys(self.path)
        return self._shared
