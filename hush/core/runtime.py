"""The scheduler: walks a compiled graph plan, event-driven.

A node starts the moment its last predecessor finishes: finishing a node
decrements its successors' counters, and those reaching zero run. Skips
propagate through the same counters, so there is no second pass and no barrier
between unrelated branches. What happens to one node is
:func:`hush.core.lifecycle.run_node`; this module only decides when.

Ready nodes run in the task that made them ready for as long as they do not
suspend (:func:`_chain`, a trampoline): a fan-out of nodes that never wait
costs no task at all. Only when a node suspends do the other ready nodes move
to new tasks of the graph's :class:`asyncio.TaskGroup` (one per graph
execution, owning every task it starts; anyio's cost about five times as much
per task).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from hush.core.errors import NodeError, NodeTimeoutError
from hush.core.inputs import ERROR, OK
from hush.core.lifecycle import run_node
from hush.core.outcome import GraphOutcome, Outcome
from hush.core.state import NodeLog
from hush.core.stepping import finish

if TYPE_CHECKING:
    from hush.core.call import NodeCall
    from hush.core.context import RunContext
    from hush.core.plan import GraphPlan, NodePlan
    from hush.core.state import Status

SKIPPED: Final = "skipped"
YIELD_EVERY: Final = 1000
"""Nodes one task runs without suspending before it lets the event loop run other tasks."""

__all__ = ["SKIPPED", "Frame", "GraphOutcome", "execute"]


class Frame:
    """The state of one execution of one graph plan.

    Outside any map item (``in_item`` false) nodes have fixed paths and are
    recorded one by one on the run record. Inside a map item their clean
    results are snapshotted as they finish (the outcome's ``saves``) and
    written only if the item does not end clean. What the nodes report is
    merged into :attr:`outcome`.
    """

    __slots__ = (
        "blocked",
        "fast",
        "first_error",
        "hard",
        "in_item",
        "log",
        "lookups",
        "node_errors",
        "outcome",
        "outputs",
        "owner",
        "plan",
        "prefix",
        "run",
        "soft",
        "soft_ok",
        "state",
        "status",
        "tg",
        "written",
    )

    def __init__(
        self,
        plan: GraphPlan,
        state: dict[str, Any],
        run: RunContext,
        prefix: str,
        *,
        in_item: bool,
        owner: NodeCall | None = None,
    ) -> None:
        n = len(plan.nodes)
        self.owner = owner
        self.plan = plan
        self.state = state
        self.run = run
        self.prefix = prefix
        self.in_item = in_item
        checkpoint = run.checkpoint
        self.lookups = (
            checkpoint is not None
            and checkpoint.resuming
            and (not in_item or checkpoint.has_under(prefix + "/"))
        )
        """Whether nodes look for saved results (inside an item: only if the file has some)."""
        self.fast = run.plain or (
            run.slot is None and in_item and not self.lookups and len(plan.nodes) == 1
        )
        """Plain nodes may take the scheduler's fast path: nothing to look up, save or limit
        (an item of one node is saved whole or not at all, so its node takes no snapshot)."""
        self.written: dict[str, Any] = {}
        self.outputs: list[Any] = [None] * n
        self.node_errors: list[NodeError | None] = [None] * n
        self.status: list[Status | None] = [None] * n
        self.hard = list(plan.hard_counts)
        self.soft = list(plan.soft_counts)
        self.soft_ok: set[int] = set()
        self.blocked: set[int] = set()
        self.first_error: NodeError | None = None
        self.outcome = Outcome()
        self.tg: asyncio.TaskGroup | None = None
        self.log: NodeLog | None = None
        if not in_item:
            self.log = NodeLog(plan, self.status, self.outputs, self.node_errors)
            run.record.logs.append(self.log)

    def path_of(self, np: NodePlan) -> str:
        """The path of a node in this execution (with map indices when inside an item)."""
        return f"{self.prefix}/{np.name}" if self.in_item else np.path

    def execute(
        self,
        plan: GraphPlan,
        state: dict[str, Any],
        prefix: str,
        owner: NodeCall,
        *,
        in_item: bool,
        run: RunContext | None = None,
    ) -> Coroutine[Any, Any, GraphOutcome]:
        """Run a graph inside one of this frame's nodes (a container's body, a map item):
        how the lifecycle reaches the scheduler without importing it. ``run``: the run as
        the graph sees it, if not as this frame does (an untraced map item)."""
        return execute(plan, state, run or self.run, prefix, in_item=in_item, owner=owner)


async def execute(
    plan: GraphPlan,
    state: dict[str, Any],
    run: RunContext,
    prefix: str,
    *,
    in_item: bool,
    owner: NodeCall | None = None,
    timeout: float | None = None,
) -> GraphOutcome:
    """Run one graph plan with ``state`` as its ``PARENT``; return its outcome.

    ``in_item``: the graph is a map item's body (or inside one). ``owner`` is the attempt of the container running it (``None`` for the root).
    ``timeout`` (the root graph's own; a nested graph's is its attempt's) cancels the
    nodes still running when it expires and makes that the graph's error, keeping what
    the finished nodes wrote.
    """
    frame = Frame(plan, state, run, prefix, in_item=in_item, owner=owner)
    if timeout is None:
        await _walk(frame)
    else:
        try:
            async with asyncio.timeout(timeout) as scope:
                await _walk(frame)
        except TimeoutError:
            if not scope.expired():
                raise
            _expired(frame, prefix, timeout)
    outcome = frame.outcome
    saves = outcome.saves if outcome.errors else ()
    return GraphOutcome(frame.written, frame.first_error, outcome.errors, outcome.unhandled, saves)


def _expired(frame: Frame, path: str, timeout: float) -> None:
    """The graph ran out of time: its own timeout is its first error."""
    error = NodeError.from_exception(NodeTimeoutError(f"timed out after {timeout:g}s"), path)
    frame.outcome.fail(error, handled=False)
    if frame.first_error is None:
        frame.first_error = error


async def _walk(frame: Frame) -> None:
    """Run the frame's nodes, each as soon as its predecessors finished."""
    plan = frame.plan
    if plan.linear:
        await _line(frame, plan.initial[0])
    elif plan.initial:
        try:
            async with asyncio.TaskGroup() as tg:
                frame.tg = tg
                await _chain(frame, plan.initial)
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None


async def _line(frame: Frame, i: int) -> None:
    """A graph without fan-out or fan-in: each node after the one before, in this task."""
    while True:
        await run_node(frame, i)
        after = _propagate(frame, i)
        if not after:
            return
        i = after[0]


async def _chain(frame: Frame, ready: Sequence[int]) -> None:
    """Run the ``ready`` nodes and whatever they make ready: the trampoline.

    Each node's lifecycle is stepped in this task until it first suspends. A node that
    never does (the usual code node) is then done, with no task of its own; the first
    node it made ready runs next, the others queue here. A node that suspends keeps
    this task, and what is queued goes to new tasks first, so that it runs meanwhile.
    Nothing recurses, however long the chain; every :data:`YIELD_EVERY` nodes run here
    without suspending, this task lets the event loop run its other tasks.
    """
    queue = deque(ready)
    ran = 0
    while queue:
        i = queue.popleft()
        while True:
            coro = run_node(frame, i)
            try:
                yielded = coro.send(None)
            except StopIteration:
                ran += 1
                if ran == YIELD_EVERY:
                    ran = 0
                    await asyncio.sleep(0)
            else:
                tg = frame.tg
                assert tg is not None
                while queue:
                    tg.create_task(_chain(frame, (queue.popleft(),)))
                await finish(coro, yielded)
            after = _propagate(frame, i)
            if not after:
                break
            i = after[0]
            if len(after) > 1:
                queue.extend(after[1:])


def _propagate(frame: Frame, first: int) -> list[int]:
    """Count ``first`` as finished; return successors ready to run, skipping blocked ones
    (and, through them, whatever only they lead to)."""
    nodes = frame.plan.nodes
    hard, soft, status = frame.hard, frame.soft, frame.status
    ready: list[int] = []
    skipped: list[int] | None = None
    k = first
    while True:
        np = nodes[k]
        st: Status | None = status[k]
        targets = np.route_targets
        chosen = None
        if targets is not None and st == OK:
            chosen = np.node.select(frame.outputs[k] or {})
        for j, is_soft in np.successors:
            eff: Status | None = st
            if (
                chosen is not None
                and targets is not None
                and j in targets
                and nodes[j].name != chosen
            ):
                eff = SKIPPED
            if is_soft:
                soft[j] -= 1
                if eff == OK:
                    frame.soft_ok.add(j)
            else:
                hard[j] -= 1
                if eff != OK and not (eff == ERROR and k in nodes[j].handles):
                    frame.blocked.add(j)
            if hard[j] == 0 and soft[j] == 0:
                if j in frame.blocked or (nodes[j].soft_preds and j not in frame.soft_ok):
                    _skip(frame, j)
                    if skipped is None:
                        skipped = [j]
                    else:
                        skipped.append(j)
                else:
                    ready.append(j)
        if not skipped:
            return ready
        k = skipped.pop()


def _skip(frame: Frame, j: int) -> None:
    frame.status[j] = SKIPPED
    if frame.log is not None:
        frame.run.record.order.append(frame.plan.nodes[j].path)
