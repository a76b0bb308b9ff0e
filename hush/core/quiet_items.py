"""A map item no subscriber wants: it runs untraced, and is traced from its errors if it fails.

When every subscriber of a run's node events declines a map item as it starts
(:meth:`Emitter.item <hush.core.events.Emitter.item>`, for example a tracer's
``sample``), the item's body runs with no emitter for its nodes (only ``progress``
events, if something reads them and a node inside may send some): no event is built
inside it. If it fails (an error
anywhere in it, or it was cancelled), its trace is rebuilt from what it ended with:
the item's span with its real times, input, output and error, and under it one span
per level down to each node that failed (a nested map, its item, the node), timed as
the item and marked ``{"from_error": True}`` in their metadata. The clean nodes and
the LLM calls of such an item are not traced.
"""

from __future__ import annotations

import re
import time
from time import perf_counter
from typing import TYPE_CHECKING, Any

from hush.core.events import Emitter, Event, SpanType, status_of

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from hush.core.call import NodeCall
    from hush.core.errors import NodeError
    from hush.core.outcome import GraphOutcome
    from hush.core.plan import GraphPlan

FROM_ERROR = {"from_error": True}
"""The metadata of a span rebuilt from an error record."""
_INDEX = re.compile(r"\[\d+\]")


def quiet_body(
    call: NodeCall, plan: GraphPlan, path: str, state: dict[str, Any], scope: Emitter | None
) -> Coroutine[Any, Any, GraphOutcome]:
    """The body of the item at ``path`` seen through ``scope`` (none at all when its body is
    only leaves: no progress can come from it). The caller awaits it in its own frame (no
    coroutine of this module's around it: that is a tenth of what a quiet item costs over
    tracing off) and then calls :func:`trace_if_failed`."""
    if scope is not None and all(np.is_leaf for np in plan.nodes):
        scope = None
    return call.frame.execute(plan, state, path, call, in_item=True, run=call.run.with_emit(scope))


def trace_if_failed(
    call: NodeCall,
    index: int,
    path: str,
    inputs: tuple[dict[str, Any], dict[str, Any]],
    outcome: GraphOutcome | None,
    started: float,
) -> None:
    """After a quiet item's body (``outcome`` ``None``: it was cancelled or raised): if it
    failed, emit its trace from its errors to the run's emitter. ``inputs``: the map's shared
    inputs and the item's own, which its state started as (the body writes its outputs into
    that state; they are left as they are); ``started``: ``perf_counter()`` at its start."""
    if outcome is None or outcome.error is not None or outcome.errors:
        _failed(call, index, path, inputs, outcome, perf_counter() - started)


def _failed(
    call: NodeCall,
    index: int,
    path: str,
    inputs: tuple[dict[str, Any], dict[str, Any]],
    outcome: GraphOutcome | None,
    elapsed: float,
) -> None:
    """Emit the trace of a quiet item that failed ``elapsed`` seconds after it started."""
    emit = call.run.emit
    assert emit is not None
    shared, own = inputs
    item = Event(
        "node_start",
        path,
        call.run.run_id,
        time.time() - elapsed,
        parent=call.path,
        type="item",
        name=f"{call.node.name}[{index}]",
        input={**shared, **own},
        node=f"{call.node_path}[]",
    )
    for event in failed_item(item, outcome, elapsed):
        emit(event)


def failed_item(start: Event, outcome: GraphOutcome | None, duration: float) -> Iterator[Event]:
    """The events of a failed item that ran untraced (``outcome`` ``None``: cancelled): its
    start, the spans down to each node that failed, their ends, its end."""
    ended = start.time + duration
    errors = list(outcome.errors) if outcome is not None else []
    if outcome is not None and outcome.error is not None and outcome.error not in errors:
        errors.append(outcome.error)
    own = {error.node: error for error in errors}
    inner: dict[str, tuple[str, SpanType, str, NodeError]] = {}
    for error in errors:
        for path, parent, kind, name in _levels(start.path, error.node):
            if path not in inner:
                inner[path] = (parent, kind, name, own.get(path, error))
    yield start
    for path, (parent, kind, name, _) in inner.items():
        yield Event(
            "node_start",
            path,
            start.run_id,
            start.time,
            parent=parent,
            type=kind,
            name=name,
            node=_INDEX.sub("", path) + ("[]" if kind == "item" else ""),
        )
    for path, (parent, kind, name, cause) in reversed(inner.items()):
        yield Event(
            "node_end",
            path,
            start.run_id,
            ended,
            parent=parent,
            type=kind,
            name=name,
            status=status_of(cause),
            error=cause,
            duration=duration,
            node=_INDEX.sub("", path) + ("[]" if kind == "item" else ""),
            metadata=FROM_ERROR,
        )
    failed = outcome.error if outcome is not None else None
    yield Event(
        "node_end",
        start.path,
        start.run_id,
        ended,
        parent=start.parent,
        type="item",
        name=start.name,
        output=outcome.written if outcome is not None else None,
        status=status_of(failed, cancelled=outcome is None),
        error=failed,
        duration=duration,
        node=start.node,
    )


def _levels(item: str, node: str) -> Iterator[tuple[str, str, SpanType, str]]:
    """``(path, parent, type, name)`` of each span from inside the item at ``item`` down to
    the node at ``node``: a segment ``name[k]`` is a map and its item ``k``."""
    if not node.startswith(item + "/"):
        return
    parent = item
    segments = node[len(item) + 1 :].split("/")
    for i, segment in enumerate(segments):
        name, bracket, _ = segment.partition("[")
        if bracket:
            yield f"{parent}/{name}", parent, "map", name
            yield f"{parent}/{segment}", f"{parent}/{name}", "item", segment
        else:
            yield f"{parent}/{segment}", parent, "node" if i == len(segments) - 1 else "graph", name
        parent = f"{parent}/{segment}"
