"""The scheduler: walks a compiled plan, event-driven.

A node starts the moment its last predecessor finishes: finishing a node
decrements its successors' counters, and those reaching zero run (the first
one in the same task, the others in new tasks of the graph's task group).
Skips propagate through the same counters, so there is no second pass and no
barrier between unrelated branches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio

from hush.core.errors import NodeError, NodeFailedError, NodeInputError
from hush.core.plan import CONST, FROM_NODE, FROM_PARENT, Binding, GraphPlan, NodePlan
from hush.core.policies import call_with_policy
from hush.core.state import IterationCounters, NodeRecord, RunRecord, Status

if TYPE_CHECKING:
    from hush.checkpoint.store import CheckpointStore
    from hush.core.nodes.base import BaseNode
    from hush.observability.tracer import Span, Tracer

logger = logging.getLogger("hush.runtime")

OK: Final = "ok"
ERROR: Final = "error"
SKIPPED: Final = "skipped"
_MISSING = object()


class RunContext:
    """What every node of one run shares."""

    __slots__ = ("leaf_limiter", "record", "run_id", "store", "t0", "tracer")

    def __init__(
        self,
        run_id: str,
        record: RunRecord,
        *,
        tracer: Tracer | None = None,
        leaf_limiter: anyio.CapacityLimiter | None = None,
        store: CheckpointStore | None = None,
    ) -> None:
        self.run_id = run_id
        self.record = record
        self.tracer = tracer
        self.leaf_limiter = leaf_limiter
        self.store = store
        self.t0 = time.perf_counter()

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0


class GraphOutcome(NamedTuple):
    """What one execution of a graph produced.

    ``incomplete`` is true when anything inside failed (even if handled), so
    the work is not checkpointed as finished and runs again on resume.
    """

    written: dict[str, Any]
    error: NodeError | None
    resumed: bool = False
    incomplete: bool = False


class Frame:
    """The state of one execution of one graph plan."""

    __slots__ = (
        "blocked",
        "errors",
        "first_error",
        "hard",
        "incomplete",
        "outputs",
        "plan",
        "prefix",
        "record",
        "run",
        "soft",
        "soft_ok",
        "span",
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
        span: Span | None,
        record: bool,
    ) -> None:
        n = len(plan.nodes)
        self.plan = plan
        self.state = state
        self.written: dict[str, Any] = {}
        self.outputs: list[Mapping[str, Any] | None] = [None] * n
        self.errors: list[NodeError | None] = [None] * n
        self.status: list[Status | None] = [None] * n
        self.hard = list(plan.hard_counts)
        self.soft = list(plan.soft_counts)
        self.soft_ok: set[int] = set()
        self.blocked: set[int] = set()
        self.run = run
        self.prefix = prefix
        self.span = span
        self.record = record
        self.first_error: NodeError | None = None
        self.incomplete = False
        self.tg: anyio.abc.TaskGroup | None = None


async def execute(
    plan: GraphPlan,
    state: dict[str, Any],
    run: RunContext,
    prefix: str,
    span: Span | None,
    *,
    record: bool,
) -> GraphOutcome:
    """Run one graph plan with ``state`` as its ``PARENT``; return what it wrote."""
    frame = Frame(plan, state, run, prefix, span, record)
    if plan.linear:
        await _chain(frame, plan.initial[0])
    elif plan.initial:
        async with anyio.create_task_group() as tg:
            frame.tg = tg
            for i in plan.initial[1:]:
                tg.start_soon(_chain, frame, i)
            await _chain(frame, plan.initial[0])
    return GraphOutcome(frame.written, frame.first_error, False, frame.incomplete)


async def _chain(frame: Frame, i: int) -> None:
    while True:
        await _run_node(frame, i)
        ready = _propagate(frame, i)
        if not ready:
            return
        i = ready[0]
        for j in ready[1:]:
            assert frame.tg is not None
            frame.tg.start_soon(_chain, frame, j)


def _propagate(frame: Frame, first: int) -> list[int]:
    """Count ``first`` as finished; return successors ready to run, skipping blocked ones."""
    nodes = frame.plan.nodes
    hard, soft, status = frame.hard, frame.soft, frame.status
    ready: list[int] = []
    stack = [first]
    while stack:
        k = stack.pop()
        np = nodes[k]
        st = status[k]
        chosen = None
        targets = np.route_targets
        if targets is not None and st == OK:
            out = frame.outputs[k]
            chosen = np.node.select(out or {})
        for j, is_soft in np.successors:
            eff = st
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
                    stack.append(j)
                else:
                    ready.append(j)
    return ready


def _skip(frame: Frame, j: int) -> None:
    frame.status[j] = SKIPPED
    if frame.record:
        np = frame.plan.nodes[j]
        path = f"{frame.prefix}/{np.name}"
        frame.run.record.nodes[path] = NodeRecord(path=path, kind=np.node.kind, status=SKIPPED)
        frame.run.record.order.append(path)


def _lookup(value: Any, subpath: tuple[Any, ...], b: Binding) -> Any:
    for key in subpath:
        if value is None:
            return None
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise NodeInputError(
                f"input '{b.name}' reads {b.source}: no [{key!r}] in a {type(value).__name__}"
            ) from exc
    return value


def resolve(frame: Frame, b: Binding) -> Any:
    """The value of one input binding in this frame."""
    kind = b.kind
    if kind == CONST:
        return b.value
    if kind == FROM_PARENT:
        value = frame.state.get(b.key, _MISSING)
        if value is _MISSING:
            have = ", ".join(sorted(map(str, frame.state))) or "nothing"
            raise NodeInputError(
                f"input '{b.name}' reads {b.source} but the state of '{frame.plan.path}' has no "
                f"'{b.key}' (it has: {have})"
            )
    elif kind == FROM_NODE:
        j = b.value
        st = frame.status[j]
        if st == OK:
            out = frame.outputs[j] or {}
            value = out.get(b.key, _MISSING)
            if value is _MISSING:
                if b.key != "error":
                    src = frame.plan.nodes[j].name
                    have = ", ".join(sorted(map(str, out))) or "nothing"
                    raise NodeInputError(
                        f"input '{b.name}' reads {b.source} but '{src}' returned no "
                        f"'{b.key}' (it returned: {have})"
                    )
                value = None
        elif st == ERROR and b.key == "error":
            value = frame.errors[j]
        else:
            value = None
    else:
        return _resolve_nested(frame, b.value)
    if b.subpath:
        return _lookup(value, b.subpath, b)
    return value


def _resolve_nested(frame: Frame, value: Any) -> Any:
    if isinstance(value, Binding):
        return resolve(frame, value)
    if isinstance(value, dict):
        return {k: _resolve_nested(frame, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_nested(frame, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve_nested(frame, v) for v in value)
    return value


class NodeCall:
    """Handed to ``node.run``: the node's path, span and the means to run sub-graphs."""

    __slots__ = ("attempts", "frame", "incomplete", "node", "path", "run", "span")

    def __init__(self, frame: Frame, node: BaseNode, path: str, span: Span | None) -> None:
        self.frame = frame
        self.run = frame.run
        self.node = node
        self.path = path
        self.span = span
        self.attempts = 0
        self.incomplete = False

    async def run_graph(self, plan: GraphPlan, state: dict[str, Any]) -> GraphOutcome:
        """Run a nested graph (a ``GraphNode`` body) under this node."""
        outcome = await execute(
            plan, state, self.run, self.path, self.span, record=self.frame.record
        )
        if outcome.incomplete:
            self.incomplete = True
        return outcome

    def counters(self, total: int | None) -> IterationCounters:
        """Live counters for an iteration node, registered on the run record."""
        counters = IterationCounters(total=total)
        self.run.record.iterations[self.path] = counters
        return counters

    async def run_item(self, plan: GraphPlan, state: dict[str, Any], index: int) -> GraphOutcome:
        """Run one item of an iteration node: checkpointed and traced on its own."""
        path = f"{self.path}[{index}]"
        store = self.run.store
        if store is not None:
            saved = store.get(path)
            if saved is not None:
                return GraphOutcome(saved, None, True)
        span = None
        if self.span is not None:
            span = _safe_child(self.span, f"{self.node.name}[{index}]", "item", state)
        outcome = await execute(plan, state, self.run, path, span, record=False)
        if span is not None:
            _safe_end(span, outcome.written, outcome.error)
        if outcome.incomplete or outcome.error is not None:
            self.incomplete = True
        elif store is not None:
            await _save(store, path, outcome.written)
        return outcome


async def _invoke(
    node: BaseNode, inputs: dict[str, Any], call: NodeCall
) -> Mapping[str, Any] | None:
    call.attempts += 1
    limiter = call.run.leaf_limiter
    if limiter is not None and node.is_leaf:
        async with limiter:
            return await node.run(inputs, call)
    return await node.run(inputs, call)


async def _run_node(frame: Frame, i: int) -> None:
    np = frame.plan.nodes[i]
    node = np.node
    run = frame.run
    path = f"{frame.prefix}/{np.name}"
    started = run.now()
    store = run.store if frame.record else None
    span: Span | None = None
    call: NodeCall | None = None
    try:
        saved = store.get(path) if store is not None else None
        if saved is not None:
            out: Mapping[str, Any] = saved
            _write(frame, np, out)
        else:
            inputs = {b.name: resolve(frame, b) for b in np.bindings}
            if frame.span is not None:
                span = _safe_child(frame.span, np.name, node.trace_kind, inputs)
            call = NodeCall(frame, node, path, span)
            if node.retry is None and node.timeout is None:
                result = await _invoke(node, inputs, call)
            else:
                bound = call

                async def attempt() -> Mapping[str, Any] | None:
                    if bound.attempts:
                        _forget_attempt(bound)
                    return await _invoke(node, dict(inputs), bound)

                result = await call_with_policy(attempt, node.retry, node.timeout, _log_retry(path))
            out = {} if result is None else result
            _write(frame, np, out)
            if call.incomplete:
                frame.incomplete = True
            if store is not None and not frame.incomplete:
                await _save(store, path, dict(out))
        frame.outputs[i] = out
        frame.status[i] = OK
        error = None
    except Exception as exc:
        nested = isinstance(exc, NodeFailedError)
        error = (
            exc.error if isinstance(exc, NodeFailedError) else NodeError.from_exception(exc, path)
        )
        frame.errors[i] = error
        frame.status[i] = ERROR
        frame.incomplete = True
        for src, dst in np.outputs:
            if src == "error":
                frame.state[dst] = frame.written[dst] = error
        if not nested:
            run.record.errors.append(error)
        if not np.error_handled and frame.first_error is None:
            frame.first_error = error
        if frame.record:
            logger.warning("node %s failed: %s: %s", path, error.type, error.message)
        else:
            logger.debug("node %s failed: %s: %s", path, error.type, error.message)
    if span is not None:
        _safe_end(span, frame.outputs[i], error)
    if frame.record:
        rec = NodeRecord(
            path=path,
            kind=node.kind,
            status=frame.status[i] or ERROR,
            started=started,
            ended=run.now(),
            attempts=call.attempts if call is not None else 0,
            error=error,
            outputs=dict(out_now) if (out_now := frame.outputs[i]) is not None else None,
            counters=run.record.iterations.get(path),
            resumed=call is None and error is None,
        )
        run.record.nodes[path] = rec
        run.record.order.append(path)


def _forget_attempt(call: NodeCall) -> None:
    """Before a retry: drop what the failed attempt recorded inside this node."""
    call.incomplete = False
    inside = (call.path + "/", call.path + "[")
    errors = call.run.record.errors
    errors[:] = [e for e in errors if not e.node.startswith(inside)]


async def _save(store: CheckpointStore, path: str, value: Any) -> None:
    """Persist finished work; a value that cannot be saved only costs a warning."""
    from hush.checkpoint.errors import CheckpointValueError

    try:
        await store.put_durable(path, value)
    except CheckpointValueError as exc:
        logger.warning("checkpoint: %s is not saved (%s); it will run again on resume", path, exc)


def _write(frame: Frame, np: NodePlan, out: Mapping[str, Any]) -> None:
    """Check the declared outputs exist, then write them into the graph state."""
    if not isinstance(out, Mapping):
        raise TypeError(f"node '{np.name}' produced {type(out).__name__}, not a dict")
    if not np.outputs:
        return
    pending: list[tuple[str, Any]] = []
    for src, dst in np.outputs:
        if src == "*":
            if dst == "*":
                pending.extend(out.items())
            else:
                pending.append((dst, dict(out)))
        elif src in out:
            pending.append((dst, out[src]))
        elif src == "error":
            pending.append((dst, None))
        else:
            have = ", ".join(sorted(map(str, out))) or "nothing"
            raise NodeInputError(
                f"output '{src}' is mapped to PARENT['{dst}'] but the node returned no '{src}' "
                f"(it returned: {have})"
            )
    state, written = frame.state, frame.written
    for key, value in pending:
        state[key] = value
        written[key] = value


def _log_retry(path: str) -> Any:
    def on_retry(attempt: int, exc: BaseException) -> None:
        logger.info(
            "node %s attempt %d failed (%s: %s); retrying", path, attempt, type(exc).__name__, exc
        )

    return on_retry


def _safe_child(span: Span, name: str, kind: Any, payload: Any) -> Span | None:
    try:
        return span.child(name, kind=kind, input=payload)
    except Exception:
        logger.warning("tracer failed to start span %s", name, exc_info=True)
        return None


def _safe_end(span: Span, output: Any, error: NodeError | None) -> None:
    try:
        if error is None:
            span.end(output=output)
        else:
            span.end(output=output, error=_TracedError(error))
    except Exception:
        logger.warning("tracer failed to end a span", exc_info=True)


class _TracedError(Exception):
    """Carries a :class:`NodeError` to a tracer as an exception."""

    def __init__(self, error: NodeError) -> None:
        self.error = error
        super().__init__(f"{error.type}: {error.message}")
