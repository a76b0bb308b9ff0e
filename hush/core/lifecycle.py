"""The node-attempt lifecycle: what happens to one node, and to one map item.

A node, in one execution of its graph (:func:`run_node`):

1. resolve its inputs;
2. look up the checkpoint, by the node's path and a digest of those inputs;
3. attempt, as often as its retry policy allows for a retryable error:
   take the run-wide slot (leaves only) → start the attempt's timeout → run →
   classify (ok, error, timeout; a ``CancelledError`` that nobody asked for is
   an error); between attempts the slot is free while it backs off;
4. write its outputs (or its error) into the graph state;
5. save it, if nothing inside it failed;
6. record it.

Its span opens once the inputs are known and closes in ``finally`` with a
status: ok, error, timeout or cancelled. A container's children report to the
:class:`NodeCall` of the attempt that runs them; the node merges what they
report (errors, deferred saves) only from the attempt it accepts.

A map item (:func:`run_item`) takes the same steps without slot or retries:
look up, run the body, save, and hand its outcome to the map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple

from hush.checkpoint.errors import CheckpointWriteError
from hush.core import runtime
from hush.core.errors import (
    NodeCancelledError,
    NodeError,
    NodeFailedError,
    NodeInputError,
    NodeReturnError,
    NodeTimeoutError,
)
from hush.core.inputs import ERROR, OK, resolve, resolve_inputs
from hush.core.state import IterationCounters

if TYPE_CHECKING:
    from hush.core.nodes.base import BaseNode
    from hush.core.plan import GraphPlan, NodePlan
    from hush.core.policies import RetryPolicy
    from hush.core.runtime import Frame, GraphOutcome
    from hush.core.state import Status
    from hush.observability.tracer import Span

logger = logging.getLogger("hush.runtime")


class Done:
    """How a node's work ended: its outputs or error, and the attempt that produced them."""

    __slots__ = ("call", "error", "key", "outputs", "own", "resumed", "status")

    def __init__(
        self,
        status: Status,
        outputs: Mapping[str, Any] | None = None,
        error: NodeError | None = None,
        call: NodeCall | None = None,
        *,
        own: bool = True,
        resumed: bool = False,
    ) -> None:
        self.status = status
        self.outputs = outputs
        self.error = error
        self.call = call
        self.own = own
        """The error is this node's own, not one carried up from inside it."""
        self.resumed = resumed
        self.key: str | None = None

    @property
    def clean(self) -> bool:
        """Succeeded with nothing failing inside: may be saved and reused."""
        return self.status == OK and (self.call is None or not self.call.errors)


class ItemOutcome(NamedTuple):
    """What one map item (or loop iteration) gives its iteration node."""

    written: dict[str, Any]
    error: NodeError | None
    resumed: bool
    saving: asyncio.Future[None] | None = None
    """With ``run_item(..., wait_saved=False)``: the commit still to wait for (``call.saved``)."""


async def run_node(frame: Frame, i: int) -> None:
    """Take node ``i`` of ``frame`` through its lifecycle."""
    np = frame.plan.nodes[i]
    if np.plain is not None and frame.fast:
        await _run_plain(frame, np)
        return
    path = frame.path_of(np)
    started = perf_counter()
    try:
        inputs = resolve_inputs(frame, np)
    except NodeInputError as exc:
        inputs = {}
        done = Done(ERROR, error=NodeError.from_exception(exc, path))
    else:
        done = await _settle(frame, np, path, inputs)
    _accept(frame, np, path, done)
    await _save(frame, np, path, done)
    _record(frame, np, done, started)


async def _run_plain(frame: Frame, np: NodePlan) -> None:
    """The same steps for an async code node when nothing is traced, saved or limited."""
    assert np.plain is not None
    i = np.index
    started = perf_counter()
    try:
        out = await np.plain(**{b.name: resolve(frame, b) for b in np.bindings})
        if np.outputs or type(out) is not dict:
            out = _checked(np, out)
    except asyncio.CancelledError as exc:
        _accept(frame, np, frame.path_of(np), _failure(_stray(exc), frame.path_of(np), None))
    except Exception as exc:
        _accept(frame, np, frame.path_of(np), _failure(exc, frame.path_of(np), None))
    else:
        frame.outputs[i] = out
        frame.status[i] = OK
        if np.outputs:
            _write(frame, np, out)
    log = frame.log
    if log is not None:
        log.started[i] = started
        log.ended[i] = perf_counter()
        log.attempts[i] = 1
        frame.run.record.order.append(np.path)


async def _settle(frame: Frame, np: NodePlan, path: str, inputs: dict[str, Any]) -> Done:
    """Steps 2 and 3: the saved result for these inputs, or the result of the attempts."""
    checkpoint = frame.run.checkpoint
    key = None
    if checkpoint is not None and not frame.defer:
        key = checkpoint.key(path, inputs)
        saved = checkpoint.load(path, key)
        if saved is not None:
            return Done(OK, saved, resumed=True)
    elif checkpoint is not None and frame.lookups:
        saved = checkpoint.saved(path, inputs)
        if saved is not None:
            return Done(OK, saved, resumed=True)
    span = _open_span(frame.span, np.name, np.node.trace_kind, inputs)
    done: Done | None = None
    try:
        done = await _attempts(frame, np, path, inputs, span)
        done.key = key
        return done
    finally:
        if span is not None:
            _close_span(span, done)


async def _attempts(
    frame: Frame, np: NodePlan, path: str, inputs: dict[str, Any], span: Span | None
) -> Done:
    """Attempt until success, a non-retryable error, or the policy's last attempt."""
    node = np.node
    policy = None if node.owns_policy else node.retry
    attempt = 1
    while True:
        call = NodeCall(frame, np, path, span, attempt)
        try:
            out = await _attempt(frame, np, call, inputs if attempt == 1 else dict(inputs))
        except Exception as exc:
            if policy is None or attempt >= policy.attempts or not policy.retries(exc):
                return _failure(exc, path, call)
            await call.settled()
            delay = policy.delay(attempt)
            logger.info(
                "node %s attempt %d failed (%s: %s); retrying in %.2fs",
                path,
                attempt,
                type(exc).__name__,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1
        else:
            return Done(OK, out, call=call)


async def _attempt(
    frame: Frame, np: NodePlan, call: NodeCall, inputs: dict[str, Any]
) -> Mapping[str, Any]:
    """One attempt: the slot, then the timeout, then the node's own work."""
    node = np.node
    slot = frame.run.slot if np.is_leaf else None
    if slot is not None:
        await slot.acquire()
    try:
        timeout = None if node.owns_policy else node.timeout
        if timeout is None:
            out = await _guarded(node.run(inputs, call))
        else:
            try:
                async with asyncio.timeout(timeout) as scope:
                    out = await _guarded(node.run(inputs, call))
            except TimeoutError:
                if scope.expired():
                    raise NodeTimeoutError(f"timed out after {timeout:g}s") from None
                raise
    finally:
        if slot is not None:
            slot.release()
    return _checked(np, out)


async def _guarded(work: Any) -> Any:
    """Await the node's work; a ``CancelledError`` nobody asked for becomes its error."""
    try:
        return await work
    except asyncio.CancelledError as exc:
        raise _stray(exc) from exc


def _stray(exc: asyncio.CancelledError) -> NodeCancelledError:
    """Re-raise a cancellation of this task; turn one nobody asked for into an error."""
    task = asyncio.current_task()
    if task is None or task.cancelling():
        raise exc
    error = NodeCancelledError(
        "raised CancelledError although neither the run nor this node was cancelled "
        "(it awaited a task or future that something else cancelled)"
    )
    error.__cause__ = exc
    return error


def _checked(np: NodePlan, out: Any) -> Mapping[str, Any]:
    """Classify what the node returned: a dict with every declared output, or its error."""
    if out is None:
        out = {}
    elif not isinstance(out, Mapping):
        raise NodeReturnError(
            f"{type(np.node).__name__} '{np.name}' returned {type(out).__name__}; "
            "it must return a dict of outputs (or None)"
        )
    for src, dst in np.outputs:
        if src != "*" and src != "error" and src not in out:
            have = ", ".join(sorted(map(str, out))) or "nothing"
            raise NodeInputError(
                f"output '{src}' is mapped to PARENT['{dst}'] but the node returned no '{src}' "
                f"(it returned: {have})"
            )
    checked: Mapping[str, Any] = out
    return checked


def _failure(exc: Exception, path: str, call: NodeCall | None) -> Done:
    if isinstance(exc, NodeFailedError):
        return Done(ERROR, error=exc.error, call=call, own=False)
    return Done(ERROR, error=NodeError.from_exception(exc, path), call=call)


def _accept(frame: Frame, np: NodePlan, path: str, done: Done) -> None:
    """Step 4: write the outputs or the error into the graph; merge what the attempt reported."""
    i = np.index
    call = done.call
    if call is not None and not done.clean:
        frame.errors.extend(call.errors)
        frame.saves.extend(call.saves)
    if done.status == OK:
        out = done.outputs
        assert out is not None
        frame.outputs[i] = out
        frame.status[i] = OK
        _write(frame, np, out)
        return
    error = done.error
    assert error is not None
    frame.node_errors[i] = error
    frame.status[i] = ERROR
    if done.own:
        frame.errors.append(error)
    for src, dst in np.outputs:
        if src == "error":
            frame.state[dst] = frame.written[dst] = error
    if not np.error_handled and frame.first_error is None:
        frame.first_error = error
    level = logging.WARNING if frame.static else logging.DEBUG
    logger.log(level, "node %s failed: %s: %s", path, error.type, error.message)


def _write(frame: Frame, np: NodePlan, out: Mapping[str, Any]) -> None:
    state, written = frame.state, frame.written
    for src, dst in np.outputs:
        if src == "*":
            if dst == "*":
                state.update(out)
                written.update(out)
            else:
                state[dst] = written[dst] = dict(out)
        else:
            state[dst] = written[dst] = out.get(src)


async def _save(frame: Frame, np: NodePlan, path: str, done: Done) -> None:
    """Step 5: save a clean result now, or leave it to the enclosing map item."""
    checkpoint = frame.run.checkpoint
    if checkpoint is None or done.status != OK:
        return
    if frame.defer:
        if done.resumed or not done.clean:
            frame.skip_save.add(np.index)
    elif done.clean and not done.resumed:
        assert done.outputs is not None
        await checkpoint.save(path, done.key, done.outputs)


def _record(frame: Frame, np: NodePlan, done: Done, started: float) -> None:
    """Step 6: nodes outside map items are noted on the run record one by one."""
    log = frame.log
    if log is None:
        return
    i = np.index
    call = done.call
    log.started[i] = started
    log.ended[i] = perf_counter()
    log.attempts[i] = call.attempt if call is not None else (0 if done.resumed else 1)
    log.resumed[i] = done.resumed
    frame.run.record.order.append(np.path)


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
        span = _open_span(call.span, f"{call.node.name}[{index}]", "item", state)
    outcome: GraphOutcome | None = None
    try:
        outcome = await runtime.execute(plan, state, call.run, path, span, static=False, defer=True)
    finally:
        if span is not None:
            if outcome is None:
                _end_span(span, None, None, cancelled=True)
            else:
                _end_span(span, outcome.written, outcome.error, cancelled=False)
    call.errors.extend(outcome.errors)
    waiter = None
    if checkpoint is not None:
        if outcome.clean:
            waiter = checkpoint.put(path, key, outcome.written)
        else:
            waiter = checkpoint.put_clean_nodes(outcome.saves)
        if waiter is not None and wait_saved:
            await call.saved(waiter)
            waiter = None
    return ItemOutcome(outcome.written, outcome.error, False, waiter)


class NodeCall:
    """What one attempt of a node is handed: its path and span, and the means to run inside it.

    Containers run sub-graphs with :meth:`run_graph` and items with
    :meth:`run_item`; what those report is kept on this attempt and merged
    into the run only if the attempt is accepted. Nodes that own their retry
    and timeout (``owns_policy``) read :attr:`retry` and :attr:`timeout`.
    """

    __slots__ = (
        "_shared",
        "_threads",
        "attempt",
        "demanded",
        "errors",
        "frame",
        "node",
        "path",
        "run",
        "saves",
        "span",
    )

    def __init__(
        self, frame: Frame, np: NodePlan, path: str, span: Span | None, attempt: int
    ) -> None:
        self.frame = frame
        self.run = frame.run
        self.node: BaseNode = np.node
        self.demanded = np.demanded
        """Output keys read downstream: an iteration node returns them even when no item ran."""
        self.path = path
        self.span = span
        self.attempt = attempt
        """This attempt's number (from 1); a node owning its retry loop sets the attempts it made."""
        self.errors: list[NodeError] = []
        self.saves: list[Frame] = []
        self._threads: list[asyncio.Future[None]] = []
        self._shared: tuple[Any, str | None] | None = None

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
        outcome = await runtime.execute(
            plan, state, self.run, self.path, self.span, static=frame.static, defer=frame.defer
        )
        self.errors.extend(outcome.errors)
        self.saves.extend(outcome.saves)
        return outcome

    run_item = run_item
    """``await call.run_item(plan, index, shared, own)`` runs item ``index`` of an iteration
    node: ``shared`` inputs are the same dict for every item (digested once), ``own`` are
    this item's. See :func:`run_item` for ``wait_saved``."""

    async def saved(self, saving: asyncio.Future[None] | None) -> None:
        """Wait until an item's result is committed (a failed write is kept for the run)."""
        if saving is None:
            return
        try:
            await saving
        except CheckpointWriteError as exc:
            assert self.run.checkpoint is not None
            self.run.checkpoint.failed(self.path, exc)

    def counters(self, total: int | None) -> IterationCounters:
        """Live counters for an iteration node, registered on the run record."""
        counters = IterationCounters(total=total)
        self.run.record.iterations[self.path] = counters
        return counters

    def track(self, finished: asyncio.Future[None]) -> None:
        """A worker thread this attempt started: the next attempt waits until it ends."""
        self._threads.append(finished)

    async def settled(self) -> None:
        """Wait for threads this attempt left running (a sync call that timed out)."""
        running = [f for f in self._threads if not f.done()]
        if running:
            logger.info(
                "node %s: waiting for the previous attempt's thread to finish before retrying",
                self.path,
            )
            await asyncio.gather(*(asyncio.shield(f) for f in running))

    def shared_key(self, shared: dict[str, Any]) -> str | None:
        """The digest of an iteration node's shared item inputs, computed once per attempt."""
        checkpoint = self.run.checkpoint
        if checkpoint is None:
            return None
        if self._shared is None or self._shared[0] is not shared:
            self._shared = (shared, checkpoint.key(f"{self.path}[*]", shared))
        return self._shared[1]


def _open_span(parent: Span | None, name: str, kind: Any, payload: Any) -> Span | None:
    if parent is None:
        return None
    try:
        return parent.child(name, kind=kind, input=payload)
    except Exception:
        logger.warning("tracer failed to start span %s", name, exc_info=True)
        return None


def _close_span(span: Span, done: Done | None) -> None:
    if done is None:
        _end_span(span, None, None, cancelled=True)
    else:
        _end_span(span, done.outputs, done.error, cancelled=False)


def _end_span(span: Span, output: Any, error: NodeError | None, *, cancelled: bool) -> None:
    """Close a span with its status: ok, error, timeout or cancelled."""
    if cancelled:
        status = "cancelled"
    elif error is None:
        status = "ok"
    else:
        status = "timeout" if error.type == NodeTimeoutError.__name__ else "error"
    try:
        span.end(output=output, error=_TracedError(error) if error else None, status=status)
    except Exception:
        logger.warning("tracer failed to end a span", exc_info=True)


class _TracedError(Exception):
    """Carries a :class:`NodeError` to a tracer as an exception."""

    def __init__(self, error: NodeError) -> None:
        self.error = error
        super().__init__(f"{error.type}: {error.message}")
